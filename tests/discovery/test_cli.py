"""`one-discovery` as a process: --help, start-up errors (exit 2), SIGTERM (exit 0)."""

from __future__ import annotations

import signal
import sys

from testkit import VENV_BIN, Service, free_port, get_json, run

FLAGS = (
    "--one-xmlrpc",
    "--one-auth",
    "--one-timeout",
    "--listen",
    "--prometheus-config",
    "--mode",
    "--sd-dir",
    "--prometheus-url",
    "--reload",
    "--reload-command",
    "--promtool",
    "--no-config-check",
    "--reconcile-interval",
    "--jobs",
    "--agent-port",
    "--node-exporter-port",
    "--libvirt-exporter-port",
    "--vm-exporter",
    "--http-sd-url",
    "--http-sd-refresh",
    "--token-file",
    "--log-level",
    "--log-format",
    "--config",
)


def test_help_lists_every_flag_with_its_default() -> None:
    done = run([str(VENV_BIN / "one-discovery"), "--help"])
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for flag in FLAGS:
        assert flag in text, flag
    for default in (
        "127.0.0.1:9930",
        "/etc/one/prometheus/prometheus.yml",
        "(default: file_sd)",
        "/var/lib/one-cognit/sd",
        "http://127.0.0.1:9090",
        "(default: http)",
        "(default: 30.0)",
        "scaphandre,sr_exporter,one_vm_exporter",
        "(default: 8080)",
        "(default: 9100)",
        "(default: 9926)",
        ":9925",
    ):
        assert default in text, default


def auth(tmp_path):
    path = tmp_path / "one_auth"
    path.write_text("oneadmin:opennebula\n")
    return str(path)


def test_start_up_errors_are_one_line_and_exit_2(tmp_path) -> None:
    base = [sys.executable, "-m", "services.discovery", "--one-auth", auth(tmp_path)]
    for args, message in (
        (["--promtool", "/nonexistent/promtool"], "promtool not found"),
        (["--jobs", "scaphandre,nonsense"], "unknown job(s) nonsense"),
        (["--reload", "command"], "--reload command needs --reload-command"),
        (["--vm-exporter", "fe:99999"], "expected HOST:PORT"),
        (["--reconcile-interval", "0"], "at least 1 second"),
        (["--mode", "consul"], "invalid choice"),
        (["--token-file", str(tmp_path / "none")], "cannot read --token-file"),
    ):
        done = run(base + args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    done = run([sys.executable, "-m", "services.discovery", "--one-auth", str(tmp_path / "x")])
    assert done.returncode == 2 and "ONE_AUTH" in done.stderr


def test_sigterm_exits_0_and_no_config_check_starts_without_promtool(tmp_path) -> None:
    port = free_port()
    service = Service(
        [
            sys.executable,
            "-m",
            "services.discovery",
            "--one-auth",
            auth(tmp_path),
            "--one-xmlrpc",
            f"http://127.0.0.1:{free_port()}/RPC2",
            "--listen",
            f"127.0.0.1:{port}",
            "--promtool",
            "/nonexistent",
            "--no-config-check",
            "--prometheus-config",
            str(tmp_path / "p.yml"),
            "--sd-dir",
            str(tmp_path / "sd"),
        ]
    )
    try:
        service.wait_http(f"http://127.0.0.1:{port}/healthz")
        status, body = get_json(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and "oned" in body["failing"]
        assert service.stop(signal.SIGTERM) == 0
        assert "one-discovery stopped" in service.output()[1]
    finally:
        service.close()
