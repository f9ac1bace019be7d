"""What one scrape shows: the last complete refresh and the exporter's own status (pure values).

A refresh builds a new `Snapshot` and swaps it in whole; a scrape reads one `State` and never
waits on oned or a host. The status changes on every attempt, the data only when an attempt
completed, so a failed refresh leaves the last good data in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from services.common.oned import Host, Vm

from .carbon import Intensity
from .energy import EnergyTotal
from .join import Attribution, Target
from .readings import HostReading

_EMPTY: Mapping = MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """The joined view of one complete refresh."""

    taken_at: float  # unix seconds
    vms: tuple[Vm, ...]
    hosts: tuple[Host, ...]
    vm_power_uw: Mapping[int, int]  # only VMs whose power is known
    host_power_uw: Mapping[int, int]  # only hosts whose agent gave one
    host_source_up: Mapping[int, int]  # every host asked: 1 answered, 0 did not
    energy: Mapping[int, EnergyTotal]
    host_energy: Mapping[int, EnergyTotal] = dataclasses.field(default_factory=lambda: _EMPTY)
    intensity: Mapping[int, Intensity] = dataclasses.field(default_factory=lambda: _EMPTY)
    vm_carbon_g: Mapping[int, float] = dataclasses.field(default_factory=lambda: _EMPTY)
    host_carbon_g: Mapping[int, float] = dataclasses.field(default_factory=lambda: _EMPTY)


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    """The exporter's own health: oned, refresh timing and per-host agent errors."""

    oned_up: bool = False
    oned_error: str = "no refresh yet"
    refresh_duration_s: float | None = None
    phases: Mapping[str, float] = dataclasses.field(default_factory=lambda: _EMPTY)
    last_success_at: float | None = None
    refreshes: Mapping[str, int] = dataclasses.field(default_factory=lambda: _EMPTY)
    agent_errors: Mapping[tuple[int, str], int] = dataclasses.field(default_factory=lambda: _EMPTY)


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    """What a scrape reads, in one reference."""

    snapshot: Snapshot | None = None
    status: Status = dataclasses.field(default_factory=Status)
    text: bytes = b""  # the snapshot's product text, rendered once


def build_snapshot(
    taken_at: float,
    vms: tuple[Vm, ...],
    hosts: tuple[Host, ...],
    targets: Iterable[Target],
    readings: Mapping[int, HostReading],
    attributions: Mapping[int, Attribution],
    energy: Mapping[int, EnergyTotal],
    *,
    host_energy: Mapping[int, EnergyTotal] = _EMPTY,
    intensity: Mapping[int, Intensity] = _EMPTY,
    vm_carbon_g: Mapping[int, float] = _EMPTY,
    host_carbon_g: Mapping[int, float] = _EMPTY,
) -> Snapshot:
    """Join one refresh's pools, readings and ledgers into the values a scrape shows."""
    vm_power = {vm_id: a.power_uw for vm_id, a in attributions.items() if a.power_uw is not None}
    host_power = {
        host_id: r.host_power_uw for host_id, r in readings.items() if r.host_power_uw is not None
    }
    source_up = {t.host_id: int(t.host_id in readings) for t in targets}
    return Snapshot(
        taken_at=taken_at,
        vms=vms,
        hosts=hosts,
        vm_power_uw=MappingProxyType(vm_power),
        host_power_uw=MappingProxyType(host_power),
        host_source_up=MappingProxyType(source_up),
        energy=MappingProxyType(dict(energy)),
        host_energy=MappingProxyType(dict(host_energy)),
        intensity=MappingProxyType(dict(intensity)),
        vm_carbon_g=MappingProxyType(dict(vm_carbon_g)),
        host_carbon_g=MappingProxyType(dict(host_carbon_g)),
    )


def count(counts: Mapping, key: object, by: int = 1) -> Mapping:
    """A copy of `counts` with `key` increased (status counters are replaced, never mutated)."""
    out = dict(counts)
    out[key] = out.get(key, 0) + by
    return MappingProxyType(out)
