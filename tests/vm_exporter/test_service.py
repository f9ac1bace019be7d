"""The exporter end to end: the real simulator with hypervisors, one real rapl_agent per host,
Debian's real Prometheus and promtool. Tests run in file order on one cloud; each says what it
changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

from testkit import Service, free_port, get_json, http, wait_for
from tests.vm_exporter.scrape import samples, series, value
from tests.vm_exporter.servers import port_free_on

NET = "127.0.79"
HOSTS = {"h1": f"{NET}.1", "h2": f"{NET}.2"}
FLEET = {
    "hosts": [{"name": name, "hostname": addr} for name, addr in HOSTS.items()],
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


class Cloud:
    """sim (+ hypervisors) -> one rapl_agent per host -> the exporter under test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        fleet = tmp / "fleet.yaml"
        fleet.write_text(yaml.safe_dump(FLEET))
        oned_port, control_port = free_port(), free_port()
        self.control = f"http://127.0.0.1:{control_port}"
        self.started: list[Service] = []
        self.sim = self._start(
            [
                sys.executable,
                "-m",
                "sim",
                "--listen",
                f"127.0.0.1:{oned_port}",
                "--control-listen",
                f"127.0.0.1:{control_port}",
                "--fleet",
                str(fleet),
                "--hypervisors",
                str(tmp / "hv"),
            ],
            self.control + "/healthz",
        )
        status, body = get_json(self.control + "/v1/hypervisors")
        assert status == 200 and body["enabled"], body
        self.hypervisors = {hv["host"]: hv for hv in body["hypervisors"]}
        self.agent_port = port_free_on(list(HOSTS.values()))
        self.agents = {name: self.start_agent(name) for name in HOSTS}
        auth = tmp / "one_auth"
        auth.write_text("oneadmin:opennebula\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.exporter = self._start(
            [
                sys.executable,
                "-m",
                "services.vm_exporter",
                "--one-xmlrpc",
                f"http://127.0.0.1:{oned_port}/RPC2",
                "--one-auth",
                str(auth),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--agent-port",
                str(self.agent_port),
                "--refresh-interval",
                "0.5",
                "--agent-timeout",
                "1",
            ],
            self.url + "/healthz",
        )

    def _start(self, argv: list[str], ready: str) -> Service:
        service = Service(argv)
        self.started.append(service)
        service.wait_http(ready, timeout=30)
        return service

    def start_agent(self, host: str) -> Service:
        hv = self.hypervisors[host]
        return self._start(
            [
                sys.executable,
                "-m",
                "services.rapl_agent",
                "--listen",
                f"{HOSTS[host]}:{self.agent_port}",
                "--powercap-root",
                hv["powercap_root"],
                "--proc-root",
                hv["proc_root"],
                "--interval",
                "0.5",
            ],
            f"http://{HOSTS[host]}:{self.agent_port}/healthz",
        )

    def metrics(self):
        return samples(self.url + "/metrics")

    def act(self, vm_id: int, action: str, body: dict | None = None) -> None:
        status, _, data = http("POST", f"{self.control}/v1/vms/{vm_id}/{action}", body or {})
        assert status == 200, data

    def close(self) -> None:
        for service in reversed(self.started):
            service.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    c = Cloud(tmp_path_factory.mktemp("exporter"))
    try:
        yield c
    finally:
        c.close()


def _all_running_have_power(c: Cloud):
    data = c.metrics()
    power = series(data, POWER, "one_vm_id")
    if all(power.get(v, 0) > 0 for v in RUNNING):
        return data
    return None


def test_running_vms_get_power_from_their_hosts_agents(cloud):
    data = wait_for(lambda: _all_running_have_power(cloud), timeout=30, what="power of all VMs")
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
    later = wait_for(
        lambda: (
            (e := series(cloud.metrics(), ENERGY, "one_vm_id"))
            and all(e[v] > first.get(v, 0) for v in RUNNING)
            and e
        ),
        what="energy of every running VM to grow",
    )
    assert later["7"] == first["7"] == 0


def test_each_refresh_is_two_oned_calls_never_one_per_vm(cloud):
    http("DELETE", cloud.control + "/calls")
    before = value(cloud.metrics(), "one_cognit_vm_exporter_refreshes_total", result="ok")
    wait_for(
        lambda: (
            value(cloud.metrics(), "one_cognit_vm_exporter_refreshes_total", result="ok")
            >= before + 3
        ),
        what="three refreshes",
    )
    status, body = get_json(cloud.control + "/calls")
    calls = body["calls"]
    assert set(calls) == {"one.vmpool.infoextended", "one.hostpool.info"}, calls
    # One of each per refresh (one refresh may be in flight at either end).
    assert abs(calls["one.vmpool.infoextended"] - calls["one.hostpool.info"]) <= 1
    assert 3 <= calls["one.vmpool.infoextended"] <= 6


def test_exposed_text_passes_promtool(cloud):
    status, _, body = http("GET", cloud.url + "/metrics")
    assert status == 200
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    problems = {
        line.strip() for line in (result.stdout + result.stderr).decode().splitlines() if line
    }
    # Only the names SPEC section 6 fixes (OpenNebula's `_total` gauges, the seed's `_uW`).
    assert problems == {
        'opennebula_vm_total non-counter metrics should not have "_total" suffix',
        'opennebula_host_total non-counter metrics should not have "_total" suffix',
        "opennebula_vm_power_consumption_uW metric names should be written in 'snake_case' "
        "not 'camelCase'",
        "opennebula_host_power_consumption_uW metric names should be written in 'snake_case' "
        "not 'camelCase'",
    }, problems


