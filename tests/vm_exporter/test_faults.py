"""Faults: agents that hang, flood or babble, a Scaphandre host, oned slow and oned down.

The cloud is the real simulator (as a subprocess) behind a real TCP proxy; the misbehaving
agents are real socket servers on each host's own loopback address.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from testkit import ROOT, Service, free_port, get_json, http, wait_for
from tests.vm_exporter.scrape import samples, series, value
from tests.vm_exporter.servers import (
    HangingServer,
    HttpAgent,
    Proxy,
    agent_json,
    port_free_on,
    send,
)

NET = "127.0.78"
# host name -> (address, VM ids on it)
HOSTS = {
    "hang": (f"{NET}.1", [1]),
    "huge": (f"{NET}.2", [2]),
    "garbage": (f"{NET}.3", [3]),
    "scaph": (f"{NET}.4", [42, 52, 524]),
    "good": (f"{NET}.5", [5, 6]),
    "silent": (f"{NET}.6", [8]),  # nothing listens there
}
HOST_ID = {name: i for i, name in enumerate(HOSTS)}
SCAPH_PAGE = (ROOT / "tests" / "fixtures" / "scaphandre" / "metrics_qemu.txt").read_bytes()
AGENT_TIMEOUT = 1.0
VM_COUNT = sum(len(ids) for _, ids in HOSTS.values()) + 1  # + the pending one


def _fleet(path: Path) -> Path:
    hosts = [{"name": n, "hostname": addr} for n, (addr, _) in HOSTS.items()]
    vms = [
        {"id": vm_id, "name": f"vm-{vm_id}", "host": n, "cpu_fraction": 0.0}
        for n, (_, ids) in HOSTS.items()
        for vm_id in ids
    ]
    vms.append({"id": 9, "name": "queued-9"})
    path.write_text(yaml.safe_dump({"hosts": hosts, "vms": vms}))
    return path


class Cloud:
    """The simulator behind a proxy, the fake agents and the exporter under test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fleet = _fleet(tmp / "fleet.yaml")
        self.oned_port, self.control_port, self.proxy_port = free_port(), free_port(), free_port()
        self.sim = self.start_sim()
        self.proxy = Proxy("127.0.0.1", self.proxy_port, ("127.0.0.1", self.oned_port))
        port = port_free_on([addr for addr, _ in HOSTS.values()])
        self.agent_port = port

        def huge(h):
            send(h, b"[" + b"0," * (10 * 1024 * 1024) + b"0]", "application/json")

        def scaph_metrics(h):
            send(h, SCAPH_PAGE, "text/plain; version=0.0.4")

        self.servers = [
            HangingServer(HOSTS["hang"][0], port),
            HttpAgent(HOSTS["huge"][0], port, {"/api/v1/vms": huge}),
            HttpAgent(
                HOSTS["garbage"][0],
                port,
                {"/api/v1/vms": lambda h: send(h, b"\x00 not json {", "application/json")},
            ),
            HttpAgent(HOSTS["scaph"][0], port, {"/metrics": scaph_metrics}),
            HttpAgent(
                HOSTS["good"][0],
                port,
                {
                    "/api/v1/vms": lambda h: send(
                        h, agent_json({5: (1_000_000, 7_000_000)}), "application/json"
                    )
                },
            ),
        ]
        auth = tmp / "one_auth"
        auth.write_text("oneadmin:opennebula\n")
        self.exporter_port = free_port()
        self.url = f"http://127.0.0.1:{self.exporter_port}"
        self.exporter = Service(
            [
                sys.executable,
                "-m",
                "services.vm_exporter",
                "--one-xmlrpc",
                f"http://127.0.0.1:{self.proxy_port}/RPC2",
                "--one-auth",
                str(auth),
                "--listen",
                f"127.0.0.1:{self.exporter_port}",
                "--agent-port",
                str(port),
                "--refresh-interval",
                "0.5",
                "--agent-timeout",
                str(AGENT_TIMEOUT),
                "--one-timeout",
                "1.5",
            ]
        )
        self.exporter.wait_http(self.url + "/healthz")

    def start_sim(self) -> Service:
        sim = Service(
            [
                sys.executable,
                "-m",
                "sim",
                "--listen",
                f"127.0.0.1:{self.oned_port}",
                "--control-listen",
                f"127.0.0.1:{self.control_port}",
                "--fleet",
                str(self.fleet),
            ]
        )
        sim.wait_http(f"http://127.0.0.1:{self.control_port}/healthz")
        return sim

    def metrics(self):
        return samples(self.url + "/metrics")

    def close(self) -> None:
        self.exporter.close()
        for server in self.servers:
            server.close()
        self.proxy.close()
        self.sim.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    c = Cloud(tmp_path_factory.mktemp("faults"))
    try:
        wait_for(
            lambda: value(c.metrics(), "one_cognit_vm_exporter_oned_up") == 1,
            what="a first complete refresh",
        )
        yield c
    finally:
        c.close()


def _refreshes(data) -> float:
    return value(data, "one_cognit_vm_exporter_refreshes_total", result="ok") or 0


