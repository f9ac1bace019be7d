"""rapl_agent configuration (SPEC section 5): the only place the default roots appear."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from services.common.config import Listen, ServiceConfig, option

MAX_INTERVAL_S = 300.0
# udev's links to the disks: `usb-*` ones mark removable disks (Scaphandre's disk_is_removable).
DISKS_BY_ID = Path("/dev/disk/by-id")


@dataclasses.dataclass(frozen=True)
class RaplConfig(ServiceConfig):
    """Flags of one-rapl-agent."""

    listen: Listen = option(Listen("0.0.0.0", 8080), "address to listen on", metavar="HOST:PORT")
    powercap_root: Path = option(
        Path("/sys/class/powercap"), "powercap class directory holding the RAPL zones"
    )
    proc_root: Path = option(
        Path("/proc"), "procfs to read processes from (/host/proc in a container)"
    )
    interval: float = option(2.0, "seconds between samples", metavar="SECONDS")
    max_cmdline: int = option(512, "characters of a process's cmdline kept in its label")

    def __post_init__(self) -> None:
        # A delta over half a counter's range is taken as a reset (energy.py). RAPL counters
        # span ~262 kJ: a 400 W socket covers half of that in ~330 s, so intervals stay below.
        if not 0.05 <= self.interval <= MAX_INTERVAL_S:
            raise ValueError(
                f"--interval must be between 0.05 and {MAX_INTERVAL_S:g} seconds, "
                f"got {self.interval}"
            )
        if self.max_cmdline < 0:
            raise ValueError(f"--max-cmdline must be >= 0, got {self.max_cmdline}")

    @property
    def sys_root(self) -> Path | None:
        """The sysfs whose class/powercap is --powercap-root: its block/ tells disk types."""
        if self.powercap_root.parts[-2:] == ("class", "powercap"):
            return self.powercap_root.parent.parent
        return None
