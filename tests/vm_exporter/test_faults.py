"""Faults: agents that hang, flood, babble or lie, a Scaphandre host, oned slow and oned down.

The cloud is the real simulator (on a loop thread beside the test) behind a real TCP proxy;
the misbehaving agents are real socket servers on each host's own loopback address. The
exporter runs in-process (`create_app` on a real port), one per test.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import pytest
import yaml

from services.common.config import Listen
from services.vm_exporter.readings import MAX_POWER_UW
from sim.app import Simulator, build_cloud
from sim.config import SimConfig
from testkit import ROOT, free_port, free_port_on
from testkit.agent_replies import agent_json
from tests.vm_exporter.exporter import Exporter, running_exporter, series, value
from tests.vm_exporter.servers import (
    HangingServer,
    HttpAgent,
    LoopThread,
    Proxy,
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
    "escapes": (f"{NET}.7", [10]),
    "digits": (f"{NET}.8", [11]),
    "e308": (f"{NET}.9", [12]),
    "nan": (f"{NET}.10", [13]),
    "twice": (f"{NET}.11", [14]),
}
HOST_ID = {name: i for i, name in enumerate(HOSTS)}
SCAPH_PAGE = (ROOT / "tests" / "fixtures" / "scaphandre" / "metrics_qemu.txt").read_bytes()
AGENT_TIMEOUT = 0.5
VM_COUNT = sum(len(ids) for _, ids in HOSTS.values()) + 1  # + the pending one
POWER_LINE = (
    "scaph_process_power_consumption_microwatts"
    '{{pid="{pid}",exe="qemu",vmname="one-{vm}",cmdline="{cmd}"}} {value}\n'
)
# What each lying agent answers (issue 14): every one is its own host's bad_reply.
LIES = {
    "escapes": ("/metrics", POWER_LINE.format(pid=1, vm=10, cmd='\\"' * 300_000, value=5)),
    "digits": ("/api/v1/vms", agent_json({11: (10**308, 5)}).decode()),
    "e308": ("/metrics", POWER_LINE.format(pid=1, vm=12, cmd="", value="1e308")),
    "nan": ("/api/v1/vms", '{"host": {"power_uw": NaN}, "vms": []}'),
    "twice": (
        "/api/v1/vms",
        '{"host": {}, "vms": ['
        + ", ".join([f'{{"one_vm_id": 14, "power_uw": {MAX_POWER_UW}, "energy_uj": 1}}'] * 2)
        + "]}",
    ),
}


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


def _not_found(handler) -> None:
    handler.send_error(404)


class Cloud:
    """The simulator (on a loop thread) behind a proxy, and the misbehaving agents."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fleet = _fleet(tmp / "fleet.yaml")
        self.oned_port, self.control_port, self.proxy_port = free_port(), free_port(), free_port()
        self.thread = LoopThread()
        self.sim: Simulator | None = None
        self.start_sim()
        self.proxy = Proxy("127.0.0.1", self.proxy_port, ("127.0.0.1", self.oned_port))
        self.rpc = f"http://127.0.0.1:{self.proxy_port}/RPC2"
        port = free_port_on([addr for addr, _ in HOSTS.values()])
        self.agent_port = port

        def huge(h):
            send(h, b"[" + b"0," * (10 * 1024 * 1024) + b"0]")

        self.servers = [
            HangingServer(HOSTS["hang"][0], port),
            HttpAgent(HOSTS["huge"][0], port, {"/api/v1/vms": huge}),
            HttpAgent(
                HOSTS["garbage"][0], port, {"/api/v1/vms": lambda h: send(h, b"\x00 not json {")}
            ),
            HttpAgent(
                HOSTS["scaph"][0],
                port,
                {"/metrics": lambda h: send(h, SCAPH_PAGE, "text/plain; version=0.0.4")},
            ),
            HttpAgent(
                HOSTS["good"][0],
                port,
                {"/api/v1/vms": lambda h: send(h, agent_json({5: (1_000_000, 7_000_000)}))},
            ),
        ]
        for name, (path, text) in LIES.items():
            body = text.encode()
            routes = {path: lambda h, b=body: send(h, b)}
            if path == "/metrics":
                routes["/api/v1/vms"] = _not_found
            self.servers.append(HttpAgent(HOSTS[name][0], port, routes))

    def start_sim(self) -> None:
        config = SimConfig(
            listen=Listen("127.0.0.1", self.oned_port),
            control_listen=Listen("127.0.0.1", self.control_port),
            fleet=self.fleet,
            log_level="warning",
        )
        sim = Simulator(config, build_cloud(config))
        self.thread.run(sim.start())
        self.sim = sim

    def stop_sim(self) -> None:
        if self.sim is not None:
            self.thread.run(self.sim.stop())
            self.sim = None

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.proxy.close()
        self.stop_sim()
        self.thread.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    c = Cloud(tmp_path_factory.mktemp("faults"))
    try:
        yield c
    finally:
        c.close()


def _exporter(cloud: Cloud, tmp_path: Path, **flags):
    options = {
        "agent_port": cloud.agent_port,
        "refresh_interval": 0.2,
        "agent_timeout": AGENT_TIMEOUT,
        "one_timeout": 0.5,
    }
    return running_exporter(tmp_path, cloud.rpc, **(options | flags))