def _prometheus_query(url: str, query: str) -> list[dict]:
    status, _, raw = http("GET", f"{url}/api/v1/query?query={urllib.parse.quote(query)}")
    assert status == 200, raw[:300]  # AssertionError: wait_for polls again
    body = json.loads(raw)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_real_prometheus_scrapes_power_and_energy(cloud, tmp_path):
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "one_vm_exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{cloud.port}"]}],
                    }
                ],
            }
        )
    )
    prom = Service(
        [
            "/usr/bin/prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        prom.wait_http(url + "/-/ready", timeout=30)
        wait_for(lambda: http("GET", url + "/-/ready")[0] == 200, what="Prometheus ready")
        power = wait_for(
            lambda: {
                r["metric"]["one_vm_id"]: float(r["value"][1])
                for r in _prometheus_query(url, "opennebula_vm_power_consumption_uW")
            },
            timeout=30,
            what="Prometheus to store opennebula_vm_power_consumption_uW",
        )
        assert RUNNING <= set(power)
        increases = wait_for(
            lambda: (
                (
                    inc := {
                        r["metric"]["one_vm_id"]: float(r["value"][1])
                        for r in _prometheus_query(
                            url, "increase(opennebula_vm_energy_joules_total[1m])"
                        )
                    }
                )
                and all(inc.get(v, 0) > 0 for v in RUNNING)
                and inc
            ),
            timeout=30,
            what="a positive increase(opennebula_vm_energy_joules_total[1m]) per running VM",
        )
        assert increases["7"] == 0  # powered off: no energy
        targets = get_json(url + "/api/v1/targets")[1]["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], json.dumps(targets)[:500]
    finally:
        prom.close()


def test_poweroff_reports_zero_and_terminated_vm_disappears(cloud):
    cloud.act(52, "poweroff")
    data = wait_for(
        lambda: (d := cloud.metrics()) and value(d, "opennebula_vm_state", one_vm_id=52) == 8 and d,
        what="VM 52 powered off in the exporter",
    )
    assert value(data, POWER, one_vm_id=52) == 0
    energy = value(data, ENERGY, one_vm_id=52)
    cloud.act(52, "terminate", {"hard": True})
    data = wait_for(
        lambda: (
            (d := cloud.metrics()) and value(d, "opennebula_vm_state", one_vm_id=52) is None and d
        ),
        what="VM 52 gone from the exporter",
    )
    assert energy is not None
    assert not [k for k in data if ("one_vm_id", "52") in k[1]]
    assert value(data, "opennebula_vm_total") == len(FLEET["vms"]) - 1


def test_migration_keeps_energy_growing(cloud):
    seen: list[float] = []

    def moved():
        d = cloud.metrics()
        seen.append(value(d, ENERGY, one_vm_id=42))
        return (
            value(d, "opennebula_vm_host_id", one_vm_id=42) == 1
            and (value(d, POWER, one_vm_id=42) or 0) > 0
            and d
        )

    seen.append(value(cloud.metrics(), ENERGY, one_vm_id=42))
    cloud.act(42, "migrate", {"host": "h2", "live": True})
    wait_for(moved, timeout=30, what="VM 42 measured on h2")
    start = seen[-1]
    wait_for(
        lambda: seen.append(value(cloud.metrics(), ENERGY, one_vm_id=42)) or seen[-1] > start,
        what="VM 42's energy to grow on its new host",
    )
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False)), seen


def test_agent_down_means_no_sample_then_back_without_energy_reset(cloud):
    energy_before = value(cloud.metrics(), ENERGY, one_vm_id=524)
    cloud.agents["h2"].close()
    data = wait_for(
        lambda: (d := cloud.metrics()) and value(d, UP, one_host_id=1) == 0 and d,
        what="h2's agent reported down",
    )
    assert value(data, POWER, one_vm_id=524) is None  # unknown is not zero
    assert value(data, POWER, one_vm_id=7) == 0  # powered off there: still known to be 0
    # h1 runs no VM any more (52 terminated, 42 migrated): it is not asked at all.
    assert value(data, UP, one_host_id=0) is None
    errors = value(
        data, "one_cognit_vm_exporter_agent_errors_total", one_host_id=1, reason="unreachable"
    )
    assert errors and errors >= 1
    assert value(data, ENERGY, one_vm_id=524) >= energy_before
    time.sleep(1)
    cloud.agents["h2"] = cloud.start_agent("h2")  # a fresh agent: its counters start at 0
    back = wait_for(
        lambda: (
            (d := cloud.metrics())
            and value(d, UP, one_host_id=1) == 1
            and (value(d, POWER, one_vm_id=524) or 0) > 0
            and d
        ),
        timeout=30,
        what="h2's agent back",
    )
    after = value(back, ENERGY, one_vm_id=524)
    assert after >= energy_before
    later = wait_for(
        lambda: (e := value(cloud.metrics(), ENERGY, one_vm_id=524)) > after and e,
        what="VM 524's energy to keep growing after the restart",
    )
    assert later > energy_before
    assert "power source down" in cloud.exporter.output()[1]
