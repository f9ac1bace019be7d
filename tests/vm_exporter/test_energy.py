"""opennebula_vm_energy_joules_total never decreases: migrations, restarts, gaps."""

from __future__ import annotations

import dataclasses

from services.common.oned import Vm
from services.vm_exporter.energy import MAX_MARKS, SLACK_S, EnergyTotal, advance
from services.vm_exporter.join import NOT_ON_HOST, UNKNOWN, Attribution
from services.vm_exporter.readings import (
    AGENT,
    MAX_ENERGY_UJ,
    MAX_POWER_UW,
    SCAPHANDRE,
    VmReading,
)

VM = Vm(42, 3, 3, 0, "node1", None, None, 1, (), ())
GAP = 50.0


def _agent(host: int, energy: int, power: int | None = 1, pid: int | None = None) -> Attribution:
    return Attribution(power, VmReading(power, energy, pid), (host, AGENT))


def _run(steps, vm=VM):
    """Advance through (time, attribution) steps; return the totals after each step."""
    ledger, totals = {}, []
    for at, attribution in steps:
        ledger = advance(ledger, [vm], {vm.id: attribution}, at, GAP)
        entry = ledger.get(vm.id)
        totals.append(None if entry is None else entry.total_uj)
    return totals


def test_first_sight_is_a_baseline_then_deltas_accumulate():
    assert _run([(0, _agent(0, 5_000)), (15, _agent(0, 8_000)), (30, _agent(0, 8_500))]) == [
        0,
        3_000,
        3_500,
    ]


def test_a_new_qemu_pid_is_a_new_counter_even_when_it_already_grew_past_the_old():
    # The VM left host 0 and came back (or QEMU restarted) between two refreshes: the new
    # process's counter started at 0 and already reached 9,000 uJ, above the old one's 8,000.
    steps = [(0, _agent(0, 5_000, pid=100)), (15, _agent(0, 8_000, pid=100))]
    totals = _run([*steps, (30, _agent(0, 9_000, pid=200)), (45, _agent(0, 9_500, pid=200))])
    assert totals == [0, 3_000, 12_000, 12_500]


def test_agent_restart_resets_its_counter_without_losing_or_jumping():
    totals = _run([(0, _agent(0, 5_000)), (15, _agent(0, 8_000)), (30, _agent(0, 700))])
    assert totals == [0, 3_000, 3_700]  # the new counter's 700 uJ are energy since restart


def test_migration_to_another_host_adds_the_new_counter_from_zero():
    totals = _run(
        [
            (0, _agent(0, 10_000)),
            (15, _agent(0, 12_000)),
            (30, _agent(1, 900)),  # on host 1 now: its agent counted 900 uJ since arrival
            (45, _agent(1, 2_900)),
            (60, _agent(0, 12_500)),  # back on host 0, whose agent kept its counter
        ]
    )
    assert totals == [0, 2_000, 2_900, 4_900, 5_400]


def test_never_decreases_over_any_sequence():
    steps = [(0, _agent(0, 10)), (1, _agent(0, 5)), (2, _agent(1, 3)), (3, UNKNOWN)]
    steps += [(4, _agent(1, 1)), (5, NOT_ON_HOST), (6, _agent(0, 100)), (7, _agent(0, 0))]
    totals = _run(steps)
    assert all(b >= a for a, b in zip(totals, totals[1:], strict=False))


def test_unknown_power_keeps_the_total_and_a_never_known_vm_has_no_series():
    assert _run([(0, UNKNOWN), (15, UNKNOWN)]) == [None, None]
    assert _run([(0, _agent(0, 10)), (15, UNKNOWN), (30, _agent(0, 50))]) == [0, 0, 40]


def test_vm_first_known_while_host_was_down_takes_a_baseline_not_its_history():
    # Agent down at start: the first counter seen may predate the exporter; it is not added.
    assert _run([(0, UNKNOWN), (15, _agent(0, 10**12)), (30, _agent(0, 10**12 + 5))]) == [
        None,
        0,
        5,
    ]


def test_new_vm_known_before_its_first_listing_gets_all_its_energy():
    # Known as not drawing power (pending, booting), then listed: all of its counter is new.
    assert _run([(0, NOT_ON_HOST), (15, _agent(0, 800))]) == [0, 800]


def test_scaphandre_power_is_integrated_as_trapezoids():
    def scaph(power):
        return Attribution(power, VmReading(power, None), (0, SCAPHANDRE))

    totals = _run([(0, scaph(1_000_000)), (10, scaph(3_000_000)), (20, scaph(3_000_000))])
    assert totals == [0, 20_000_000, 50_000_000]  # uW x s = uJ


def test_scaphandre_gap_longer_than_max_is_not_integrated():
    def scaph(power):
        return Attribution(power, VmReading(power, None), (0, SCAPHANDRE))

    totals = _run(
        [(0, scaph(1_000_000)), (GAP + 1, scaph(1_000_000)), (GAP + 11, scaph(1_000_000))]
    )
    assert totals == [0, 0, 10_000_000]


def test_vms_that_leave_the_pool_are_dropped():
    ledger = advance({}, [VM], {42: _agent(0, 1)}, 0, GAP)
    assert 42 in ledger
    assert advance(ledger, [], {}, 15, GAP) == {}


def test_marks_are_bounded():
    ledger = {}
    for host in range(MAX_MARKS + 5):
        vm = dataclasses.replace(VM, host_id=host)
        ledger = advance(ledger, [vm], {42: _agent(host, 10)}, host, GAP)
    assert len(ledger[42].marks) == MAX_MARKS
    assert ledger[42].total_uj == 10 * (MAX_MARKS + 4)


def test_joules_conversion():
    assert EnergyTotal(2_500_000).joules() == 2.5


def test_an_increase_no_vm_could_draw_is_not_added():
    # 100 kW for 15 s plus the slack is the most a VM's counter may grow between refreshes.
    most = MAX_POWER_UW * (15 + SLACK_S)
    totals = _run(
        [
            (0, _agent(0, 1_000)),
            (15, _agent(0, 1_000 + most)),  # just plausible
            (30, _agent(0, 2_000 + 2 * most)),  # more than 100 kW since the last refresh
            (45, _agent(0, 2_000 + 2 * most + 7)),  # from that baseline on
        ]
    )
    assert totals == [0, most, most, most + 7]


def test_a_new_counter_no_vm_could_have_filled_is_not_added():
    # A hostile agent flipping pids would otherwise add its largest counter every refresh.
    totals = _run(
        [
            (0, _agent(0, 10, pid=1)),
            (15, _agent(0, MAX_ENERGY_UJ, pid=2)),
            (30, _agent(0, MAX_ENERGY_UJ, pid=3)),
            (45, _agent(0, 500, pid=4)),
        ]
    )
    assert totals == [0, 0, 0, 500]


def test_sums_stay_exact_integers_at_the_bounds():
    ledger = {}
    for step in range(4):
        ledger = advance(ledger, [VM], {42: _agent(0, MAX_ENERGY_UJ, pid=step)}, step * 1e9, GAP)
    assert ledger[42].total_uj == 3 * MAX_ENERGY_UJ
    assert ledger[42].joules() == 3 * MAX_ENERGY_UJ / 1e6
