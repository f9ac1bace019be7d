"""The agent in-process (`create_app` + aiohttp's test client) on simulated hypervisors whose
counters follow a power model and whose VMs are real processes burning CPU."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from sim.hypervisor import SimHypervisor
from sim.hypervisor.power_model import CORE_SHARE, PACKAGE_SHARE, PSYS_SOCKET_SHARE, UNCORE_SHARE
from tests.rapl_agent.live import (
    HOST_W,
    SNAPSHOT_TS,
    assert_each_interval_follows_the_model,
    busy_jiffies,
    cpu_jiffies,
    mean_w,
    model_snapshots,
    model_tolerance,
    process_power,
    running_agent,
    value,
)

SOCKET_W = "scaph_socket_power_microwatts"
DOMAIN_W = "scaph_domain_power_microwatts"
HOST_J = "scaph_host_energy_microjoules"


async def test_idle_host_socket_and_domain_power_match_the_model(tmp_path):
    with SimHypervisor(tmp_path, sockets=2, dram=True, mmio=True, tick=0.01) as hv:
        async with running_agent(hv.powercap_root, hv.proc_root) as agent:
            snaps, rel = await model_snapshots(agent, hv)
    # No VM: the model draws idle_w = 40 W, split in the documented fixed proportions.
    socket_w = 40.0 / 2
    package_w = socket_w * PACKAGE_SHARE
    assert mean_w(snaps, HOST_W) == pytest.approx(40.0, rel=rel)
    for socket in ("0", "1"):
        assert mean_w(snaps, SOCKET_W, socket_id=socket) == pytest.approx(package_w, rel=rel)
        for domain, expected in (
            ("core", package_w * CORE_SHARE),
            ("uncore", package_w * UNCORE_SHARE),
            ("dram", socket_w - package_w),
        ):
            got = mean_w(snaps, DOMAIN_W, socket_id=socket, domain_name=domain)
            assert got == pytest.approx(expected, rel=rel), (socket, domain)
    # Single intervals carry the simulator's tick staircase; the means above telescope it
    # away. Here: no spikes, none negative.
    assert_each_interval_follows_the_model(snaps, hv, 40.0, HOST_W)
    for fams in snaps:
        # The mmio twins are not counted: two sockets, and the host is not 40 + 34 W.
        assert len(fams[SOCKET_W]) == 2
        assert value(fams, HOST_W, value_source="powercap_rapl_pkg") is not None


async def test_psys_is_preferred_when_present(tmp_path):
    with SimHypervisor(tmp_path, psys=True, tick=0.01) as hv:
        async with running_agent(hv.powercap_root, hv.proc_root) as agent:
            snaps, rel = await model_snapshots(agent, hv)
    # psys reads the whole platform (40 W); package + dram only PSYS_SOCKET_SHARE of it.
    assert mean_w(snaps, HOST_W, value_source="powercap_rapl_psys") == pytest.approx(40, rel=rel)
    assert mean_w(snaps, SOCKET_W) == pytest.approx(40 * PSYS_SOCKET_SHARE * PACKAGE_SHARE, rel=rel)


async def test_no_spike_or_negative_value_across_wraps(tmp_path, caplog):
    # A 100 J range: the 34 W package wraps every ~3 s, first ~0.25 s after the agent starts.
    # A wrap mistaken for a reset, or a negative delta, would be off by ~100 J.
    top = 100_000_000
    with SimHypervisor(tmp_path, max_energy_range_uj=top, tick=0.01) as hv:
        hv.set_energy_uj("intel-rapl:0", top - 8_000_000)
        async with running_agent(hv.powercap_root, hv.proc_root) as agent:
            snaps, _ = await model_snapshots(agent, hv)

            def wraps() -> int:
                # The served energy is wrap-corrected; the raw counter is that modulo the range.
                socket = [value(f, "scaph_socket_energy_microjoules", socket_id="0") for f in snaps]
                return sum(b // top > a // top for a, b in zip(socket, socket[1:], strict=False))

            while wraps() < 1 or len(snaps) < 16:
                snaps += await agent.snapshots(4)
            rel = model_tolerance(snaps, hv)
    # The wraps were corrected, not refused: a refused interval logs and serves no power.
    assert "counter went from" not in caplog.text
    energies = [value(f, HOST_J) for f in snaps]
    assert energies == sorted(energies), "host energy went backwards across a wrap"
    assert_each_interval_follows_the_model(snaps, hv, 40.0, HOST_W)
    assert_each_interval_follows_the_model(snaps, hv, 40.0 * PACKAGE_SHARE, SOCKET_W)
    assert mean_w(snaps, HOST_W) == pytest.approx(40.0, rel=rel)


async def test_first_sample_yields_energy_but_no_power(tmp_path):
    with SimHypervisor(tmp_path) as hv:
        hv.start_vm(5, cpu_fraction=0.1)
        async with running_agent(hv.powercap_root, hv.proc_root, interval=300) as agent:
            status, body = await agent.json("/api/v1/vms")
            fams = await agent.metrics()
    assert status == 200
    assert body["host"]["power_uw"] is None
    assert isinstance(body["host"]["energy_uj"], int) and body["host"]["energy_uj"] > 0
    assert [(v["name"], v["power_uw"], v["energy_uj"]) for v in body["vms"]] == [("one-5", None, 0)]
    assert value(fams, HOST_J) == body["host"]["energy_uj"]
    assert HOST_W not in fams and SOCKET_W not in fams
    assert "scaph_process_power_consumption_microwatts" not in fams


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Two VMs burning different CPU fractions on one simulated host."""
    with SimHypervisor(tmp_path_factory.mktemp("busy"), tick=0.02) as hv:
        big = hv.start_vm(1, cpu_fraction=0.6, helpers=2)
        small = hv.start_vm(2, cpu_fraction=0.15, helpers=1)
        yield hv, big, small


