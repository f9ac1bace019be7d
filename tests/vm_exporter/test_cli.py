"""The command: flags, exit codes, and a graceful stop while oned hangs."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from testkit import VENV_BIN, Service, free_port, get_json, run
from tests.vm_exporter.servers import HangingServer

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
    assert "--one-timeout" in text


def test_missing_one_auth_file_exits_2_with_one_clear_line(tmp_path):
    result = run([*MODULE, "--one-auth", str(tmp_path / "nope")])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ONE_AUTH" in lines[0] and "nope" in lines[0]


def test_one_auth_from_the_environment(tmp_path):
    result = run(MODULE, env={"ONE_AUTH": str(tmp_path / "absent"), "PATH": "/usr/bin"})
    assert result.returncode == 2 and "absent" in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--agent-timeout", "0"], "--agent-timeout"),
        (["--agent-port", "70000"], "--agent-port"),
        (["--refresh-interval", "soon"], "--refresh-interval"),
        (["--agent-concurrency", "0"], "--agent-concurrency"),
        (["--listen", "nowhere"], "--listen"),
    ],
)
def test_bad_flags_exit_2(tmp_path, args, says):
    auth = tmp_path / "one_auth"
    auth.write_text("oneadmin:opennebula\n")
    result = run([*MODULE, "--one-auth", str(auth), *args])
    assert result.returncode == 2 and says in result.stderr
    assert "Traceback" not in result.stderr


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
