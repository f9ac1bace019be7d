"""From one sample's readings to the next snapshot, one level at a time (no I/O, no logging).

`next_snapshot(carry, reading, topology)` composes small pure steps, each a level of the
figures the agent serves, in the order they depend on each other:

1. `zone_counters`: each zone's wrap-corrected energy and its power since its last reading;
2. `host_figures`, `socket_figures`, `domain_figures`: what the zones add up to;
3. `cpu_time`, `process_power`: the CPU each process burned and the host's power split by it
   (`attribution.split`);
4. `vm_figures`: each VM's power (its processes summed) and energy (integrated);
5. `self_cpu_percent`: the agent's own CPU use.

`Carry` is what one sample hands to the next. A sample that comes less than `min_interval`
after the last one it would measure from (a late sample followed by one on schedule) is not
published: it is merged into the next, whose interval covers both. While a host counter or
/proc cannot be read, power is unknown: `frozen_snapshot` serves the energies as last read and
no power at all, and the carry stays as it was, so the next good sample measures over the
whole gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from .attribution import aggregate, jiffy_deltas, split
from .counters import counter_delta_uj, power_uw
from .figures import (
    NO_PROCESSES,
    DomainFigures,
    Processes,
    Reading,
    Snapshot,
    SocketFigures,
    VmFigures,
)
from .vms import group_vms
from .zones import Topology

VmKey = tuple[str, int]  # (VM name, QEMU pid): a restarted QEMU process is a new counter


@dataclass(frozen=True)
class ZoneCounter:
    """One zone after a reading: the raw counter, when it was read, and what it adds up to."""

    raw: int
    mono: float
    total_uj: int  # wrap-corrected energy, starting from the first raw value read
    power_uw: int | None  # since the zone's previous reading; None on the first or a refused one


@dataclass(frozen=True)
class Carry:
    """What a sample hands to the next one."""

    zones: Mapping[str, ZoneCounter]  # every zone read at least once, as last read
    reading: Reading  # the baseline for CPU attribution (host counters and /proc read well)
    vm_energy: Mapping[VmKey, float]  # uJ since the VM was first seen


@dataclass(frozen=True)
class Step:
    """The outcome of one sample: the next carry and the snapshot to serve (None: keep the last)."""

    carry: Carry | None
    snapshot: Snapshot | None
    notes: tuple[str, ...] = ()  # things worth a log line (implausible counter jumps)
    frozen: bool = False  # power unknown: host counters or /proc unreadable
    merged: bool = False  # too short an interval: left for the next sample to cover


def _sum_or_none(values: Iterable[int | None]) -> int | None:
    """The sum, or None when any part is unknown (unknown is not zero)."""
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def zone_counters(
    previous: Mapping[str, ZoneCounter],
    energy: Mapping[str, int],
    topology: Topology,
    mono: float,
) -> tuple[dict[str, ZoneCounter], list[str]]:
    """Each zone read now advanced from its previous reading; unreadable zones keep theirs.

    A zone not read now keeps its energy and has no power (its next reading measures over
    the gap). A delta refused by `counter_delta_uj` (a reset or a jump) gives no power and
    adds no energy; the zone goes on from the new raw value.
    """
    zones = {key: replace(z, power_uw=None) for key, z in previous.items()}
    notes: list[str] = []
    for zone in topology.zones:
        raw = energy.get(zone.key)
        if raw is None:
            continue
        before = previous.get(zone.key)
        if before is None:
            zones[zone.key] = ZoneCounter(raw, mono, raw, None)
            continue
        delta = counter_delta_uj(before.raw, raw, zone.max_range_uj)
        if delta is None:
            notes.append(
                f"{zone.key}: counter went from {before.raw} to {raw} "
                f"(max_energy_range_uj {zone.max_range_uj}); no power for this interval"
            )
            zones[zone.key] = ZoneCounter(raw, mono, before.total_uj, None)
        else:
            power = power_uw(delta, mono - before.mono)
            zones[zone.key] = ZoneCounter(raw, mono, before.total_uj + delta, power)
    return zones, notes


def host_figures(topology: Topology, zones: Mapping[str, ZoneCounter]) -> tuple[int | None, int]:
    """Host power (psys, else package + dram of every socket) and host energy."""
    host = [zones[k] for k in topology.host_keys]
    return _sum_or_none(z.power_uw for z in host), sum(z.total_uj for z in host)


def socket_figures(
    topology: Topology, zones: Mapping[str, ZoneCounter]
) -> tuple[SocketFigures, ...]:
    """Each socket with a package zone ever read: energy summed, power when all read now."""
    sockets = []
    for socket_id in topology.socket_ids:
        parts = [zones[z.key] for z in topology.packages(socket_id) if z.key in zones]
        if parts:
            power = _sum_or_none(z.power_uw for z in parts)
            sockets.append(SocketFigures(socket_id, power, sum(z.total_uj for z in parts)))
    return tuple(sockets)


def domain_figures(
    topology: Topology, zones: Mapping[str, ZoneCounter]
) -> tuple[DomainFigures, ...]:
    """Each domain zone (core, uncore, dram, ...) ever read: its energy, and power when read now."""
    return tuple(
        DomainFigures(
            z.kind, z.socket_id, z.domain_id, zones[z.key].power_uw, zones[z.key].total_uj
        )
        for z in topology.domains()
        if z.key in zones
    )


@dataclass(frozen=True)
class CpuTime:
    """CPU jiffies over an interval: each process's, the busy ones, and every CPU's capacity."""

    deltas: Mapping[int, int]
    busy: int
    total: int


def cpu_time(previous: Reading | None, reading: Reading) -> CpuTime | None:
    """The CPU each process burned since `previous`; None without a baseline or /proc."""
    if previous is None or previous.system is None or reading.system is None:
        return None
    return CpuTime(
        jiffy_deltas(previous.stats, reading.stats, previous.uptime_ticks),
        max(0, reading.system.busy_jiffies - previous.system.busy_jiffies),
        max(0, reading.system.total_jiffies - previous.system.total_jiffies),
    )


def process_power(host_power: int | None, cpu: CpuTime | None) -> dict[int, int] | None:
    """The host's power split over processes by the CPU they burned; None when unknown."""
    if host_power is None or cpu is None:
        return None
    return split(host_power, cpu.deltas, cpu.busy)