async def test_vms_json_is_the_spec_shape(host):
    hv, big, small = host
    # Long enough for the small VM to burn several jiffies (10 ms each) every interval.
    async with running_agent(hv.powercap_root, hv.proc_root, interval=0.3) as agent:
        await agent.snapshots(1)
        status, body = await agent.json("/api/v1/vms")
    assert status == 200
    assert set(body) == {"timestamp", "host", "vms"}
    assert abs(body["timestamp"] - time.time()) < 5
    assert set(body["host"]) == {"power_uw", "energy_uj"}
    vms = {v["name"]: v for v in body["vms"]}
    assert set(vms) == {"one-1", "one-2"}
    one = vms["one-1"]
    assert set(one) == {"name", "one_vm_id", "pid", "helper_pids", "power_uw", "energy_uj"}
    assert (one["one_vm_id"], one["pid"]) == (1, big.pid)
    assert one["helper_pids"] == sorted(big.helper_pids)
    assert vms["one-2"]["helper_pids"] == small.helper_pids
    assert all(isinstance(v["power_uw"], int) and v["power_uw"] > 0 for v in vms.values())


async def test_vm_power_is_qemu_plus_helpers(host):
    hv, big, small = host
    async with running_agent(hv.powercap_root, hv.proc_root) as agent:
        for _ in range(20):
            (fams,) = await agent.snapshots(1)  # past the first sample, which has no power
            status, body = await agent.json("/api/v1/vms")
            if body["timestamp"] == round(value(fams, SNAPSHOT_TS), 3):
                break  # both answers come from the same snapshot
        else:
            pytest.fail("never caught /metrics and /api/v1/vms on the same snapshot")
    power = process_power(fams)
    for qp in (big, small):
        vm = next(v for v in body["vms"] if v["pid"] == qp.pid)
        assert vm["power_uw"] == sum(power[p] for p in qp.pids)
    labels = {
        int(s.labels["pid"]): s.labels for s in fams["scaph_process_power_consumption_microwatts"]
    }
    assert labels[big.pid]["vmname"] == "one-1"
    assert labels[big.pid]["exe"] == "qemu-kvm-one"
    assert "-nameguest=one-1,debug-threads=on-S" in labels[big.pid]["cmdline"]
    assert len(labels[big.pid]["cmdline"]) == 512
    assert labels[big.helper_pids[0]]["exe"] == f"vhost-{big.pid}"
    assert "vmname" not in labels[big.helper_pids[0]]


async def test_a_burners_share_tracks_its_cpu_share(host):
    hv, big, small = host

    async def observe(agent):
        await agent.snapshots(1)
        status, body = await agent.json("/api/v1/vms")
        energy = {v["name"]: v["energy_uj"] for v in body["vms"]}
        return (
            energy,
            body["host"]["energy_uj"],
            cpu_jiffies(big.pids),
            cpu_jiffies(small.pids),
            busy_jiffies(),
        )

    async with running_agent(hv.powercap_root, hv.proc_root) as agent:
        e0, h0, b0, s0, busy0 = await observe(agent)
        await agent.snapshots(20)
        e1, h1, b1, s1, busy1 = await observe(agent)
    big_cpu, small_cpu = b1 - b0, s1 - s0
    assert big_cpu > 0 and small_cpu > 0
    big_j, small_j = e1["one-1"] - e0["one-1"], e1["one-2"] - e0["one-2"]
    # The VMs' energies split like the CPU their processes burned (measured by the test).
    assert big_j / small_j == pytest.approx(big_cpu / small_cpu, rel=0.25)
    # And each VM's part of the host's energy is its part of the machine's busy time.
    assert big_j / (h1 - h0) == pytest.approx(big_cpu / (busy1 - busy0), rel=0.3)