def test_each_bad_agent_costs_only_its_own_host(cloud):
    first = _refreshes(cloud.metrics())
    data = wait_for(
        lambda: (d := cloud.metrics()) and _refreshes(d) >= first + 2 and d,
        what="two more refreshes",
    )
    power = series(data, "opennebula_vm_power_consumption_uW", "one_vm_id")
    up = series(data, "opennebula_host_power_source_up", "one_host_id")
    # Hanging, 20 MiB, garbage and unreachable agents: their VMs have no sample, host down.
    for name in ("hang", "huge", "garbage", "silent"):
        assert up[str(HOST_ID[name])] == 0, name
        for vm_id in HOSTS[name][1]:
            assert str(vm_id) not in power, (name, vm_id)
    # The healthy agent is unaffected: its listed VM has its power, the unlisted one draws 0.
    assert up[str(HOST_ID["good"])] == 1
    assert power["5"] == 1_000_000 and power["6"] == 0
    # The Scaphandre host (404 on /api/v1/vms): qemu + helper threads, one-52 is not one-524.
    assert up[str(HOST_ID["scaph"])] == 1
    assert power["42"] == 18_345_223 + 402_110 + 1_200 + 800
    assert power["52"] == 4_100_000 + 250_000 + 700
    assert power["524"] == 21_000_500
    assert value(data, "opennebula_host_power_consumption_uW", one_host_id=HOST_ID["scaph"]) == (
        61_234_567
    )
    assert power["9"] == 0  # pending: no host, no power
    errors = {
        labels: v
        for (n, labels), v in data.items()
        if n == "one_cognit_vm_exporter_agent_errors_total"
    }
    reasons = {dict(k)["one_host_id"]: dict(k)["reason"] for k in errors}
    assert reasons == {
        str(HOST_ID["hang"]): "timeout",
        str(HOST_ID["huge"]): "too_large",
        str(HOST_ID["garbage"]): "bad_reply",
        str(HOST_ID["silent"]): "unreachable",
    }
    # The hanging host costs one agent timeout, not the refresh.
    duration = value(data, "one_cognit_vm_exporter_refresh_duration_seconds")
    assert AGENT_TIMEOUT * 0.9 <= duration < AGENT_TIMEOUT + 2.0
    assert "power source down" in cloud.exporter.output()[1]


def test_oned_slow_serves_last_data_then_recovers(cloud):
    before = cloud.metrics()
    last = value(before, "one_cognit_vm_exporter_last_refresh_timestamp_seconds")
    cloud.proxy.hang = True
    try:
        down = wait_for(
            lambda: (
                (d := cloud.metrics()) and value(d, "one_cognit_vm_exporter_oned_up") == 0 and d
            ),
            what="oned_up 0 while oned does not answer",
        )
        # The last complete refresh is still served, whole.
        assert value(down, "opennebula_vm_total") == VM_COUNT
        assert series(down, "opennebula_vm_power_consumption_uW", "one_vm_id")["5"] == 1_000_000
        assert value(down, "one_cognit_vm_exporter_last_refresh_timestamp_seconds") >= last
        status, health = get_json(cloud.url + "/healthz")
        assert status == 503 and "no answer" in health["reason"]
        assert "oned unreachable" in cloud.exporter.output()[1]
    finally:
        cloud.proxy.hang = False
    wait_for(
        lambda: value(cloud.metrics(), "one_cognit_vm_exporter_oned_up") == 1,
        what="recovery once oned answers again",
    )
    assert get_json(cloud.url + "/healthz")[0] == 200


def test_oned_down_serves_last_data_then_recovers(cloud):
    cloud.sim.close()
    try:
        down = wait_for(
            lambda: (
                (d := cloud.metrics()) and value(d, "one_cognit_vm_exporter_oned_up") == 0 and d
            ),
            what="oned_up 0 while oned is down",
        )
        assert value(down, "opennebula_vm_total") == VM_COUNT
        assert value(down, "opennebula_host_total") == len(HOSTS)
        status, health = get_json(cloud.url + "/healthz")
        assert status == 503 and "oned" in health["failing"]
        assert "oned unreachable" in cloud.exporter.output()[1]
    finally:
        cloud.sim = cloud.start_sim()
    wait_for(
        lambda: value(cloud.metrics(), "one_cognit_vm_exporter_oned_up") == 1,
        what="recovery once oned is back",
    )
    status, _, _ = http("GET", cloud.url + "/healthz")
    assert status == 200


def test_refused_credentials_are_reported_without_the_password(cloud, tmp_path):
    auth = tmp_path / "one_auth"
    auth.write_text("oneadmin:not-the-password\n")
    port = free_port()
    wrong = Service(
        [
            sys.executable,
            "-m",
            "services.vm_exporter",
            "--one-xmlrpc",
            f"http://127.0.0.1:{cloud.oned_port}/RPC2",
            "--one-auth",
            str(auth),
            "--listen",
            f"127.0.0.1:{port}",
            "--refresh-interval",
            "0.5",
        ]
    )
    try:
        wrong.wait_http(f"http://127.0.0.1:{port}/healthz")
        reason = wait_for(
            lambda: (
                (body := get_json(f"http://127.0.0.1:{port}/healthz")[1])
                and "authenticated" in body.get("reason", "")
                and body["reason"]
            ),
            what="oned's refusal in /healthz",
        )
        assert "one.vmpool.infoextended" in reason or "one.hostpool.info" in reason
        data = samples(f"http://127.0.0.1:{port}/metrics")
        assert value(data, "one_cognit_vm_exporter_oned_up") == 0
        assert value(data, "opennebula_vm_total") is None  # nothing complete to serve yet
        wrong.stop()
        assert "not-the-password" not in "".join(wrong.output())
    finally:
        wrong.close()