def process_figures(
    reading: Reading, power: Mapping[int, int] | None, cpu: CpuTime | None
) -> Processes:
    """The processes of `reading` with their power and CPU share when known."""
    return Processes(
        reading.infos,
        reading.stats,
        {} if power is None else power,
        {} if cpu is None else cpu.deltas,
        0 if cpu is None else cpu.total,
        reading.page_size,
    )


def vm_figures(
    reading: Reading,
    proc_power: Mapping[int, int] | None,
    vm_energy: Mapping[VmKey, float],
    seconds: float | None,
) -> tuple[tuple[VmFigures, ...], dict[VmKey, float]]:
    """Each VM's power (QEMU + helpers) and its energy, integrated over `seconds`."""
    groups = group_vms(
        (pid, info.comm, info.vm)
        for pid, info in reading.infos.items()
        if info.vm is not None or info.helper_of is not None
    )
    power: dict[int, int] = {}
    if proc_power is not None:
        # A VM whose QEMU process has no baseline yet has no power this interval (not zero).
        known = [vm for vm in groups if vm.pid in proc_power]
        power = aggregate(proc_power, {vm.pid: vm.pids for vm in known})
    energies: dict[VmKey, float] = {}
    vms = []
    for vm in groups:
        key = (vm.identity.name, vm.pid)
        energy = vm_energy.get(key, 0.0)
        uw = power.get(vm.pid)
        if uw is not None and seconds:
            energy += uw * seconds
        energies[key] = energy
        vms.append(
            VmFigures(
                vm.identity.name, vm.identity.one_vm_id, vm.pid, vm.helper_pids, uw, int(energy)
            )
        )
    return tuple(vms), energies


