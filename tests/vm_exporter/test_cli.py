"""The command: flags, exit codes, and a graceful stop while oned hangs."""

from __future__ import annotations

import signal
import sys
import time

import pytest
import yaml

from services.common.config import Listen, load_config
from services.common.errors import ConfigError
from services.vm_exporter.app import create_app
from services.vm_exporter.config import MAX_AGENT_REPLY, ExporterConfig
from services.vm_exporter.scaphandre import MAX_LABEL_VALUE, MAX_LINE
from sim.app import Simulator, build_cloud
from sim.config import SimConfig
from testkit import VENV_BIN, Service, free_port, free_port_on, get_json, http, run, wait_for
from testkit.agent_replies import largest_scaphandre_page
from tests.vm_exporter.exporter import parse, value
from tests.vm_exporter.servers import HangingServer, HttpAgent, LoopThread, send

MODULE = [sys.executable, "-m", "services.vm_exporter"]
SPEC_FLAGS = {
    "--one-xmlrpc": "http://localhost:2633/RPC2",
    "--one-auth": "one_auth",
    "--listen": "0.0.0.0:9925",
    "--agent-port": "8080",
    "--refresh-interval": "15.0",
    "--agent-timeout": "2.0",
    "--agent-concurrency": "64",
}


def test_console_script_help_lists_every_flag_with_its_default():
    result = run([str(VENV_BIN / "one-vm-exporter"), "--help"], env={"PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for flag, default in SPEC_FLAGS.items():
        assert flag in text
        assert default in text, (flag, default)
    assert "--one-timeout" in text and "--carbon-data" in text


def test_missing_one_auth_file_exits_2_with_one_clear_line(tmp_path):
    # Bad flags take the same way out (services.common.runner): checked in-process below.
    result = run([*MODULE, "--one-auth", str(tmp_path / "nope")])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ONE_AUTH" in lines[0] and "nope" in lines[0]
    assert "Traceback" not in result.stderr


def test_one_auth_and_xmlrpc_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_AUTH", str(tmp_path / "absent"))
    monkeypatch.setenv("ONE_XMLRPC", "http://oned.example:2633/RPC2")
    config = load_config(ExporterConfig, [], prog="x", description="")
    assert config.one_xmlrpc == "http://oned.example:2633/RPC2"
    with pytest.raises(ConfigError, match="absent"):
        create_app(config)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--agent-timeout", "0"], "--agent-timeout"),
        (["--agent-port", "70000"], "--agent-port"),
        (["--refresh-interval", "soon"], "--refresh-interval"),
        (["--agent-concurrency", "0"], "--agent-concurrency"),
        (["--listen", "nowhere"], "--listen"),
        (["--one-timeout", "-1"], "--one-timeout"),
    ],
)
def test_bad_flags_are_refused_naming_the_flag(tmp_path, args, says):
    auth = tmp_path / "one_auth"
    auth.write_text("oneadmin:opennebula\n")
    with pytest.raises(ConfigError, match=says):
        load_config(ExporterConfig, ["--one-auth", str(auth), *args], prog="x", description="")


def test_sigterm_exits_0_quickly_even_while_oned_hangs(tmp_path, start_service):
    oned_port, port = free_port(), free_port()
    oned = HangingServer("127.0.0.1", oned_port)
    auth = tmp_path / "one_auth"
    auth.write_text("oneadmin:opennebula\n")
    try:
        service: Service = start_service(
            [
                *MODULE,
                "--one-xmlrpc",
                f"http://127.0.0.1:{oned_port}/RPC2",
                "--one-auth",
                str(auth),
                "--listen",
                f"127.0.0.1:{port}",
                "--one-timeout",
                "60",
            ]
        )
        service.wait_http(f"http://127.0.0.1:{port}/healthz")
        status, body = get_json(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and "oned" in body["failing"]  # no refresh yet
        started = time.monotonic()
        assert service.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 5
        assert "oneadmin:opennebula" not in "".join(service.output())
    finally:
        oned.close()


def test_sigterm_exits_0_quickly_while_agents_send_the_largest_replies(tmp_path, start_service):
    # Label values full of escapes once cost minutes of event loop per page: no scrape, no
    # /healthz, SIGTERM ignored. Now every page is one pass in short steps.
    address = "127.0.82.1"
    agent_port, oned_port, control_port, port = (
        free_port_on([address]),
        free_port(),
        free_port(),
        free_port(),
    )
    page = largest_scaphandre_page(MAX_AGENT_REPLY - 1024, MAX_LINE, MAX_LABEL_VALUE)
    routes = {"/api/v1/vms": lambda h: h.send_error(404), "/metrics": lambda h: send(h, page)}
    agent = HttpAgent(address, agent_port, routes)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        yaml.safe_dump(
            {
                "hosts": [{"name": "h", "hostname": address}],
                "vms": [{"id": 2_000_000, "name": "big", "host": "h", "cpu_fraction": 0.0}],
            }
        )
    )
    auth = tmp_path / "one_auth"
    auth.write_text("oneadmin:opennebula\n")
    # The simulator runs beside the test; the exporter is the process under test.
    sim_config = SimConfig(
        listen=Listen("127.0.0.1", oned_port),
        control_listen=Listen("127.0.0.1", control_port),
        fleet=fleet,
        log_level="warning",
    )
    sim, thread = Simulator(sim_config, build_cloud(sim_config)), LoopThread()
    try:
        thread.run(sim.start())
        exporter: Service = start_service(
            [
                *MODULE,
                "--one-xmlrpc",
                f"http://127.0.0.1:{oned_port}/RPC2",
                "--one-auth",
                str(auth),
                "--listen",
                f"127.0.0.1:{port}",
                "--agent-port",
                str(agent_port),
                "--refresh-interval",
                "0.1",
                "--agent-timeout",
                "30",
            ]
        )
        exporter.wait_http(f"http://127.0.0.1:{port}/healthz")
        power = wait_for(
            lambda: value(
                parse(http("GET", f"http://127.0.0.1:{port}/metrics")[2].decode()),
                "opennebula_vm_power_consumption_uW",
                one_vm_id=2_000_000,
            ),
            timeout=60,
            what="the VM's power out of the 16 MiB page",
        )
        assert power == 1_000_000
        started = time.monotonic()
        assert exporter.stop(signal.SIGTERM) == 0  # while the next page is being parsed
        assert time.monotonic() - started < 5
    finally:
        agent.close()
        thread.run(sim.stop())
        thread.close()
