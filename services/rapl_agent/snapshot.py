"""One sample's readings in, the next immutable snapshot out: the agent's arithmetic, no I/O.

`advance(carry, reading, topology)` turns the raw readings of a sample (counters, /proc/stat,
per-process CPU times) plus what was carried from the previous sample into a `Snapshot` that
/metrics and /api/v1/vms render as they are. Energy deltas go through `counter_delta_uj`
(wraparound, implausible jumps) and power through the single `split` of `attribution`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.common.vm_identity import VmIdentity

from .attribution import aggregate, jiffy_deltas, split
from .energy import counter_delta_uj, power_uw
from .procstat import SystemStat
from .vms import group_vms
from .zones import Topology


@dataclass(frozen=True)
class ProcInfo:
    """What does not change while a process lives: cached per (pid, starttime)."""

    pid: int
    starttime: int
    comm: str
    cmdline: str  # argv joined with no separator, cut at --max-cmdline (Scaphandre's label)
    vm: VmIdentity | None
    labels: str  # the rendered `{cmdline=...,exe=...,pid=...}` block of its metric line
    helper_of: int | None = None  # the QEMU pid a helper thread works for (vhost-<pid>...)


@dataclass(frozen=True)
class OwnUsage:
    """The agent's own CPU and memory, for scaph_self_*."""

    cpu_seconds: float
    vsize_bytes: int
    rss_bytes: int


@dataclass(frozen=True)
class Reading:
    """Everything one sample read; `energy` holds only counters that read well."""

    wall: float
    mono: float
    energy: Mapping[str, int]
    zone_errors: Mapping[str, str]
    system: SystemStat | None
    uptime_ticks: int
    times: Mapping[int, tuple[int, int]]  # pid -> (starttime, utime + stime)
    infos: Mapping[int, ProcInfo]
    load: tuple[float, float, float] | None = None
    memory: Mapping[str, int] | None = None
    own: OwnUsage | None = None
    cpus: int = 1


@dataclass(frozen=True)
class ZoneFigures:
    """Power and wrap-corrected energy of one domain zone."""

    key: str
    kind: str
    socket_id: int | None
    domain_id: int | None
    power_uw: int | None
    energy_uj: int


@dataclass(frozen=True)
class SocketFigures:
    socket_id: int
    power_uw: int | None
    energy_uj: int


@dataclass(frozen=True)
class VmFigures:
    name: str
    one_vm_id: int | None
    pid: int
    helper_pids: tuple[int, ...]
    power_uw: int | None
    energy_uj: int


@dataclass(frozen=True)
class Snapshot:
    """What the agent serves until the next sample: immutable, rendered as is."""

    seq: int
    timestamp: float
    interval_s: float | None
    source: str
    host_power_uw: int | None
    host_energy_uj: int
    sockets: tuple[SocketFigures, ...]
    domains: tuple[ZoneFigures, ...]
    processes: tuple[tuple[ProcInfo, int], ...]  # (process, power_uw) when power is known
    vms: tuple[VmFigures, ...]
    process_count: int
    system: SystemStat | None
    load: tuple[float, float, float] | None
    memory: Mapping[str, int] | None
    own: OwnUsage | None
    own_cpu_percent: float | None
    zone_errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def records(self) -> int:
        """Energy records behind the figures: 2 once power is known, else 1 (scaph_self_*)."""
        return 1 if self.interval_s is None else 2


@dataclass(frozen=True)
class Carry:
    """What a sample hands to the next one."""

    seq: int
    base: Mapping[str, tuple[int, float]]  # zone -> (raw counter, monotonic time read)
    totals: Mapping[str, int]  # zone -> energy since the first reading, wrap-corrected
    reading: Reading  # the baseline for CPU attribution
    vm_energy: Mapping[tuple[str, int], float]  # (name, qemu pid) -> uJ since first seen


@dataclass(frozen=True)
class Step:
    carry: Carry | None
    snapshot: Snapshot | None
    notes: tuple[str, ...] = ()  # things worth a log line (implausible counter jumps)


