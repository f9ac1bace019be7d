"""Attribution over two snapshots: one split for processes, VMs as sums of their pids."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.rapl_agent.attribution import aggregate, jiffy_deltas, split
from services.rapl_agent.figures import Reading
from services.rapl_agent.power import next_snapshot, without_power
from services.rapl_agent.powercap import discover
from services.rapl_agent.procfs import ProcReader
from services.rapl_agent.procstat import PidStat

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SERVER = discover(FIXTURES / "sys" / "server" / "class" / "powercap")
CLIENT = discover(FIXTURES / "sys" / "client" / "class" / "powercap")
MAX = 262_143_328_850


def reading(tag: str, energy: dict[str, int], mono: float) -> Reading:
    reader = ProcReader(FIXTURES / "proc" / tag, max_cmdline=512)
    try:
        system, uptime = reader.read_system()
        stats, infos = reader.read_processes()
    finally:
        reader.close()
    return Reading(
        wall=1_700_000_000 + mono,
        mono=mono,
        energy=energy,
        system=system,
        uptime_ticks=uptime,
        stats=stats,
        infos=infos,
        load=reader.read_load(),
        memory=reader.read_memory(),
    )


E0 = {"intel-rapl:0": 1_000_000, "intel-rapl:0:0": 200_000, "intel-rapl:1": 3_000_000}
E0["intel-rapl:1:0"] = 400_000
# 2 s later: 50 J per package and 10 J per dram = 120 J in 2 s = 60 W.
E1 = {
    "intel-rapl:0": 51_000_000,
    "intel-rapl:0:0": 10_200_000,
    "intel-rapl:1": 53_000_000,
    "intel-rapl:1:0": 10_400_000,
}


def two_samples(e0=E0, e1=E1, topology=SERVER):
    first = next_snapshot(None, reading("t0", e0, 100.0), topology)
    second = next_snapshot(first.carry, reading("t1", e1, 102.0), topology)
    return first, second


# -- the split ------------------------------------------------------------------------------


def test_split_by_share_of_busy_jiffies():
    assert split(60_000_000, {"a": 300, "b": 100}, 600) == {"a": 30_000_000, "b": 10_000_000}


def test_split_normalises_when_processes_exceed_busy_jiffies():
    # Sampling skew: the processes claim 900 jiffies of an interval with 600 busy.
    shares = split(60_000_000, {"a": 600, "b": 300}, 600)
    assert shares == {"a": 40_000_000, "b": 20_000_000}
    assert sum(shares.values()) <= 60_000_000


def test_split_never_sums_above_total():
    deltas = {i: 7 + (i * 37) % 101 for i in range(1000)}
    for busy in (1, 100, sum(deltas.values()), 10**9):
        assert sum(split(59_999_999, deltas, busy).values()) <= 59_999_999


def test_split_with_nothing_to_share():
    assert split(60_000_000, {"a": 0}, 0) == {"a": 0}
    assert split(0, {"a": 5}, 10) == {"a": 0}


def stats(rows: dict[int, tuple[int, int]]) -> dict[int, PidStat]:
    """pid -> (starttime, jiffies) as the stat figures the reader returns."""
    return {pid: PidStat("x", jiffies, start) for pid, (start, jiffies) in rows.items()}


def test_jiffy_deltas_exit_reuse_and_birth():
    prev = stats({1: (10, 100), 2: (20, 500), 3: (30, 900), 4: (5, 50)})
    cur = stats({1: (10, 150), 3: (1010, 40), 5: (1005, 12), 6: (7, 800), 4: (5, 40)})
    deltas = jiffy_deltas(prev, cur, born_after=1000)
    # 2 exited: absent. 3 reused by a process born in the interval: its own 40.
    # 5 born in the interval: all of its 12. 6 is old but unseen before: no baseline, left out.
    # 4 went backwards (cannot happen, but never negative).
    assert deltas == {1: 50, 3: 40, 5: 12, 4: 0}


def test_aggregate():
    assert aggregate({1: 5, 2: 7, 3: 11}, {"vm": [1, 2], "none": [9]}) == {"vm": 12, "none": 0}


# -- snapshots from the stored /proc at t0 and t1 ------------------------------------------------


def test_first_sample_has_energy_but_no_power():
    first, _ = two_samples()
    snap = first.snapshot
    assert snap.host_power_uw is None
    assert snap.host_energy_uj == sum(E0.values())
    assert snap.processes.power_uw == {}
    assert all(s.power_uw is None for s in snap.sockets)
    assert [(v.name, v.power_uw, v.energy_uj) for v in snap.vms] == [
        ("one-42", None, 0),
        ("one-7", None, 0),
        ("win10", None, 0),
    ]


def test_second_sample_host_sockets_domains():
    _, second = two_samples()
    snap = second.snapshot
    assert snap.interval_s == pytest.approx(2.0)
    assert snap.host_power_uw == 60_000_000
    assert snap.host_energy_uj == sum(E1.values())
    assert [(s.socket_id, s.power_uw) for s in snap.sockets] == [(0, 25_000_000), (1, 25_000_000)]
    assert [(d.socket_id, d.kind, d.domain_id, d.power_uw) for d in snap.domains] == [
        (0, "dram", 0, 5_000_000),
        (1, "dram", 0, 5_000_000),
    ]


def test_process_power_follows_jiffy_shares():
    _, second = two_samples()
    power = dict(second.snapshot.processes.power_uw)
    # Busy jiffies over the interval: 13900 - 13300 = 600; host 60 W -> 100 mW per jiffy.
    assert power[1] == 1_000_000
    assert power[2101] == 30_000_000
    assert power[2105] == 4_000_000
    assert power[2106] == 100_000
    assert power[2107] == 0
    assert power[3100] == 5_000_000  # pid reused by a process born in the interval: no spike
    assert power[3200] == 3_000_000  # born in the interval
    assert 3000 not in power  # exited
    assert sum(power.values()) <= second.snapshot.host_power_uw


def test_vm_power_is_qemu_plus_helpers_and_energy_integrates():
    _, second = two_samples()
    vms = {v.name: v for v in second.snapshot.vms}
    assert vms["one-42"].power_uw == 30_000_000 + 4_000_000 + 100_000 + 0
    assert vms["one-42"].helper_pids == (2105, 2106, 2107)
    assert vms["one-42"].energy_uj == 34_100_000 * 2
    assert vms["one-42"].one_vm_id == 42
    assert vms["one-7"].power_uw == 10_000_000 + 1_000_000
    assert vms["win10"].power_uw == 0 and vms["win10"].one_vm_id is None
    processes = second.snapshot.processes.infos
    assert processes[2101].labels.endswith(b',vmname="one-42"}')


def test_wraparound_gives_no_spike():
    e0 = dict(E0, **{"intel-rapl:0": MAX - 20_000_000})
    e1 = dict(E1, **{"intel-rapl:0": 30_000_000})  # wrapped: 50 J again
    _, second = two_samples(e0, e1)
    assert second.notes == ()
    assert second.snapshot.host_power_uw == 60_000_000
    assert second.snapshot.sockets[0].power_uw == 25_000_000
    # Energy keeps counting up across the wrap.
    assert second.snapshot.host_energy_uj == two_samples(e0, e1)[0].snapshot.host_energy_uj + (
        120_000_000
    )


def test_counter_reset_gives_no_power_for_that_interval_not_a_spike():
    e1 = dict(E1, **{"intel-rapl:0": 10})  # reset (driver reload), not a wrap
    _, second = two_samples(E0, e1)
    snap = second.snapshot
    assert snap.host_power_uw is None
    assert snap.processes.power_uw == {}
    assert all(v.power_uw is None for v in snap.vms)
    assert "intel-rapl:0: counter went from 1000000 to 10" in second.notes[0]


def test_psys_is_the_host_when_present():
    e0 = {"intel-rapl:0": 1_000_000, "intel-rapl:0:0": 0, "intel-rapl:0:1": 0, "intel-rapl:1": 0}
    e1 = {
        "intel-rapl:0": 41_000_000,
        "intel-rapl:0:0": 30_000_000,
        "intel-rapl:0:1": 2_000_000,
        "intel-rapl:1": 90_000_000,
    }
    _, second = two_samples(e0, e1, CLIENT)
    assert second.snapshot.host_power_uw == 45_000_000
    assert second.snapshot.source == "powercap_rapl_psys"
    assert second.snapshot.sockets[0].power_uw == 20_000_000


def test_unreadable_host_counter_serves_no_power_and_the_last_energies():
    _, second = two_samples()
    broken = {k: v + 10_000_000 for k, v in E1.items() if k != "intel-rapl:1"}
    gap = next_snapshot(second.carry, reading("t1", broken, 103.0), SERVER)
    snap, last = gap.snapshot, second.snapshot
    # Power is unknown, not the last value: none anywhere, and the interval is not a new one.
    assert gap.frozen and gap.carry is second.carry
    assert snap.timestamp == 1_700_000_103.0
    assert snap.host_power_uw is None and snap.processes.power_uw == {} and snap.interval_s is None
    assert [(s.socket_id, s.power_uw, s.energy_uj) for s in snap.sockets] == [
        (s.socket_id, None, s.energy_uj) for s in last.sockets
    ]
    assert [(d.kind, d.power_uw, d.energy_uj) for d in snap.domains] == [
        (d.kind, None, d.energy_uj) for d in last.domains
    ]
    # Energy counters keep their last value (the readable zones' too: one consistent set).
    assert snap.host_energy_uj == last.host_energy_uj
    assert [(v.name, v.power_uw, v.energy_uj) for v in snap.vms] == [
        (v.name, None, v.energy_uj) for v in last.vms
    ]
    assert [v.energy_uj for v in last.vms] == [68_200_000, 22_000_000, 0]


def test_an_interval_under_the_minimum_is_merged_into_the_next():
    first = next_snapshot(None, reading("t0", E0, 100.0), SERVER, min_interval=1.0)
    # A late sample followed 0.4 s later by one on schedule: counters moved 12 J meanwhile.
    early = {k: v + (E1[k] - v) // 10 for k, v in E0.items()}
    short = next_snapshot(first.carry, reading("t1", early, 100.4), SERVER, min_interval=1.0)
    assert short.merged and short.snapshot is None and short.carry is first.carry
    # The next covers both: its power is over the 2 s since the first, not the last 1.6 s.
    second = next_snapshot(short.carry, reading("t1", E1, 102.0), SERVER, min_interval=1.0)
    assert not second.merged and second.snapshot.interval_s == pytest.approx(2.0)
    assert second.snapshot.host_power_uw == 60_000_000
    assert second.snapshot.vms[0].energy_uj == 34_100_000 * 2
    # Exactly the minimum is long enough.
    assert next_snapshot(first.carry, reading("t1", E1, 101.0), SERVER, 1.0).snapshot is not None


def test_readable_again_measures_over_the_whole_gap():
    first = next_snapshot(None, reading("t0", E0, 100.0), SERVER)
    broken = dict(E1)
    del broken["intel-rapl:1"]
    gap = next_snapshot(first.carry, reading("t1", broken, 101.0), SERVER)
    assert gap.carry is first.carry
    # Readable again two seconds later: power over the whole 3 s gap, no spike.
    e2 = {k: v + 60_000_000 // 4 for k, v in E1.items()}
    later = next_snapshot(gap.carry, reading("t1", e2, 103.0), SERVER)
    assert later.snapshot.host_power_uw == (120_000_000 + 60_000_000) // 3
    assert not later.frozen


def test_while_power_is_unknown_process_cpu_and_memory_are_still_served():
    first, _ = two_samples()
    broken = dict(E1)
    del broken["intel-rapl:0"]
    gap = next_snapshot(first.carry, reading("t1", broken, 102.0), SERVER)
    table = gap.snapshot.processes
    assert table.power_uw == {}
    assert table.stats[2101].rss == 2345 and len(table) == 12
    assert table.cpu_percent(2101) == pytest.approx(300 / 920 * 100)


def test_unreadable_proc_serves_no_power_and_the_last_vms():
    _, second = two_samples()
    blind = Reading(
        wall=1_700_000_103.0,
        mono=103.0,
        energy=E1,
        system=None,
        uptime_ticks=0,
        stats={},
        infos={},
    )
    step = next_snapshot(second.carry, blind, SERVER)
    assert step.frozen and step.snapshot.host_power_uw is None
    # Unknown is not gone: the VMs of the last good reading stay listed, without power.
    assert [(v.name, v.power_uw, v.energy_uj) for v in step.snapshot.vms] == [
        (v.name, None, v.energy_uj) for v in second.snapshot.vms
    ]


def test_nothing_is_served_before_a_good_sample():
    broken = dict(E0)
    del broken["intel-rapl:0"]
    step = next_snapshot(None, reading("t0", broken, 100.0), SERVER)
    assert step.snapshot is None and step.carry is None and step.frozen


def test_without_power_keeps_every_energy():
    _, second = two_samples()
    bare = without_power(second.snapshot)
    assert bare.host_power_uw is None and bare.processes.power_uw == {} and bare.interval_s is None
    assert all(s.power_uw is None for s in bare.sockets)
    assert all(v.power_uw is None for v in bare.vms)
    assert bare.host_energy_uj == second.snapshot.host_energy_uj
    assert [v.energy_uj for v in bare.vms] == [v.energy_uj for v in second.snapshot.vms]


def test_unreadable_domain_has_no_power_and_keeps_its_energy():
    first = next_snapshot(None, reading("t0", E0, 100.0), CLIENT)
    e1 = {"intel-rapl:0": 2_000_000, "intel-rapl:0:1": 500, "intel-rapl:1": 9_000_000}
    second = next_snapshot(first.carry, reading("t1", e1, 102.0), CLIENT)
    # core was read at t0 only; uncore is read for the first time at t1.
    assert [(d.kind, d.power_uw, d.energy_uj) for d in second.snapshot.domains] == [
        ("core", None, E0["intel-rapl:0:0"]),
        ("uncore", None, 500),
    ]
    assert second.snapshot.host_power_uw is not None


def test_processes_claiming_more_than_busy_are_clamped():
    first = next_snapshot(None, reading("t0", E0, 100.0), SERVER)
    r1 = reading("t1", E1, 102.0)
    # Pretend /proc/stat moved by only 100 busy jiffies (read earlier than the pid files).
    skewed = r1.system._replace(busy_jiffies=first.carry.reading.system.busy_jiffies + 100)
    second = next_snapshot(first.carry, Reading(**{**r1.__dict__, "system": skewed}), SERVER)
    total = sum(second.snapshot.processes.power_uw.values())
    assert total <= second.snapshot.host_power_uw
    assert total >= second.snapshot.host_power_uw * 0.99


def test_with_psys_an_unreadable_package_drops_its_socket_not_the_host():
    e0 = {"intel-rapl:0": 1_000_000, "intel-rapl:0:0": 0, "intel-rapl:0:1": 0, "intel-rapl:1": 0}
    first = next_snapshot(None, reading("t0", e0, 100.0), CLIENT)
    e1 = {"intel-rapl:0:0": 30_000_000, "intel-rapl:0:1": 2_000_000, "intel-rapl:1": 90_000_000}
    second = next_snapshot(first.carry, reading("t1", e1, 102.0), CLIENT)
    assert second.snapshot.host_power_uw == 45_000_000
    assert [(s.socket_id, s.power_uw, s.energy_uj) for s in second.snapshot.sockets] == [
        (0, None, 1_000_000)
    ]
