"""The exporter end to end: the real simulator with hypervisors, one real rapl_agent per host,
Debian's real Prometheus and promtool. The simulator and the agents are shared by the module
(tests run in file order; each says what it changes) and run on a loop thread beside the test;
the exporter runs in-process (`create_app` on a real port), one per test. What only a process
shows (flags, exit codes, signals) is in test_cli.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import urllib.parse
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from services.common.config import Listen
from services.rapl_agent.app import create_app as create_agent
from services.rapl_agent.config import RaplConfig
from sim.app import Simulator, build_cloud
from sim.config import SimConfig
from testkit import Service, free_port, free_port_on, get_json, http
from tests.vm_exporter.exporter import Exporter, Samples, running_exporter, series, value
from tests.vm_exporter.servers import LoopThread

NET = "127.0.79"
HOSTS = {"h1": f"{NET}.1", "h2": f"{NET}.2"}
FLEET = {
    # The two hosts are in two countries, as geo writes it (ISO 3166-1 alpha-2).
    "hosts": [
        {"name": name, "hostname": addr, "template": {"GEOLOCATION_COUNTRY": country}}
        for (name, addr), country in zip(HOSTS.items(), ("SE", "PL"), strict=True)
    ],
    "vms": [
        {"id": 42, "name": "sr-42", "host": "h1", "cpu_fraction": 0.1},
        {"id": 52, "name": "sr-52", "host": "h1", "cpu_fraction": 0.1},
        {"id": 524, "name": "sr-524", "host": "h2", "cpu_fraction": 0.1},
        {"id": 7, "name": "off-7", "host": "h2", "state": "poweroff"},
        {"id": 9, "name": "queued-9"},
    ],
}
RUNNING = {"42", "52", "524"}
POWER = "opennebula_vm_power_consumption_uW"
ENERGY = "opennebula_vm_energy_joules_total"
UP = "opennebula_host_power_source_up"
VM_CARBON = "opennebula_vm_carbon_grams_total"
HOST_ENERGY = "opennebula_host_energy_joules_total"
HOST_CARBON = "opennebula_host_carbon_grams_total"
INTENSITY = "opennebula_host_carbon_intensity_gco2e_per_kwh"
INTENSITY_INFO = "opennebula_host_carbon_intensity_info"
# Short cycles: the agents sample every 0.3 s, the exporter refreshes every 0.3 s.
INTERVAL = 0.3


class Cloud:
    """The simulator (+ hypervisors) and one rapl_agent per host, run on a loop thread beside
    the test, and a Prometheus told to scrape `exporter_port`; the exporter is started per test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        fleet = tmp / "fleet.yaml"
        fleet.write_text(yaml.safe_dump(FLEET))
        oned_port, control_port = free_port(), free_port()
        self.rpc = f"http://127.0.0.1:{oned_port}/RPC2"
        self.control = f"http://127.0.0.1:{control_port}"
        # Prometheus starts now (its TSDB takes a while) and scrapes the test's exporter once
        # one listens on this port.
        self.exporter_port, self.prometheus_port = free_port(), free_port()
        self.prometheus = self._start_prometheus(tmp)
        self.thread = LoopThread()
        self.agents: dict[str, web.AppRunner] = {}
        self.sim: Simulator | None = None
        try:
            self._start_cloud(fleet, oned_port, control_port)
        except BaseException:
            self.close()
            raise

    def _start_cloud(self, fleet: Path, oned_port: int, control_port: int) -> None:
        sim_config = SimConfig(
            listen=Listen("127.0.0.1", oned_port),
            control_listen=Listen("127.0.0.1", control_port),
            fleet=fleet,
            hypervisors=self.tmp / "hv",
            log_level="warning",
        )
        sim = Simulator(sim_config, build_cloud(sim_config))
        self.sim = sim
        self.thread.run(sim.start())
        status, body = get_json(self.control + "/v1/hypervisors")
        assert status == 200 and body["enabled"], body
        self.hypervisors = {hv["host"]: hv for hv in body["hypervisors"]}
        self.agent_port = free_port_on(list(HOSTS.values()))
        for name in HOSTS:
            self.agents[name] = self.start_agent(name)

    def _start_prometheus(self, tmp: Path) -> Service:
        config = tmp / "prometheus.yml"
        target = f"127.0.0.1:{self.exporter_port}"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "500ms", "evaluation_interval": "500ms"},
                    "scrape_configs": [
                        {"job_name": "one_vm_exporter", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        return Service(
            [
                "/usr/bin/prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
            ]
        )

    def start_agent(self, host: str) -> web.AppRunner:
        """A real rapl_agent reading the host's simulated powercap tree and /proc view."""
        hv = self.hypervisors[host]
        config = RaplConfig(
            listen=Listen(HOSTS[host], self.agent_port),
            powercap_root=Path(hv["powercap_root"]),
            proc_root=Path(hv["proc_root"]),
            interval=INTERVAL,
        )
        return self.thread.serve(create_agent(config), HOSTS[host], self.agent_port)

    def stop_agent(self, host: str) -> None:
        self.thread.run(self.agents[host].cleanup())

    def act(self, vm_id: int, action: str, body: dict | None = None) -> None:
        status, _, data = http("POST", f"{self.control}/v1/vms/{vm_id}/{action}", body or {})
        assert status == 200, data

    def exporter(self, tmp_path: Path, **flags):
        return running_exporter(
            tmp_path,
            self.rpc,
            agent_port=self.agent_port,
            refresh_interval=INTERVAL,
            agent_timeout=1.0,
            **flags,
        )

    def close(self) -> None:
        try:
            for runner in self.agents.values():
                self.thread.run(runner.cleanup())
            if self.sim is not None:
                self.thread.run(self.sim.stop())
        finally:
            self.thread.close()
            self.prometheus.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    c = Cloud(tmp_path_factory.mktemp("exporter"))
    try:
        yield c
    finally:
        c.close()


async def _until(exporter: Exporter, check, what: str, timeout: float = 30.0) -> Samples:
    """The metrics of the first refresh for which `check(samples)` holds."""
    latest: list[Samples] = []

    async def poll() -> bool:
        latest[:] = [await exporter.metrics()]
        return bool(check(latest[0]))

    deadline = asyncio.get_running_loop().time() + timeout
    while not await poll():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await exporter.refreshed(1)
    return latest[0]


def _all_running_have_power(data: Samples) -> bool:
    power = series(data, POWER, "one_vm_id")
    return all(power.get(v, 0) > 0 for v in RUNNING)


async def test_running_vms_get_power_from_their_hosts_agents(cloud, tmp_path):
    async with cloud.exporter(tmp_path) as exporter:
        data = await _until(exporter, _all_running_have_power, "power of all VMs")
        power = series(data, POWER, "one_vm_id")
        assert power["7"] == 0 and power["9"] == 0  # powered off, pending
        assert set(power) == RUNNING | {"7", "9"}
        assert series(data, UP, "one_host_id") == {"0": 1, "1": 1}
        host_power = series(data, "opennebula_host_power_consumption_uW", "one_host_id")
        # Each VM's share of its host, and the host is more than its VMs (idle power).
        assert host_power["0"] > power["42"] + power["52"]
        assert host_power["1"] > power["524"]
        assert value(data, "opennebula_vm_host_id", one_vm_id=524) == 1
        assert value(data, "opennebula_vm_total") == len(FLEET["vms"])
        assert value(data, "opennebula_host_total") == len(HOSTS)
        first = series(data, ENERGY, "one_vm_id")
        later = series(
            await _until(
                exporter,
                lambda d: all(
                    series(d, ENERGY, "one_vm_id").get(v, 0) > first.get(v, 0) for v in RUNNING
                ),
                "energy of every running VM to grow",
            ),
            ENERGY,
            "one_vm_id",
        )
        assert later["7"] == first["7"] == 0


async def test_each_refresh_is_two_oned_calls_never_one_per_vm(cloud, tmp_path):
    async with cloud.exporter(tmp_path) as exporter:
        await exporter.refreshed(1)
        await asyncio.to_thread(http, "DELETE", cloud.control + "/calls")
        data = await exporter.refreshed(3)
        status, body = await asyncio.to_thread(get_json, cloud.control + "/calls")
    calls = body["calls"]
    assert set(calls) == {"one.vmpool.infoextended", "one.hostpool.info"}, calls
    # One of each per refresh (one refresh may be in flight at either end).
    assert abs(calls["one.vmpool.infoextended"] - calls["one.hostpool.info"]) <= 1
    assert 3 <= calls["one.vmpool.infoextended"] <= 5
    assert value(data, "one_cognit_vm_exporter_refreshes_total", result="ok") >= 4


def _promtool(body: bytes) -> set[str]:
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    return {line.strip() for line in (result.stdout + result.stderr).decode().splitlines() if line}


async def test_exposed_text_passes_promtool(cloud, tmp_path):
    async with cloud.exporter(tmp_path) as exporter:
        await _until(exporter, _all_running_have_power, "power of all VMs")
        status, body = await exporter.get("/metrics")
    assert status == 200
    problems = await asyncio.to_thread(_promtool, body)
    # Only the names SPEC section 6 fixes (OpenNebula's `_total` gauges, the seed's `_uW`).
    assert problems == {
        'opennebula_vm_total non-counter metrics should not have "_total" suffix',
        'opennebula_host_total non-counter metrics should not have "_total" suffix',
        "opennebula_vm_power_consumption_uW metric names should be written in 'snake_case' "
        "not 'camelCase'",
        "opennebula_host_power_consumption_uW metric names should be written in 'snake_case' "
        "not 'camelCase'",
    }, problems


def _query(url: str, query: str) -> dict[str, float]:
    """An instant query's result by one_vm_id (or one_host_id); {} until Prometheus answers."""
    try:
        status, _, raw = http("GET", f"{url}/api/v1/query?query={urllib.parse.quote(query)}")
    except OSError:
        return {}
    body = json.loads(raw) if status == 200 else {}
    if body.get("status") != "success":
        return {}
    out = {}
    for r in body["data"]["result"]:
        labels = r["metric"]
        key = labels.get("one_vm_id", labels.get("one_host_id", ""))
        out[key] = float(r["value"][1])
    return out


async def test_real_prometheus_scrapes_power_energy_and_carbon(cloud, tmp_path):
    url = f"http://127.0.0.1:{cloud.prometheus_port}"
    async with cloud.exporter(tmp_path, port=cloud.exporter_port):

        async def query(q: str) -> dict[str, float]:
            return await asyncio.to_thread(_query, url, q)

        power: dict[str, float] = {}
        increases: dict[str, float] = {}

        async def stored() -> bool:
            power.update(await query(POWER))
            increases.update(await query(f"increase({ENERGY}[1m])"))
            hosts = await query(f"increase({HOST_CARBON}[1m])")
            return (
                RUNNING <= set(power)
                and all(increases.get(v, 0) > 0 for v in RUNNING)
                and all(hosts.get(h, 0) > 0 for h in ("0", "1"))
            )

        deadline = asyncio.get_running_loop().time() + 30
        while not await stored():
            assert asyncio.get_running_loop().time() < deadline, (power, increases)
            await asyncio.sleep(0.2)
        assert increases["7"] == 0  # powered off: no energy
        # Carbon = energy x the intensity of the host where it was used (g/J = g/kWh / 3.6e6),
        # the hosts' own counters too: increase() of one is increase() of the other times it.
        intensity = await query(INTENSITY)
        assert intensity == pytest.approx({"0": 40.695, "1": 661.926})
        sources = await query(f'{INTENSITY_INFO}{{source="country"}}')
        assert set(sources) == {"0", "1"}
        per_joule = {
            "vm": await query(f"increase({VM_CARBON}[1m]) / increase({ENERGY}[1m])"),
            "host": await query(f"increase({HOST_CARBON}[1m]) / increase({HOST_ENERGY}[1m])"),
        }
        host_of = {"42": "0", "52": "0", "524": "1"}
        expected = {vm: intensity[host] / 3.6e6 for vm, host in host_of.items()}
        assert {vm: per_joule["vm"][vm] for vm in RUNNING} == pytest.approx(expected, rel=1e-6)
        expected_hosts = {h: v / 3.6e6 for h, v in intensity.items()}
        assert per_joule["host"] == pytest.approx(expected_hosts, rel=1e-6)
        targets = (await asyncio.to_thread(get_json, url + "/api/v1/targets"))[1]
        health = [t["health"] for t in targets["data"]["activeTargets"]]
        assert health == ["up"], json.dumps(targets)[:500]


async def test_poweroff_reports_zero_and_terminated_vm_disappears(cloud, tmp_path):
    async with cloud.exporter(tmp_path) as exporter:
        await exporter.refreshed(1)
        await asyncio.to_thread(cloud.act, 52, "poweroff")
        data = await _until(
            exporter,
            lambda d: value(d, "opennebula_vm_state", one_vm_id=52) == 8,
            "VM 52 powered off in the exporter",
        )
        assert value(data, POWER, one_vm_id=52) == 0
        assert value(data, ENERGY, one_vm_id=52) is not None
        await asyncio.to_thread(cloud.act, 52, "terminate", {"hard": True})
        data = await _until(
            exporter,
            lambda d: value(d, "opennebula_vm_state", one_vm_id=52) is None,
            "VM 52 gone from the exporter",
        )
    assert not [k for k in data if ("one_vm_id", "52") in k[1]]
    assert value(data, "opennebula_vm_total") == len(FLEET["vms"]) - 1


async def test_migration_keeps_energy_growing(cloud, tmp_path):
    async with cloud.exporter(tmp_path) as exporter:
        seen: list[float] = []

        def moved(d: Samples) -> bool:
            seen.append(value(d, ENERGY, one_vm_id=42) or 0.0)
            return (
                value(d, "opennebula_vm_host_id", one_vm_id=42) == 1
                and (value(d, POWER, one_vm_id=42) or 0) > 0
            )

        await _until(exporter, lambda d: value(d, ENERGY, one_vm_id=42) is not None, "a series")
        seen.append(value(await exporter.metrics(), ENERGY, one_vm_id=42))
        await asyncio.to_thread(cloud.act, 42, "migrate", {"host": "h2", "live": True})
        await _until(exporter, moved, "VM 42 measured on h2")
        start = seen[-1]
        await _until(
            exporter,
            lambda d: seen.append(value(d, ENERGY, one_vm_id=42)) or seen[-1] > start,
            "VM 42's energy to grow on its new host",
        )
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False)), seen


