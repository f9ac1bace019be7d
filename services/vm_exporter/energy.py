"""`opennebula_vm_energy_joules_total` and `opennebula_host_energy_joules_total`: energy that
never decreases (pure).

The agent keeps a per-VM energy counter, but that counter belongs to one host and one agent
run: a migration shows a different counter, an agent restart resets it. The exporter's total
is the sum of the deltas it saw, per source (host, kind), so neither resets nor jumps it:
- same source, counter grew: add the growth; counter fell (the agent restarted) or belongs to
  another QEMU pid (the VM's process was restarted, or it came back to this host): add the new
  value, all of it drawn since that counter started;
- a source first seen for a VM the exporter already knew (migration, new VM): add its value,
  all of it drawn since the exporter last knew the VM; for a VM never known before (the
  exporter just started, or its host was down until now) the value may predate the exporter:
  it only sets the baseline;
- Scaphandre gives power only: the energy is power integrated over time (trapezoids), never
  across a gap longer than `max_gap_s` (the power in between is unknown);
- an increase no machine could draw (more than `MAX_POWER_UW` over the time since the VM was
  last known, plus `SLACK_S` for the agents' own sampling) is not energy: it is not added, the
  counter only sets the next baseline. With every reading bounded where it enters, no sum here
  can overflow.
A host's own counter (the agent's `host.energy_uj`, or Scaphandre's host power integrated)
follows the same rules, with the host as its only source.
Everything is in integer microjoules and microwatts; joules only at exposition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from services.common.oned import Vm

from .join import Attribution
from .readings import MAX_POWER_UW, HostReading

# Sources remembered per VM (a VM that comes back to a host finds its old counter there).
MAX_MARKS = 8
# An agent's counter is read at its own sampling times, not at the refresh's.
SLACK_S = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Mark:
    """The last thing a source said about a VM: its counter, its power, and when."""

    at: float
    energy_uj: int | None
    power_uw: int | None
    pid: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class EnergyTotal:
    """A VM's or host's accumulated energy and the last mark of each source that reported it."""

    total_uj: int = 0
    marks: tuple[tuple[tuple[int, str], Mark], ...] = ()
    known_at: float | None = None  # the last refresh at which its power was known

    def joules(self) -> float:
        return self.total_uj / 1_000_000

    def mark(self, source: tuple[int, str]) -> Mark | None:
        for key, mark in reversed(self.marks):
            if key == source:
                return mark
        return None


def _delta(prev: Mark | None, cur: Mark, known_before: bool, max_gap_s: float) -> int:
    if cur.energy_uj is not None:
        if prev is None or prev.energy_uj is None:
            return cur.energy_uj if known_before else 0
        new_process = prev.pid is not None and cur.pid is not None and prev.pid != cur.pid
        if cur.energy_uj >= prev.energy_uj and not new_process:
            return cur.energy_uj - prev.energy_uj
        return cur.energy_uj  # a new counter: an agent restart or a new QEMU process
    if prev is None or prev.power_uw is None or cur.power_uw is None:
        return 0
    elapsed = cur.at - prev.at
    if not 0 < elapsed <= max_gap_s:
        return 0
    return int((prev.power_uw + cur.power_uw) * elapsed / 2)


def _remember(marks: tuple, source: tuple[int, str], mark: Mark) -> tuple:
    if marks and marks[-1][0] == source:
        return (*marks[:-1], (source, mark))  # the usual case: same host as last time
    kept = tuple(item for item in marks if item[0] != source)
    return (*kept, (source, mark))[-MAX_MARKS:]


def _apply(
    state: EnergyTotal | None, source: tuple[int, str], cur: Mark, max_gap_s: float
) -> EnergyTotal:
    """`state` after one reading from `source` (None: first sight, a baseline)."""
    base = state if state is not None else EnergyTotal()
    added = _delta(base.mark(source), cur, state is not None, max_gap_s)
    if base.known_at is not None and added > MAX_POWER_UW * (cur.at - base.known_at + SLACK_S):
        added = 0  # no machine draws that: the counter is only the next baseline
    return EnergyTotal(base.total_uj + added, _remember(base.marks, source, cur), cur.at)


def advance(
    ledger: Mapping[int, EnergyTotal],
    vms: Iterable[Vm],
    attributions: Mapping[int, Attribution],
    now: float,
    max_gap_s: float,
) -> dict[int, EnergyTotal]:
    """The VM ledger after one refresh; VMs that left the pool are dropped.

    A VM enters the ledger once its power is known; until then it has no energy series.
    """
    out: dict[int, EnergyTotal] = {}
    for vm in vms:
        prev = ledger.get(vm.id)
        attribution = attributions.get(vm.id)
        if attribution is None or not attribution.known:
            if prev is not None:
                out[vm.id] = prev
            continue
        reading, source = attribution.reading, attribution.source
        if reading is None or source is None:
            # Known to draw nothing this time.
            out[vm.id] = dataclasses.replace(prev or EnergyTotal(), known_at=now)
            continue
        cur = Mark(now, reading.energy_uj, reading.power_uw, reading.pid)
        out[vm.id] = _apply(prev, source, cur, max_gap_s)
    return out


def advance_hosts(
    ledger: Mapping[int, EnergyTotal],
    host_ids: Iterable[int],
    readings: Mapping[int, HostReading],
    now: float,
    max_gap_s: float,
) -> dict[int, EnergyTotal]:
    """The host ledger after one refresh: each host of the pool whose agent gave a figure.

    A host enters once its agent answered with one; hosts that left the pool are dropped.
    """
    out: dict[int, EnergyTotal] = {}
    for host_id in host_ids:
        prev = ledger.get(host_id)
        reading = readings.get(host_id)
        if reading is None or (reading.host_energy_uj is None and reading.host_power_uw is None):
            if prev is not None:
                out[host_id] = prev
            continue
        cur = Mark(now, reading.host_energy_uj, reading.host_power_uw)
        out[host_id] = _apply(prev, (host_id, reading.source), cur, max_gap_s)
    return out
