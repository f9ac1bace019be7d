"""Unreadable, garbage and vanished counters: a log line, /healthz 503 naming the zone, the
last good snapshot kept, never zeros, never a crash."""

from __future__ import annotations

import shutil

import pytest

from sim.hypervisor import SimHypervisor
from testkit import wait_for
from tests.rapl_agent.live import (
    SAMPLES,
    SNAPSHOT_TS,
    Agent,
    agent_argv,
    running_agent,
    until,
    value,
)

# Root in a container keeps CAP_DAC_OVERRIDE/READ_SEARCH; drop them so a mode-0 counter is
# as unreadable to the agent as a root-only energy_uj is to a non-root agent on kernel >= 5.10.
SETPRIV = shutil.which("setpriv")
DROP_DAC = [SETPRIV, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


@pytest.fixture
def hv(tmp_path):
    with SimHypervisor(tmp_path, tick=0.02) as hv:
        hv.start_vm(3, cpu_fraction=0.2)
        yield hv


async def degraded(agent) -> dict:
    """Wait for /healthz to answer 503; its body."""

    async def check():
        status, body = await agent.json("/healthz")
        return status == 503 and body

    return await until(check, 10.0, "/healthz 503")


async def healthy(agent) -> None:
    async def check():
        return (await agent.json("/healthz"))[0] == 200

    await until(check, 10.0, "/healthz 200")


@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is needed to drop capabilities")
def test_permission_denied_serves_no_power_keeps_energies_and_names_the_zone(hv, start_service):
    # A real process: only a process can run without the capabilities that read a mode-0 file.
    argv, base = agent_argv(hv.powercap_root, hv.proc_root, interval=0.1)
    agent = Agent(start_service([*DROP_DAC, *argv]), base)
    agent.snapshots(2)
    _, good = agent.json("/api/v1/vms")
    hv.break_counter("intel-rapl:0", "denied")
    status, body = wait_for(lambda: (r := agent.json("/healthz"))[0] == 503 and r)
    assert body["status"] == "degraded"
    assert "intel-rapl:0" in body["reason"] and "permission denied" in body["reason"]
    assert "CAP_DAC_READ_SEARCH" in body["reason"]
    # Power is unknown while it lasts: null, never the last value served as current.
    _, frozen = wait_for(
        lambda: (r := agent.json("/api/v1/vms"))[1]["host"]["power_uw"] is None and r
    )
    assert [v["power_uw"] for v in frozen["vms"]] == [None]
    _, later = wait_for(
        lambda: (r := agent.json("/api/v1/vms"))[1]["timestamp"] > frozen["timestamp"] and r
    )
    # Energy counters keep their last value (from the last good sample on).
    assert (
        later["host"]
        == frozen["host"]
        == {"power_uw": None, "energy_uj": frozen["host"]["energy_uj"]}
    )
    assert frozen["host"]["energy_uj"] >= good["host"]["energy_uj"]
    assert later["vms"] == frozen["vms"]
    fams = agent.metrics()
    assert not [name for name in fams if name.startswith("scaph_") and "power" in name], fams.keys()
    assert value(fams, "scaph_host_energy_microjoules") == frozen["host"]["energy_uj"]
    assert value(fams, "one_cognit_rapl_agent_source_up", source="intel-rapl:0") == 0
    assert value(fams, SAMPLES, result="no_power") >= 2
    logs = agent.logs()
    assert logs.count("intel-rapl:0: cannot read") == 1, "one log line per change, not per sample"
    # Readable again: power over the whole gap (no spike), energy goes on, healthy.
    hv.repair_counter("intel-rapl:0")
    wait_for(lambda: agent.json("/healthz")[0] == 200)
    (fams,) = agent.snapshots(1)
    assert value(fams, SNAPSHOT_TS) > later["timestamp"]
    assert 0 < value(fams, "scaph_host_power_microwatts") / 1e6 < 200
    assert value(fams, "scaph_host_energy_microjoules") > frozen["host"]["energy_uj"]
    assert "intel-rapl:0: readable again" in agent.logs()
    assert agent.service.proc.poll() is None


async def test_garbage_domain_counter_is_left_out_while_the_rest_goes_on(hv):
    async with running_agent(hv.powercap_root, hv.proc_root) as agent:
        await agent.snapshots(2)
        hv.break_counter("intel-rapl:0:0", "garbage")  # the core domain
        body = await degraded(agent)
        assert "intel-rapl:0:0" in body["reason"]
        assert "'not-a-number', not a counter" in body["reason"]
        # Host power does not need the core domain: snapshots keep coming, without a core power
        # (its energy counter keeps its last value).
        first, second = await agent.snapshots(2)
        for fams in (first, second):
            domains = {s.labels["domain_name"] for s in fams["scaph_domain_power_microwatts"]}
            assert domains == {"uncore", "dram"}
            assert value(fams, "scaph_host_power_microwatts") > 0
        assert value(second, SNAPSHOT_TS) > value(first, SNAPSHOT_TS)
        core = [
            value(f, "scaph_domain_energy_microjoules", domain_name="core") for f in (first, second)
        ]
        assert core[0] == core[1] > 0
        hv.repair_counter("intel-rapl:0:0")
        await healthy(agent)


async def test_vanished_counter(hv):
    async with running_agent(hv.powercap_root, hv.proc_root) as agent:
        await agent.snapshots(1)
        hv.break_counter("intel-rapl:0:2", "missing")  # dram: part of the host's power
        body = await degraded(agent)
        assert "intel-rapl:0:2" in body["reason"] and "vanished" in body["reason"]

        async def unpowered():
            status, vms = await agent.json("/api/v1/vms")
            return status == 200 and vms["host"]["power_uw"] is None and vms

        vms = await until(unpowered, 10.0, "no host power")
        assert [v["power_uw"] for v in vms["vms"]] == [None] and vms["host"]["energy_uj"] > 0
        fams = await agent.metrics()
        assert (
            "scaph_host_power_microwatts" not in fams
            and "scaph_domain_power_microwatts" not in fams
        )
        assert "scaph_process_power_consumption_microwatts" not in fams
        hv.repair_counter("intel-rapl:0:2")
        await healthy(agent)
        status, vms = await until(lambda: _powered(agent), 10.0, "host power again")


async def test_unreadable_from_the_start_serves_no_numbers(hv):
    hv.break_counter("intel-rapl:0", "empty")
    async with running_agent(hv.powercap_root, hv.proc_root) as agent:
        status, body = await agent.json("/api/v1/vms")
        assert status == 503 and "intel-rapl:0" in body["error"] and "is empty" in body["error"]
        status, healthz = await agent.json("/healthz")
        assert status == 503 and "intel-rapl:0" in healthz["reason"]
        fams = await agent.metrics()
        assert not [name for name in fams if name.startswith("scaph_")], "no numbers without data"
        assert value(fams, "one_cognit_rapl_agent_up") == 1
        hv.repair_counter("intel-rapl:0")

        async def served():
            return (await agent.json("/api/v1/vms"))[0] == 200

        await until(served, 10.0, "/api/v1/vms 200")


async def test_no_rapl_at_all(tmp_path):
    (tmp_path / "powercap").mkdir()
    async with running_agent(tmp_path / "powercap", "/proc") as agent:
        status, body = await agent.json("/healthz")
        assert status == 503 and "no RAPL zones under" in body["reason"]
        assert "intel_rapl_msr" in body["reason"]
        assert (await agent.json("/api/v1/vms"))[0] == 503


async def test_a_sample_that_raises_is_reported_on_healthz_and_sampling_goes_on(
    hv, monkeypatch, caplog
):
    # The only way to make a sample raise is to break the code, not the input.
    from services.rapl_agent import app as agent_app

    real = agent_app._sample_and_render
    calls = {"n": 0}

    def flaky(sampler, version):
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RuntimeError("boom")
        return real(sampler, version)

    monkeypatch.setattr(agent_app, "_sample_and_render", flaky)
    async with running_agent(hv.powercap_root, hv.proc_root) as agent:
        status, body = await agent.json("/healthz")
        assert status == 503
        assert "sample: sample failed: RuntimeError: boom" in body["reason"]
        assert (await agent.json("/api/v1/vms"))[0] == 503
        await healthy(agent)
        assert (await agent.json("/api/v1/vms"))[0] == 200
    # The traceback once, not once per failing sample.
    assert sum(r.getMessage().startswith("sample failed") for r in caplog.records) == 1


async def _powered(agent):
    status, vms = await agent.json("/api/v1/vms")
    return vms["host"]["power_uw"] is not None and (status, vms)


async def test_a_sample_that_raises_after_good_ones_takes_power_away(hv, monkeypatch):
    from services.rapl_agent import app as agent_app

    real = agent_app._sample_and_render
    broken = {"now": False}

    def flaky(sampler, version):
        if broken["now"]:
            raise RuntimeError("boom")
        return real(sampler, version)

    monkeypatch.setattr(agent_app, "_sample_and_render", flaky)
    async with running_agent(hv.powercap_root, hv.proc_root) as agent:
        await agent.snapshots(2)
        broken["now"] = True
        await degraded(agent)

        async def unpowered():
            status, vms = await agent.json("/api/v1/vms")
            return vms["host"]["power_uw"] is None and vms

        vms = await until(unpowered, 10.0, "no host power")
        assert [v["power_uw"] for v in vms["vms"]] == [None] and vms["host"]["energy_uj"] > 0
        fams = await agent.metrics()
        assert "scaph_host_power_microwatts" not in fams
        assert value(fams, "scaph_host_energy_microjoules") == vms["host"]["energy_uj"]
        broken["now"] = False
        await healthy(agent)
        await until(lambda: _powered(agent), 10.0, "host power again")