async def test_agent_down_means_no_sample_then_back_without_energy_reset(cloud, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with cloud.exporter(tmp_path) as exporter:
        await _until(exporter, lambda d: value(d, ENERGY, one_vm_id=524) is not None, "a series")
        energy_before = value(await exporter.metrics(), ENERGY, one_vm_id=524)
        await asyncio.to_thread(cloud.stop_agent, "h2")
        data = await _until(exporter, lambda d: value(d, UP, one_host_id=1) == 0, "h2 down")
        assert value(data, POWER, one_vm_id=524) is None  # unknown is not zero
        assert value(data, POWER, one_vm_id=7) == 0  # powered off there: still known to be 0
        # h1 runs no VM any more (52 terminated, 42 migrated): it is not asked at all.
        assert value(data, UP, one_host_id=0) is None
        errors = value(
            data, "one_cognit_vm_exporter_agent_errors_total", one_host_id=1, reason="unreachable"
        )
        assert errors and errors >= 1
        assert value(data, ENERGY, one_vm_id=524) >= energy_before
        # A fresh agent: its counters start at 0.
        cloud.agents["h2"] = await asyncio.to_thread(cloud.start_agent, "h2")
        back = await _until(
            exporter,
            lambda d: value(d, UP, one_host_id=1) == 1 and (value(d, POWER, one_vm_id=524) or 0),
            "h2's agent back",
        )
        after = value(back, ENERGY, one_vm_id=524)
        assert after >= energy_before
        await _until(
            exporter,
            lambda d: value(d, ENERGY, one_vm_id=524) > after,
            "VM 524's energy to keep growing after the restart",
        )
    assert "power source down" in caplog.text and "answers again" in caplog.text


async def test_the_app_answers_its_http_contracts(cloud, tmp_path):
    async with cloud.exporter(tmp_path) as exporter:
        await exporter.refreshed(1)
        status, body = await exporter.healthz()
        assert status == 200 and body["status"] == "ok" and body["vms"] == len(FLEET["vms"]) - 1
        status, raw = await exporter.get("/nowhere")
        assert status == 404 and json.loads(raw) == {"error": "no route GET /nowhere"}
        resp = await exporter.client.delete("/metrics")
        assert resp.status == 405 and "not allowed" in (await resp.json())["error"]
        resp = await exporter.client.get("/metrics")
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
        # The product text first, the self metrics after it.
        assert text.index("opennebula_vm_total") < text.index("one_cognit_vm_exporter_up")