def self_cpu_percent(previous: Reading | None, reading: Reading) -> float | None:
    """The agent's CPU use since `previous`, as a percentage of the whole machine."""
    if previous is None or previous.own is None or reading.own is None:
        return None
    seconds = reading.mono - previous.mono
    if seconds <= 0:
        return None
    used = reading.own.cpu_seconds - previous.own.cpu_seconds
    return max(0.0, used / seconds * 100 / max(1, reading.cpus))


def without_power(snapshot: Snapshot) -> Snapshot:
    """The same figures with power unknown: what is served when no fresh power exists."""
    return replace(
        snapshot,
        interval_s=None,
        host_power_uw=None,
        sockets=tuple(replace(s, power_uw=None) for s in snapshot.sockets),
        domains=tuple(replace(d, power_uw=None) for d in snapshot.domains),
        processes=replace(snapshot.processes, power_uw={}),
        vms=tuple(replace(v, power_uw=None) for v in snapshot.vms),
    )


def _assemble(
    reading: Reading,
    topology: Topology,
    zones: Mapping[str, ZoneCounter],
    host_power: int | None,
    interval: float | None,
    table: Processes,
    vms: tuple[VmFigures, ...],
    baseline: Reading | None,
) -> Snapshot:
    """The snapshot of `reading` from its levels."""
    return Snapshot(
        timestamp=reading.wall,
        interval_s=interval,
        source=topology.source,
        host_power_uw=host_power,
        host_energy_uj=host_figures(topology, zones)[1],
        sockets=socket_figures(topology, zones),
        domains=domain_figures(topology, zones),
        processes=table,
        vms=vms,
        system=reading.system,
        load=reading.load,
        memory=reading.memory,
        own=reading.own,
        own_cpu_percent=self_cpu_percent(baseline, reading),
        disks=reading.disks,
    )


def frozen_snapshot(carry: Carry, reading: Reading, topology: Topology) -> Snapshot:
    """Power unknown (host counters or /proc unreadable): energies as last read, no power.

    The other figures are current when /proc reads (CPU over the time since the last good
    sample); the VMs are those of the last good reading when it does not (unknown is not gone).
    """
    zones = {key: replace(z, power_uw=None) for key, z in carry.zones.items()}
    procs = reading if reading.system is not None else carry.reading
    vms, _ = vm_figures(procs, None, carry.vm_energy, None)
    table = NO_PROCESSES
    if reading.system is not None:
        table = process_figures(reading, None, cpu_time(carry.reading, reading))
    return _assemble(reading, topology, zones, None, None, table, vms, carry.reading)


def next_snapshot(
    carry: Carry | None, reading: Reading, topology: Topology, min_interval: float = 0.0
) -> Step:
    """The snapshot for `reading`; frozen (no power) while host counters or /proc are unreadable.

    Before any good sample there is nothing to serve (None). An interval shorter than
    `min_interval` is merged into the next (None: the last snapshot stays): counters move in
    steps, so power over a short interval is mostly their granularity.
    """
    readable = bool(topology.host_keys) and all(k in reading.energy for k in topology.host_keys)
    if not readable or reading.system is None:
        if carry is None:
            return Step(None, None, frozen=True)
        return Step(carry, frozen_snapshot(carry, reading, topology), frozen=True)
    if carry is not None and reading.mono - carry.reading.mono < min_interval:
        return Step(carry, None, merged=True)
    zones, notes = zone_counters(
        carry.zones if carry else {}, reading.energy, topology, reading.mono
    )
    host_power, _ = host_figures(topology, zones)
    previous = carry.reading if carry else None
    interval = None if previous is None else reading.mono - previous.mono
    cpu = cpu_time(previous, reading)
    proc_power = process_power(host_power, cpu)
    vms, vm_energy = vm_figures(reading, proc_power, carry.vm_energy if carry else {}, interval)
    table = process_figures(reading, proc_power, cpu)
    snapshot = _assemble(reading, topology, zones, host_power, interval, table, vms, previous)
    return Step(Carry(zones, reading, vm_energy), snapshot, tuple(notes))