def _sum_or_none(values: Iterable[int | None]) -> int | None:
    """The sum, or None when any part is unknown (unknown is not zero)."""
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def advance(carry: Carry | None, reading: Reading, topology: Topology) -> Step:
    """The snapshot for `reading`, or None (keep the last one) when host figures are unreadable."""
    missing = [k for k in topology.host_keys if k not in reading.energy]
    if not topology.host_keys or missing or reading.system is None:
        return Step(carry, None)
    notes: list[str] = []
    base = dict(carry.base) if carry else {}
    totals = dict(carry.totals) if carry else {}
    power: dict[str, int | None] = {}
    for zone in topology.zones:
        raw = reading.energy.get(zone.key)
        if raw is None:
            continue
        before = base.get(zone.key)
        if before is None:
            totals[zone.key] = raw
            power[zone.key] = None
        else:
            delta = counter_delta_uj(before[0], raw, zone.max_range_uj)
            if delta is None:
                notes.append(
                    f"{zone.key}: counter went from {before[0]} to {raw} "
                    f"(max_energy_range_uj {zone.max_range_uj}); no power for this interval"
                )
                power[zone.key] = None
            else:
                totals[zone.key] = totals.get(zone.key, before[0]) + delta
                power[zone.key] = power_uw(delta, reading.mono - before[1])
        base[zone.key] = (raw, reading.mono)

    host_power = _sum_or_none(power.get(k) for k in topology.host_keys)
    host_energy = sum(totals[k] for k in topology.host_keys)

    sockets = []
    for socket_id in topology.socket_ids:
        keys = [z.key for z in topology.packages(socket_id) if z.key in reading.energy]
        if keys:
            socket_power = _sum_or_none(power.get(k) for k in keys)
            sockets.append(SocketFigures(socket_id, socket_power, sum(totals[k] for k in keys)))
    domains = tuple(
        ZoneFigures(z.key, z.kind, z.socket_id, z.domain_id, power.get(z.key), totals[z.key])
        for z in topology.domains()
        if z.key in reading.energy
    )

    previous = carry.reading if carry else None
    proc_power: dict[int, int] | None = None
    interval = None
    if previous is not None and previous.system is not None:
        interval = reading.mono - previous.mono
        if host_power is not None:
            busy = max(0, reading.system.busy_jiffies - previous.system.busy_jiffies)
            deltas = jiffy_deltas(previous.times, reading.times, previous.uptime_ticks)
            proc_power = split(host_power, deltas, busy)

    groups = group_vms(
        (pid, info.comm, info.vm)
        for pid, info in reading.infos.items()
        if info.vm is not None or info.helper_of is not None
    )
    vm_power: dict[int, int] = {}
    if proc_power is not None:
        # A VM whose QEMU process has no baseline yet has no power this interval (not zero).
        known = [vm for vm in groups if vm.pid in proc_power]
        vm_power = aggregate(proc_power, {vm.pid: vm.pids for vm in known})
    vm_energy: dict[tuple[str, int], float] = {}
    vms = []
    for vm in groups:
        key = (vm.identity.name, vm.pid)
        energy = carry.vm_energy.get(key, 0.0) if carry else 0.0
        watts_uw = vm_power.get(vm.pid)
        if watts_uw is not None and interval:
            energy += watts_uw * interval
        vm_energy[key] = energy
        vms.append(
            VmFigures(
                vm.identity.name,
                vm.identity.one_vm_id,
                vm.pid,
                vm.helper_pids,
                watts_uw,
                int(energy),
            )
        )

    processes: tuple[tuple[ProcInfo, int], ...] = ()
    if proc_power is not None:
        infos = reading.infos
        processes = tuple((infos[pid], uw) for pid, uw in proc_power.items() if pid in infos)

    own_cpu_percent = None
    if previous is not None and previous.own and reading.own and interval:
        used = reading.own.cpu_seconds - previous.own.cpu_seconds
        own_cpu_percent = max(0.0, used / interval * 100 / max(1, reading.cpus))

    seq = carry.seq + 1 if carry else 1
    snapshot = Snapshot(
        seq=seq,
        timestamp=reading.wall,
        interval_s=interval,
        source=topology.source,
        host_power_uw=host_power,
        host_energy_uj=host_energy,
        sockets=tuple(sockets),
        domains=domains,
        processes=processes,
        vms=tuple(vms),
        process_count=len(reading.times),
        system=reading.system,
        load=reading.load,
        memory=reading.memory,
        own=reading.own,
        own_cpu_percent=own_cpu_percent,
        zone_errors=dict(reading.zone_errors),
    )
    return Step(Carry(seq, base, totals, reading, vm_energy), snapshot, tuple(notes))
