"""The shared runtime, proven on a real subprocess over a real socket."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
import time

import pytest

from testkit import free_port, get_json, http, run, wait_for
from tests.common.malformed import MALFORMED, assert_json_refusal
from tests.runtime_service import main

ECHO = [sys.executable, "-m", "tests.runtime_service"]
STOP_LIMIT = 5.0  # SPEC section 4: exit 0 within 5 s of the signal


@pytest.fixture
def echo(start_service, tmp_path):
    def start(*flags: str):
        port = free_port()
        service = start_service([*ECHO, "--listen", f"127.0.0.1:{port}", *flags])
        service.port = port
        service.base = f"http://127.0.0.1:{port}"
        service.wait_http(service.base + "/healthz")
        return service

    return start


class SlowRequest(threading.Thread):
    """A request to /v1/slow, in flight once `wait_in_flight` returns."""

    def __init__(self, service, seconds: float) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.seconds = seconds
        self.reply: tuple | OSError | None = None

    def run(self) -> None:
        url = f"{self.service.base}/v1/slow?seconds={self.seconds}"
        try:
            self.reply = http("GET", url, timeout=10)
        except OSError as exc:  # the assertion below says so; a thread must not raise
            self.reply = exc

    def wait_in_flight(self, count: int = 1) -> None:
        self.start()
        url = self.service.base + "/v1/sleeping"
        wait_for(lambda: get_json(url)[1]["now"] >= count, timeout=10, what="request in flight")

    def assert_finished(self) -> None:
        self.join(10)
        assert isinstance(self.reply, tuple), f"the in-flight request got {self.reply!r}"
        status, _, body = self.reply
        assert status == 200 and json.loads(body) == {"slept": True}


def assert_clean_stop(service, started: float) -> str:
    """Exit 0 within SPEC's 5 s, no traceback or error in the log; the log text."""
    code = service.proc.wait(timeout=10)
    elapsed = time.monotonic() - started
    err = service.output()[1]
    assert code == 0, err
    assert elapsed < STOP_LIMIT, (elapsed, err)
    assert "Traceback" not in err and " ERROR " not in err, err
    assert "echo-service stopped" in err
    return err


def test_healthz_ok_and_degraded(echo):
    status, body = get_json(echo().base + "/healthz")
    assert status == 200 and body["status"] == "ok" and body["service"] == "echo"
    status, body = get_json(echo("--degraded").base + "/healthz")
    assert status == 503
    assert body["status"] == "degraded" and "upstream" in body["reason"]


def test_json_errors_for_404_405_413_and_bad_json(echo):
    base = echo().base
    status, headers, body = http("GET", base + "/nope")
    assert status == 404 and json.loads(body)["error"].startswith("no route GET /nope")
    assert headers["Content-Type"].startswith("application/json")
    status, headers, body = http("DELETE", base + "/v1/echo")
    assert status == 405 and "not allowed" in json.loads(body)["error"]
    status, _, body = http("POST", base + "/v1/echo", b"x" * (1024 * 1024 + 1))
    assert status == 413 and "body over" in json.loads(body)["error"]
    status, _, body = http("POST", base + "/v1/echo", b"{not json")
    assert status == 400 and json.loads(body)["error"].startswith("malformed JSON")
    status, _, body = http("POST", base + "/v1/echo", b"")
    assert status == 400 and "empty" in json.loads(body)["error"]
    status, _, body = http("POST", base + "/v1/echo", {"a": 1})
    assert status == 200 and json.loads(body) == {"echo": {"a": 1}}


