"""The values of one sample: what it read (`Reading`) and what the agent serves (`Snapshot`).

Immutable, no I/O: `sampler.py` fills a `Reading`, `power.next_snapshot` turns it into a
`Snapshot`, and `/metrics` and `/api/v1/vms` render that snapshot as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.vm_identity import VmIdentity

from .disks import Disk
from .procstat import PidStat, SystemStat


@dataclass(frozen=True)
class ProcInfo:
    """What does not change while a process lives: cached per (pid, starttime)."""

    pid: int
    starttime: int
    comm: str
    cmdline: str  # argv joined with no separator, cut at --max-cmdline (Scaphandre's label)
    vm: VmIdentity | None
    labels: bytes  # the rendered `{cmdline=...,exe=...,pid=...}` block of its metric lines
    helper_of: int | None = None  # the QEMU pid a helper thread works for (vhost-<pid>...)


@dataclass(frozen=True)
class OwnUsage:
    """The agent's own CPU and memory, for scaph_self_*."""

    cpu_seconds: float
    vsize_bytes: int
    rss_bytes: int


@dataclass(frozen=True)
class Reading:
    """Everything one sample read; `energy` holds only the counters that read well."""

    wall: float
    mono: float
    energy: Mapping[str, int]  # zone key -> raw energy_uj
    system: SystemStat | None  # None when /proc could not be read
    uptime_ticks: int
    stats: Mapping[int, PidStat]  # pid -> its /proc/<pid>/stat figures
    infos: Mapping[int, ProcInfo]
    load: tuple[float, float, float] | None = None
    memory: Mapping[str, int] | None = None
    own: OwnUsage | None = None
    cpus: int = 1
    disks: tuple[Disk, ...] | None = None
    page_size: int = 4096


@dataclass(frozen=True)
class Processes:
    """Every process of a snapshot: what it is, its memory, and its power and CPU when known."""

    infos: Mapping[int, ProcInfo]
    stats: Mapping[int, PidStat]  # vsize and rss (pages) of the same sample
    power_uw: Mapping[int, int]  # by pid; empty while power is unknown
    cpu_jiffies: Mapping[int, int]  # burned over the interval; empty before a baseline
    cpu_capacity: int = 0  # jiffies every CPU had over the same interval
    page_size: int = 4096

    def __len__(self) -> int:
        return len(self.infos)

    def cpu_percent(self, pid: int) -> float | None:
        """A process's CPU time as a percentage of every CPU's (Scaphandre's, at most 100)."""
        jiffies = self.cpu_jiffies.get(pid)
        if jiffies is None or self.cpu_capacity <= 0:
            return None
        return min(100.0, jiffies * 100 / self.cpu_capacity)


NO_PROCESSES = Processes({}, {}, {}, {})


@dataclass(frozen=True)
class DomainFigures:
    """Power and wrap-corrected energy of one domain zone (core, uncore, dram, ...)."""

    kind: str
    socket_id: int | None
    domain_id: int | None
    power_uw: int | None
    energy_uj: int


@dataclass(frozen=True)
class SocketFigures:
    """Power and energy of one socket's package zone(s)."""

    socket_id: int
    power_uw: int | None
    energy_uj: int


@dataclass(frozen=True)
class VmFigures:
    """One VM: its QEMU process, helpers, power over the interval and energy since first seen."""

    name: str
    one_vm_id: int | None
    pid: int
    helper_pids: tuple[int, ...]
    power_uw: int | None
    energy_uj: int


@dataclass(frozen=True)
class Snapshot:
    """What the agent serves until the next sample: immutable, rendered as is."""

    timestamp: float
    interval_s: float | None
    source: str
    host_power_uw: int | None
    host_energy_uj: int
    sockets: tuple[SocketFigures, ...]
    domains: tuple[DomainFigures, ...]
    processes: Processes
    vms: tuple[VmFigures, ...]
    system: SystemStat | None
    load: tuple[float, float, float] | None
    memory: Mapping[str, int] | None
    own: OwnUsage | None
    own_cpu_percent: float | None
    disks: tuple[Disk, ...] | None = None

    @property
    def process_count(self) -> int:
        """Processes seen in the sample."""
        return len(self.processes)

    @property
    def records(self) -> int:
        """Energy records behind the figures: 2 once power is known, else 1 (scaph_self_*)."""
        return 1 if self.interval_s is None else 2