async def test_process_sum_never_exceeds_host_with_every_process_and_churn(tmp_path):
    with SimHypervisor(tmp_path, tick=0.02) as hv:
        hv.start_vm(1, cpu_fraction=0.5)
        # The whole machine's /proc: every process on this box competes for the host's watts.
        async with running_agent(hv.powercap_root, "/proc") as agent:
            snaps = []
            for round_ in range(3):
                # VMs exit and start mid-interval: their pids vanish and appear between samples.
                hv.start_vm(10 + round_, cpu_fraction=0.3)
                snaps += await agent.snapshots(2)
                hv.stop_vm(10 + round_)
                snaps += await agent.snapshots(1)
    for fams in snaps:
        host = value(fams, HOST_W)
        power = process_power(fams)
        assert len(power) > 20
        assert sum(power.values()) <= host * 1.01
        assert max(power.values()) <= host


async def test_http_errors_are_json(tmp_path):
    with SimHypervisor(tmp_path) as hv:
        async with running_agent(hv.powercap_root, hv.proc_root) as agent:
            status, body = await agent.json("/nope")
            assert status == 404 and "error" in body
            resp = await agent.client.post("/api/v1/vms", data=b"{}")
            assert resp.status == 405 and "error" in await resp.json()


async def test_the_zones_read_and_skipped_are_logged_once_at_start(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="services.rapl_agent")
    with SimHypervisor(tmp_path, mmio=True) as hv:
        async with running_agent(hv.powercap_root, hv.proc_root) as agent:
            await agent.snapshots(3, powered=False)
    lines = [r.getMessage() for r in caplog.records if "RAPL zones read" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "skipped: intel-rapl-mmio:0 (mmio twin of package-0, read through MSR)" in lines[0]


async def test_a_late_sample_is_not_followed_by_a_short_interval(tmp_path):
    interval = 0.2
    with SimHypervisor(tmp_path, tick=0.01) as hv:
        async with running_agent(hv.powercap_root, hv.proc_root, interval=interval) as agent:
            loop = asyncio.get_running_loop()
            snaps = await agent.snapshots(1)
            late = 0
            for _ in range(12):
                # Block the loop from 0.05 s before the next tick for 0.17 s: that sample
                # starts 0.12 s late, and the following tick is due 0.08 s after it. The
                # block is placed from the last sample's own time, not from when this test
                # saw it (on a loaded machine that can be most of an interval later).
                due = value(snaps[-1], SNAPSHOT_TS) + interval - 0.05 - time.time()
                if due > 0.01:
                    loop.call_later(due, time.sleep, 0.17)
                snaps += await agent.snapshots(3)
                stamps = [value(f, SNAPSHOT_TS) for f in snaps]
                gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
                late = sum(gap > interval * 1.3 for gap in gaps)
                if late >= 3:
                    break
            fams = await agent.metrics()
    assert late, "no sample was late: the test did not test"
    # Every published interval is at least half the configured one: a short one is skipped
    # by the schedule or merged into the next, never published on its own.
    assert min(gaps) >= interval / 2, gaps
    assert value(fams, "one_cognit_rapl_agent_samples", result="ok") >= len(snaps)


async def test_process_cpu_memory_and_disks_come_with_the_same_sample(host):
    hv, big, small = host

    def by_pid(name):
        return {int(s.labels["pid"]): s.value for s in fams[name]}

    async with running_agent(hv.powercap_root, hv.proc_root, interval=0.3) as agent:
        for _ in range(20):
            (fams,) = await agent.snapshots(1)
            # On a loaded machine a burner can miss a whole interval: take one where both ran.
            if min(process_power(fams)[p] for p in (big.pid, small.pid)) > 0:
                break

    power = process_power(fams)
    cpu = by_pid("scaph_process_cpu_usage_percentage")
    memory = by_pid("scaph_process_memory_bytes")
    virtual = by_pid("scaph_process_memory_virtual_bytes")
    assert set(cpu) == set(memory) == set(virtual) == set(power) == {*big.pids, *small.pids}
    # Power and CPU share come from the same jiffies: the same proportions between processes.
    assert cpu[big.pid] > 0 and cpu[small.pid] > 0
    ratio = cpu[big.pid] / cpu[small.pid]
    assert power[big.pid] / power[small.pid] == pytest.approx(ratio, rel=0.01)
    # A share of every CPU of the machine: the big VM burns at most 0.6 of one (0.7 with its
    # helpers), less on a loaded machine (the formula is checked on stored /proc files).
    assert cpu[big.pid] <= 70 / os.cpu_count() * 1.2
    assert sum(cpu.values()) <= 100
    for pid in big.pids:
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        assert memory[pid] == pytest.approx(rss_pages * os.sysconf("SC_PAGE_SIZE"), rel=0.2)
        assert virtual[pid] >= memory[pid] > 0
    # Disks: the machine's own mount table, sizes from statvfs.
    disks = fams["scaph_host_disk_total_bytes"]
    assert disks, "no disk listed"
    for sample in disks:
        assert set(sample.labels) == {
            "disk_file_system",
            "disk_is_removable",
            "disk_mount_point",
            "disk_name",
            "disk_type",
        }
        st = os.statvfs(sample.labels["disk_mount_point"])
        assert sample.value == st.f_frsize * st.f_blocks
