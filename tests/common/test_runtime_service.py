"""What only a real process shows: signals, exit codes, ports, log lines, raw sockets.

The runtime test service runs as a subprocess here; its HTTP contracts are tested in-process
in `test_app.py` and `test_server.py`.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
import time

import pytest

from services.common.runner import serve
from testkit import free_port, get_json, http, run, wait_for
from tests.common.malformed import MALFORMED, assert_json_refusal
from tests.runtime_service import EchoConfig, create_app, main

ECHO = [sys.executable, "-m", "tests.runtime_service"]
STOP_LIMIT = 5.0  # SPEC section 4: exit 0 within 5 s of the signal


@pytest.fixture
def echo(start_service):
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


def test_listen_in_use_is_a_clear_error(echo):
    service = echo()
    result = run([*ECHO, "--listen", f"127.0.0.1:{service.port}"])
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{service.port}" in result.stderr
    assert "Traceback" not in result.stderr and "listening on" not in result.stderr
    assert f"echo-service listening on 127.0.0.1:{service.port}" in service.output()[1]


def test_ipv6_listen(start_service):
    port = free_port("127.0.0.1")
    service = start_service([*ECHO, "--listen", f"[::1]:{port}"])
    service.wait_http(f"http://[::1]:{port}/healthz")
    assert get_json(f"http://[::1]:{port}/healthz")[0] == 200


def test_a_bad_flag_exits_2_with_one_line_as_a_process():
    result = run([*ECHO, "--token-file", "/nonexistent/token"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == "echo-service: error: cannot read --token-file /nonexistent/token: " + (
        "No such file or directory"
    )


# `python -m tests.runtime_service` is `main()`: its exit codes and stderr, in-process.


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--config", "/nonexistent/x.yaml"], "cannot read --config /nonexistent/x.yaml"),
        (["--listen", "localhost"], "--listen: expected HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], "--listen: port must be 1-65535"),
        (["--listen", "::1:80"], "write IPv6 addresses as [ADDR]:PORT"),
        (["--interval", "soon"], "--interval: could not convert string to float"),
        (["--log-level", "loud"], "invalid choice: 'loud'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_exit_2_with_one_line(capsys, flags, needle):
    with pytest.raises(SystemExit) as exit_:
        main(flags)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err


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


def test_bad_config_files_exit_2(capsys, tmp_path):
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
        with pytest.raises(SystemExit) as exit_:
            main(["--config", str(path)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err


def test_help_lists_every_flag_with_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        serve(EchoConfig, create_app, ["--help"], prog="echo-service", description="test")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag, default in [
        ("--listen", "127.0.0.1:9999"),
        ("--log-level", "info"),
        ("--log-format", "text"),
        ("--interval", "2.0"),
        ("--greeting", "hello"),
    ]:
        assert flag in out and f"(default: {default})" in out