def test_bearer_token_required_on_state_changing_routes(echo, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    base = echo("--token-file", str(token_file)).base
    assert http("POST", base + "/v1/echo", {"a": 1})[0] == 401
    bad = {"Authorization": "Bearer wrong"}
    assert http("POST", base + "/v1/echo", {"a": 1}, headers=bad)[0] == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert http("POST", base + "/v1/echo", {"a": 1}, headers=good)[0] == 200
    # Reads stay open: Prometheus and probes carry no token.
    assert http("GET", base + "/healthz")[0] == 200


def test_metrics_are_prefixed_and_count_requests(echo):
    base = echo().base
    http("GET", base + "/nope")
    status, headers, body = http("GET", base + "/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "one_cognit_echo_up 1.0" in text
    assert (
        'one_cognit_echo_http_requests_total{method="GET",route="unmatched",status="404"}' in text
    )


@pytest.mark.parametrize(
    "signals, gap",
    [
        ([signal.SIGTERM], 0.0),
        ([signal.SIGTERM, signal.SIGTERM], 0.05),
        ([signal.SIGINT, signal.SIGTERM] * 8, 0.01),
    ],
    ids=["SIGTERM", "SIGTERM twice 50ms apart", "burst of 16 SIGINT and SIGTERM"],
)
def test_signals_under_load_finish_in_flight_requests_and_exit_0(echo, signals, gap):
    service = echo()
    request = SlowRequest(service, seconds=0.3)
    request.wait_in_flight()
    # Load: clients hammering the service while it stops; refusals after the stop are expected.
    done = threading.Event()

    def hammer() -> None:
        while not done.is_set():
            try:
                http("GET", service.base + "/healthz", timeout=2)
            except OSError:
                pass

    hammers = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
    for thread in hammers:
        thread.start()
    started = time.monotonic()
    try:
        for sig in signals:
            if service.proc.poll() is not None:
                break
            service.proc.send_signal(sig)
            time.sleep(gap)  # the stimulus' own timing, not a wait for a condition
        err = assert_clean_stop(service, started)
    finally:
        done.set()
        for thread in hammers:
            thread.join(5)
    request.assert_finished()
    assert f"stopping on {signals[0].name}" in err


def test_a_signal_during_a_long_start_up_stops_it_with_exit_0(start_service):
    port = free_port()
    argv = [*ECHO, "--listen", f"127.0.0.1:{port}", "--start-delay", "60"]
    service = start_service(argv)
    wait_for(lambda: "starting up for 60" in service.output()[1], what="the start-up")
    started = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    err = assert_clean_stop(service, started)
    assert "stopping on SIGTERM during start-up" in err and "listening on" not in err


def test_refused_requests_get_json_and_one_warning_line(echo):
    service = echo()
    for _ in range(3):
        for _name, raw, status, echoed in MALFORMED:
            with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
                sock.sendall(raw)
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            assert_json_refusal(reply, status, echoed)
    assert service.stop() == 0
    lines = service.output()[1].splitlines()
    refused = [line for line in lines if "refused" in line]
    assert len(refused) == 2, lines
    assert " WARNING services.common.server: refused a request from 127.0.0.1: " in refused[0]
    # The rest of the flood is counted when the service stops, not logged one by one.
    assert f"{3 * len(MALFORMED) - 1} more requests refused" in refused[1]
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line]


def test_config_precedence_flag_over_yaml_over_default(echo, tmp_path):
    config = tmp_path / "echo.yaml"
    config.write_text("greeting: from-yaml\ninterval: 7.5\n")
    _, body = get_json(echo().base + "/v1/config")
    assert body["greeting"] == "hello" and body["interval"] == 2.0
    _, body = get_json(echo("--config", str(config)).base + "/v1/config")
    assert body["greeting"] == "from-yaml" and body["interval"] == 7.5
    _, body = get_json(echo("--config", str(config), "--greeting", "flag").base + "/v1/config")
    assert body["greeting"] == "flag" and body["interval"] == 7.5


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--config", "/nonexistent/x.yaml"], "cannot read --config /nonexistent/x.yaml"),
        (["--listen", "localhost"], "--listen: expected HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], "--listen: port must be 1-65535"),
        (["--listen", "::1:80"], "write IPv6 addresses as [ADDR]:PORT"),
        (["--interval", "soon"], "--interval: could not convert string to float"),
        (["--log-level", "loud"], "invalid choice: 'loud'"),
        (["--token-file", "/nonexistent/token"], "cannot read --token-file /nonexistent/token"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_exit_2_with_one_line(flags, needle):
    result = run([*ECHO, *flags])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_files_exit_2(tmp_path):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("greeting: hi\ncolour: blue\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("greeting: [unclosed\n")
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    wrong_type = tmp_path / "type.yaml"
    wrong_type.write_text("interval: fast\n")
    for path, needle in [
        (unknown, "unknown key(s): colour"),
        (broken, "is not valid YAML"),
        (listy, "must be a mapping"),
        (wrong_type, "interval in"),
    ]:
        result = run([*ECHO, "--config", str(path)])
        assert result.returncode == 2, result.stderr
        assert needle in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def root_logging():
    """Put back the root logger that `serve` configures, so no handler outlives the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_start_failing_after_config_gives_the_signals_back(capsys, root_logging):
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(SystemExit) as exit_:
        main(["--token-file", "/nonexistent/token"])
    assert exit_.value.code == 2
    assert "cannot read --token-file /nonexistent/token" in capsys.readouterr().err
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


def test_listen_in_use_is_a_clear_error(echo):
    service = echo()
    port = service.base.rsplit(":", 1)[1]
    result = run([*ECHO, "--listen", f"127.0.0.1:{port}"])
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and "listening on" not in result.stderr
    assert f"echo-service listening on 127.0.0.1:{port}" in service.output()[1]


def test_ipv6_listen(start_service):
    port = free_port("127.0.0.1")
    service = start_service([*ECHO, "--listen", f"[::1]:{port}"])
    service.wait_http(f"http://[::1]:{port}/healthz")
    assert get_json(f"http://[::1]:{port}/healthz")[0] == 200


def test_help_lists_every_flag_with_default():
    result = run([*ECHO, "--help"])
    assert result.returncode == 0
    for flag, default in [
        ("--listen", "127.0.0.1:9999"),
        ("--log-level", "info"),
        ("--log-format", "text"),
        ("--interval", "2.0"),
        ("--greeting", "hello"),
    ]:
        assert flag in result.stdout and f"(default: {default})" in result.stdout
