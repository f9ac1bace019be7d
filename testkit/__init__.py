"""Support shared by the tests and the benchmarks: free ports, service subprocesses, waiting."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port_on(addresses: Sequence[str]) -> int:
    """A TCP port that can be bound on every one of `addresses` (127.0.x.y) right now."""
    for _ in range(200):
        port = free_port(addresses[0])
        try:
            for address in addresses:
                with socket.socket() as sock:
                    sock.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no common free port on {len(addresses)} addresses")


def http(
    method: str,
    url: str,
    body: bytes | str | dict | list | None = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request with the standard library: (status, headers, body); never raises on 4xx."""
    if isinstance(body, dict | list):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    status, _, body = http("GET", url, timeout=timeout)
    return status, json.loads(body)


class Service:
    """A service started as a real subprocess; stopped with SIGTERM when the test ends."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        # Files, not pipes: a chatty service must never block on a full pipe.
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._out,
            stderr=self._err,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )

    def wait_http(self, url: str, timeout: float = 15.0) -> None:
        """Wait until `url` answers anything over HTTP, or fail with the service's stderr."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.output()
                raise AssertionError(f"{self.argv[0]} exited {self.proc.returncode}: {err}")
            try:
                http("GET", url, timeout=1.0)
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{url} did not answer in {timeout}s: {self.output()[1]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> tuple[str, str]:
        """What the service printed so far on stdout and stderr."""
        texts = []
        for f in (self._out, self._err):
            f.flush()
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
        return texts[0], texts[1]

    def close(self) -> None:
        self.stop()
        self._out.close()
        self._err.close()


def run(argv: Sequence[str], timeout: float = 30.0, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command to completion, capturing text output."""
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs
    )


class _Poll:
    """One condition being awaited: each `done()` asks `check` once (an AssertionError it
    raises means "not yet"); `expired()` fails saying what was awaited and what was seen."""

    def __init__(self, check: Callable[[], Any], timeout: float, what: str) -> None:
        self.check, self.timeout, self.what = check, timeout, what
        self.deadline = time.monotonic() + timeout
        self.result: Any = None

    def done(self) -> bool:
        try:
            self.result = self.check()
        except AssertionError as exc:
            self.result = exc
            return False
        return bool(self.result)

    def expired(self) -> bool:
        if time.monotonic() < self.deadline:
            return False
        raise AssertionError(
            f"timed out after {self.timeout}s waiting for {self.what}; last: {self.result!r}"
        )


def wait_for(
    check: Callable[[], T], timeout: float = 15.0, what: str = "condition", interval: float = 0.05
) -> T:
    """Poll `check` until it returns a truthy value (an AssertionError it raises means "not
    yet"); return that value, or fail after `timeout` seconds saying what was awaited."""
    poll = _Poll(check, timeout, what)
    while not poll.done() and not poll.expired():
        time.sleep(interval)
    return poll.result


async def async_wait_for(
    check: Callable[[], T], timeout: float = 15.0, what: str = "condition", interval: float = 0.01
) -> T:
    """`wait_for` for in-process tests: polls without blocking the event loop."""
    poll = _Poll(check, timeout, what)
    while not poll.done() and not poll.expired():
        await asyncio.sleep(interval)
    return poll.result
