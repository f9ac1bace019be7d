"""The hook shims as oned runs them: $TEMPLATE as argument or on stdin, token, failures."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testkit import ROOT, free_port

SHIMS = ROOT / "services" / "discovery" / "shim"
TEMPLATE = base64.b64encode(b"<VM><ID>5</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>").decode()


class Recorder(ThreadingHTTPServer):
    """A stand-in discovery that records what the shim sent and answers as told."""

    def __init__(self, status: int = 200, body: bytes = b'{"id": 5, "result": "added"}') -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status, self.body = status, body
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                recorder.requests.append((self.path, dict(self.headers), self.rfile.read(length)))
                self.send_response(recorder.status)
                self.send_header("Content-Length", str(len(recorder.body)))
                self.end_headers()
                self.wfile.write(recorder.body)

            def log_message(self, *_args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


def run(shim: str, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SHIMS / shim), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], **env},
    )


def test_the_vm_hook_posts_the_template_from_its_argument(recorder) -> None:
    done = run("vm_hook", TEMPLATE, ONE_COGNIT_DISCOVERY_URL=recorder.url)
    assert (done.returncode, done.stdout) == (0, "vm 5: added\n"), done.stderr
    ((path, headers, body),) = recorder.requests
    assert (path, body.decode()) == ("/v1/events/vm", TEMPLATE)
    assert "Authorization" not in headers


def test_the_host_hook_reads_stdin_and_sends_the_token(recorder, tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    done = run(
        "host_hook",
        stdin=TEMPLATE + "\n",
        ONE_COGNIT_DISCOVERY_URL=recorder.url + "/",
        ONE_COGNIT_DISCOVERY_TOKEN_FILE=str(token),
    )
    assert done.returncode == 0, done.stderr
    ((path, headers, body),) = recorder.requests
    assert (path, body.decode(), headers["Authorization"]) == (
        "/v1/events/host",
        TEMPLATE,
        "Bearer s3cret",
    )
    assert "s3cret" not in done.stdout + done.stderr


def test_the_name_under_which_it_is_installed_picks_the_route(recorder, tmp_path) -> None:
    installed = tmp_path / "discovery_host_hook"
    installed.symlink_to(SHIMS / "host_hook")
    subprocess.run(
        [str(installed), TEMPLATE],
        env={"ONE_COGNIT_DISCOVERY_URL": recorder.url, "PATH": os.environ["PATH"]},
        check=True,
        capture_output=True,
    )
    assert recorder.requests[0][0] == "/v1/events/host"
    odd = tmp_path / "hook"
    odd.symlink_to(SHIMS / "vm_hook")
    done = subprocess.run([str(odd), TEMPLATE], capture_output=True, text=True)
    assert done.returncode == 1 and "vm or host hook" in done.stderr


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, b'{"error": "body is not base64"}', "HTTP 400: body is not base64"),
        (401, b'{"error": "missing or wrong bearer token"}', "HTTP 401: missing or wrong"),
        (503, b"<html>", "HTTP 503: no reason given"),
    ],
)
def test_refusals_are_one_line_and_exit_1(status, body, message) -> None:
    server = Recorder(status, body)
    try:
        done = run("vm_hook", TEMPLATE, ONE_COGNIT_DISCOVERY_URL=server.url)
    finally:
        server.close()
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "env", "message"),
    [
        ((), "", {}, "no $TEMPLATE"),
        (("a", "b"), "", {}, "expected one argument"),
        ((TEMPLATE,), "", {"ONE_COGNIT_DISCOVERY_URL": "https://x:1"}, "must be http://HOST:PORT"),
        ((TEMPLATE,), "", {"ONE_COGNIT_DISCOVERY_TIMEOUT": "soon"}, "not a number of seconds"),
        (
            (TEMPLATE,),
            "",
            {"ONE_COGNIT_DISCOVERY_TOKEN_FILE": "/nonexistent/t"},
            "cannot read token",
        ),
        ((), "x" * (1024 * 1024 + 10), {}, "over 1048576 bytes"),
    ],
)
def test_bad_input_and_configuration_are_named(args, stdin, env, message) -> None:
    env = {"ONE_COGNIT_DISCOVERY_URL": f"http://127.0.0.1:{free_port()}", **env}
    done = run("vm_hook", *args, stdin=stdin, **env)
    assert done.returncode == 1 and message in done.stderr, done.stderr


def test_discovery_down_or_silent_fails_within_the_timeout() -> None:
    done = run("vm_hook", TEMPLATE, ONE_COGNIT_DISCOVERY_URL=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1 and "cannot reach discovery" in done.stderr
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        done = run(
            "vm_hook",
            TEMPLATE,
            ONE_COGNIT_DISCOVERY_URL=f"http://127.0.0.1:{port}",
            ONE_COGNIT_DISCOVERY_TIMEOUT="0.5",
        )
    assert done.returncode == 1 and "did not answer within 0.5 s" in done.stderr


def test_the_shims_run_on_the_system_python() -> None:
    assert (SHIMS / "vm_hook").read_text().startswith("#!/usr/bin/env python3\n")
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(SHIMS / "vm_hook")],
        capture_output=True,
        text=True,
        input="",
        env={"ONE_COGNIT_DISCOVERY_URL": "http://127.0.0.1:9"},
    )
    assert done.returncode == 1 and "no $TEMPLATE" in done.stderr
