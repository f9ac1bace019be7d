"""One sample: read the counters and /proc, compute the next snapshot. Runs in a worker thread."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .disks import DiskReader
from .figures import OwnUsage, Reading, Snapshot
from .power import Carry, next_snapshot
from .powercap import discover, read_counters
from .procfs import ProcError, ProcReader
from .zones import Topology

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class SampleResult:
    """A new snapshot (None: keep serving the last one), what failed and what to log."""

    snapshot: Snapshot | None
    failures: dict[str, str] = field(default_factory=dict)  # check name -> reason
    notes: tuple[str, ...] = ()
    duration_s: float = 0.0
    sources: dict[str, bool] = field(default_factory=dict)  # zone key or "proc" -> read well
    discovered: Topology | None = None  # the zones, on the sample that found them
    frozen: bool = False  # power unknown: a host counter or /proc unreadable
    merged: bool = False  # too soon after the last sample: merged into the next


def own_usage() -> OwnUsage:
    """The agent's CPU seconds and memory (its own /proc/self, whatever --proc-root is)."""
    times = os.times()
    try:
        with open("/proc/self/statm", "rb") as f:
            vsize, rss = (int(v) for v in f.read().split()[:2])
    except (OSError, ValueError):
        vsize = rss = 0
    return OwnUsage(times.user + times.system, vsize * _PAGE, rss * _PAGE)


class Sampler:
    """Holds what a sample needs from the previous one; `sample()` is called on a timer."""

    def __init__(
        self,
        powercap_root: Path,
        proc_root: Path,
        max_cmdline: int,
        min_interval: float = 0.0,
        disks: DiskReader | None = None,
    ) -> None:
        self.powercap_root = powercap_root
        self.min_interval = min_interval  # shorter intervals are merged into the next
        self.procs = ProcReader(proc_root, max_cmdline)
        self.disks = disks
        self.topology: Topology | None = None
        self.carry: Carry | None = None
        # A sample still running in its thread when the app stops must finish before close().
        self._lock = threading.Lock()

    def sample(self) -> SampleResult:
        """Read everything once and compute the next snapshot; never raises on bad input."""
        with self._lock:
            return self._sample()

    def _sample(self) -> SampleResult:
        started = time.perf_counter()
        failures: dict[str, str] = {}
        discovered = None
        if self.topology is None or not self.topology.zones:
            # Discovered once; retried while nothing usable is found (module not loaded yet).
            self.topology = discovered = discover(self.powercap_root)
        topology = self.topology
        if not topology.host_keys:
            failures["powercap"] = (
                f"no RAPL zones under {self.powercap_root} "
                "(load intel_rapl_msr / intel_rapl_common, or mount /sys/class/powercap)"
            )
        energy, zone_errors = read_counters(topology)
        failures.update(zone_errors)
        wall, mono = time.time(), time.monotonic()
        system = None
        uptime_ticks = 0
        stats: dict = {}
        infos: dict = {}
        try:
            system, uptime_ticks = self.procs.read_system()
            stats, infos = self.procs.read_processes()
        except ProcError as exc:
            failures["proc"] = str(exc)
            system = None
        reading = Reading(
            wall=wall,
            mono=mono,
            energy=energy,
            system=system,
            uptime_ticks=uptime_ticks,
            stats=stats,
            infos=infos,
            load=self.procs.read_load(),
            memory=self.procs.read_memory(),
            own=own_usage(),
            cpus=os.cpu_count() or 1,
            disks=self.disks.read() if self.disks is not None else None,
            page_size=_PAGE,
        )
        step = next_snapshot(self.carry, reading, topology, self.min_interval)
        self.carry = step.carry
        sources = {z.key: z.key in energy for z in topology.zones}
        sources["proc"] = "proc" not in failures
        duration = time.perf_counter() - started
        return SampleResult(
            step.snapshot,
            failures,
            step.notes,
            duration,
            sources,
            discovered,
            step.frozen,
            step.merged,
        )

    def close(self) -> None:
        """Release the held /proc file descriptors (after any sample in flight)."""
        with self._lock:
            self.procs.close()