async def test_each_bad_agent_costs_only_its_own_host(cloud, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with _exporter(cloud, tmp_path) as exporter:
        data = await exporter.refreshed(2)
        text = (await exporter.get("/metrics"))[1]
    # Whatever the agents sent, Prometheus can read the text (only the SPEC-fixed names lint).
    result = await asyncio.to_thread(
        subprocess.run, ["promtool", "check", "metrics"], input=text, capture_output=True
    )
    findings = (result.stdout + result.stderr).decode()
    assert findings.count("\n") == 4 and '_total" suffix' in findings, findings[:500]
    power = series(data, "opennebula_vm_power_consumption_uW", "one_vm_id")
    up = series(data, "opennebula_host_power_source_up", "one_host_id")
    # Hanging, 20 MiB, garbage, unreachable and lying agents: their VMs have no sample.
    for name in ("hang", "huge", "garbage", "silent", *LIES):
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
    reasons = {
        dict(labels)["one_host_id"]: dict(labels)["reason"]
        for (n, labels) in data
        if n == "one_cognit_vm_exporter_agent_errors_total"
    }
    assert reasons == {
        str(HOST_ID["hang"]): "timeout",
        str(HOST_ID["huge"]): "too_large",
        str(HOST_ID["garbage"]): "bad_reply",
        str(HOST_ID["silent"]): "unreachable",
    } | {str(HOST_ID[name]): "bad_reply" for name in LIES}
    # The hanging host costs one agent timeout, not the refresh.
    duration = value(data, "one_cognit_vm_exporter_refresh_duration_seconds")
    assert AGENT_TIMEOUT * 0.9 <= duration < AGENT_TIMEOUT + 2.0
    logged = caplog.text
    assert "power source down" in logged
    assert "over the plausible bound" in logged and "a line is over" in logged


async def _oned_up(exporter: Exporter, up: int):
    async def check():
        data = await exporter.metrics()
        return value(data, "one_cognit_vm_exporter_oned_up") == up and data

    deadline = asyncio.get_running_loop().time() + 15
    while not (data := await check()):
        assert asyncio.get_running_loop().time() < deadline, f"oned_up never became {up}"
        await asyncio.sleep(0.02)
    return data


async def test_oned_slow_serves_last_data_then_recovers(cloud, tmp_path, caplog):
    async with _exporter(cloud, tmp_path) as exporter:
        before = await exporter.refreshed(1)
        last = value(before, "one_cognit_vm_exporter_last_refresh_timestamp_seconds")
        cloud.proxy.hang = True
        try:
            down = await _oned_up(exporter, 0)
            # The last complete refresh is still served, whole.
            assert value(down, "opennebula_vm_total") == VM_COUNT
            power = series(down, "opennebula_vm_power_consumption_uW", "one_vm_id")
            assert power["5"] == 1_000_000
            assert value(down, "one_cognit_vm_exporter_last_refresh_timestamp_seconds") >= last
            status, health = await exporter.healthz()
            assert status == 503 and "no answer" in health["reason"]
            assert "oned unreachable" in caplog.text
        finally:
            cloud.proxy.hang = False
        await _oned_up(exporter, 1)
        assert (await exporter.healthz())[0] == 200


async def test_oned_down_serves_last_data_then_recovers(cloud, tmp_path, caplog):
    async with _exporter(cloud, tmp_path) as exporter:
        await exporter.refreshed(1)
        await asyncio.to_thread(cloud.stop_sim)
        try:
            down = await _oned_up(exporter, 0)
            assert value(down, "opennebula_vm_total") == VM_COUNT
            assert value(down, "opennebula_host_total") == len(HOSTS)
            status, health = await exporter.healthz()
            assert status == 503 and "oned" in health["failing"]
            assert "oned unreachable" in caplog.text
        finally:
            await asyncio.to_thread(cloud.start_sim)
        await _oned_up(exporter, 1)
        assert (await exporter.healthz())[0] == 200


async def test_refused_credentials_are_reported_without_the_password(cloud, tmp_path, caplog):
    async with _exporter(cloud, tmp_path, auth="oneadmin:not-the-password") as exporter:

        async def refused():
            body = (await exporter.healthz())[1]
            return "authenticated" in body.get("reason", "") and body["reason"]

        reason = None
        for _ in range(300):
            if reason := await refused():
                break
            await asyncio.sleep(0.02)
        assert reason, "oned's refusal never reached /healthz"
        assert "one.vmpool.infoextended" in reason or "one.hostpool.info" in reason
        data = await exporter.metrics()
        assert value(data, "one_cognit_vm_exporter_oned_up") == 0
        assert value(data, "opennebula_vm_total") is None  # nothing complete to serve yet
    assert "not-the-password" not in caplog.text


async def test_scrapes_and_healthz_are_served_while_every_host_misbehaves(cloud, tmp_path):
    # The contracts of the app stay whole whatever the agents do: routes, errors, metrics.
    async with _exporter(cloud, tmp_path) as exporter:
        await exporter.refreshed(1)
        status, body = await exporter.get("/nope")
        assert status == 404 and b'"error"' in body
        resp = await exporter.client.post("/metrics")
        assert resp.status == 405 and "error" in await resp.json()
        status, health = await exporter.healthz()
        assert status == 200 and health["power_sources_down"] == 4 + len(LIES)
