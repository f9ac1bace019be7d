"""rapl_agent configuration (SPEC section 5): the only place the default roots appear."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from services.common.config import Listen, ServiceConfig, option


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
        if not 0.05 <= self.interval <= 3600:
            raise ValueError(
                f"--interval must be between 0.05 and 3600 seconds, got {self.interval}"
            )
        if self.max_cmdline < 0:
            raise ValueError(f"--max-cmdline must be >= 0, got {self.max_cmdline}")
