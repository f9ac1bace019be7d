"""The auth driver shim run as oned runs it, against a running authd: SPEC sections 7 and 9."""

from __future__ import annotations

import datetime as dt
import http.server
import importlib.machinery
import os
import socket
import stat
import threading
import time
import types
from collections.abc import Iterator

import biscuit_auth as biscuit
import pytest

from testkit import VENV_BIN, free_port, run, wait_for

from .conftest import (
    CPU_BOMB,
    SHIM,
    authn_xml,
    expiring,
    make_token,
    run_shim,
)


def accepted(result, user: str, key: str) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"biscuit {user} {key}\n"
    assert result.stderr == b""


def rejected(result, *needles: str, token: str = "") -> str:
    """Assert a rejection: non-zero, nothing on stdout, one stderr line holding the needles."""
    err = result.stderr.decode()
    assert result.returncode != 0, result.stdout
    assert result.stdout == b""
    assert len(err.strip().splitlines()) == 1 and err.startswith("biscuit: "), err
    for needle in needles:
        assert needle in err, err
    if token:
        assert token not in err
    return err


def login(authd, user: str, key: str, token: str, **kwargs):
    return run_shim(authn_xml(user, key, token), authd.base, **kwargs)


def test_shim_is_a_standalone_executable():
    mode = SHIM.stat().st_mode
    assert mode & stat.S_IXUSR and mode & stat.S_IXOTH
    source = SHIM.read_text()
    assert source.startswith("#!/usr/bin/env python3\n")
    imports = [
        line.split()[1]
        for line in source.splitlines()
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
    ]
    assert imports and not any(name.split(".")[0] in ("services", "aiohttp") for name in imports)


@pytest.mark.parametrize("key_format", ["hex", "prefixed", "upper"])
def test_valid_token_with_both_stored_key_formats(authd_process, keys, key_format):
    key = {"hex": keys.hex, "prefixed": keys.prefixed, "upper": keys.prefixed.upper()}[key_format]
    accepted(login(authd_process, "alice", key, expiring(keys)), "alice", key)


def test_valid_token_made_by_our_cli(authd_process, keys, tmp_path):
    key_file = tmp_path / "alice.key"
    key_file.write_text(keys.private_hex + "\n")  # biscuit-cli 0.5 format
    made = run(
        [
            str(VENV_BIN / "one-authd"),
            "token",
            "--private-key-file",
            str(key_file),
            "--user",
            "alice",
            "--ttl",
            "10m",
            "--check",
            'operation("authenticate")',
        ]
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    accepted(login(authd_process, "alice", keys.prefixed, token), "alice", keys.prefixed)


# The token rules are tested once, in test_verifier.py; these few show a rejection's path
# from the verifier to oned's log line.


def test_expired_token(authd_process, keys):
    token = expiring(keys, delta=dt.timedelta(seconds=-5))
    rejected(login(authd_process, "alice", keys.hex, token), "HTTP 401", "expired", token=token)


def test_wrong_key(authd_process, keys, other_keys):
    token = expiring(keys)
    result = login(authd_process, "alice", other_keys.hex, token)
    rejected(result, "signature does not verify", token=token)


def test_oversized_token(authd_process, keys):
    # authd answers 413 before reading the body: the shim still reads that answer.
    huge = "A" * (1024 * 1024)
    err = rejected(login(authd_process, "alice", keys.hex, huge), "rejected by authd")
    assert "HTTP 413" in err
    big = "A" * (20 * 1024)
    rejected(login(authd_process, "alice", keys.hex, big), "HTTP 401", "over the 16384 limit")


def test_datalog_bomb_fails_fast(authd_process, keys):
    token = make_token(keys, CPU_BOMB)
    started = time.monotonic()
    result = login(authd_process, "alice", keys.hex, token)
    elapsed = time.monotonic() - started
    rejected(result, "HTTP 401", "Datalog")
    # Unbounded, this check runs for seconds; the shim's own deadline is 5 s, so an answer
    # before it proves authd stopped the token.
    assert elapsed < 5.0
    accepted(login(authd_process, "alice", keys.hex, expiring(keys)), "alice", keys.hex)


def test_revoked_after_a_live_reload(authd_process, keys):
    token = expiring(keys)
    accepted(login(authd_process, "alice", keys.hex, token), "alice", keys.hex)
    rid = biscuit.Biscuit.from_base64(token, keys.pair.public_key).revocation_ids[0]
    authd_process.revocation_file.write_text(f"# revoked in a test\n{rid}\n")
    try:
        result = wait_for(
            lambda: (r := login(authd_process, "alice", keys.hex, token)).returncode and r,
            what="the revocation",
        )
        rejected(result, "revoked", token=token)
    finally:
        authd_process.revocation_file.write_text("")


def test_authd_down(keys):
    url = f"http://127.0.0.1:{free_port()}"
    result = run_shim(authn_xml("alice", keys.hex, expiring(keys)), url)
    rejected(result, "cannot reach authd", url)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A real socket server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_authd_hanging_gives_up_after_the_timeout(silent_server, keys):
    started = time.monotonic()
    result = run_shim(
        authn_xml("alice", keys.hex, expiring(keys)), silent_server, timeout_env="0.5"
    )
    elapsed = time.monotonic() - started
    rejected(result, "did not answer within 0.5 s")
    assert 0.5 <= elapsed < 5


def load_shim() -> types.ModuleType:
    """The shim as a module, for its pure parts (it has no .py suffix: load it by path)."""
    loader = importlib.machinery.SourceFileLoader("biscuit_authenticate", str(SHIM))
    module = types.ModuleType(loader.name)
    loader.exec_module(module)
    return module


def test_the_default_deadline_is_5_seconds(monkeypatch):
    # The deadline itself is exercised above with 0.5 s; waiting 5 s would prove nothing more.
    monkeypatch.delenv("ONE_COGNIT_AUTHD_TIMEOUT", raising=False)
    assert load_shim().timeout_from_env() == 5.0


def test_bad_timeout_setting_is_refused(silent_server, keys):
    for value in ("soon", "0", "-1"):
        result = run_shim(authn_xml("alice", keys.hex, "x"), silent_server, timeout_env=value)
        rejected(result, "ONE_COGNIT_AUTHD_TIMEOUT")


GARBAGE = {
    "/html": (200, b"<html>ok</html>"),
    "/other_user": (200, b'{"driver": "biscuit", "username": "oneadmin", "password": "k"}'),
    "/other_driver": (200, b'{"driver": "core", "username": "alice", "password": "k"}'),
    "/space_key": (200, b'{"driver": "biscuit", "username": "alice", "password": "a b"}'),
    "/other_key": (200, b'{"driver": "biscuit", "username": "alice", "password": "k"}'),
    "/list": (200, b"[1, 2]"),
    "/error_no_reason": (500, b"Internal Server Error"),
}


class _Garbage(http.server.BaseHTTPRequestHandler):
    """Answers a well-formed HTTP reply whose content is wrong, chosen by the URL's path."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = GARBAGE[self.path.removesuffix("/v1/authenticate")]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def garbage_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "mode, needle",
    [
        ("html", "not JSON"),
        ("other_user", "different driver or user"),
        ("other_driver", "different driver or user"),
        ("space_key", "without a usable key"),
        ("other_key", "another key"),
        ("list", "not a JSON object"),
        ("error_no_reason", "HTTP 500"),
    ],
)
def test_garbage_from_authd_is_a_rejection(garbage_server, keys, mode, needle):
    url = f"{garbage_server}/{mode}"
    rejected(run_shim(authn_xml("alice", keys.hex, expiring(keys)), url), needle)


@pytest.fixture
def raw_server() -> Iterator:
    """A socket server that reads the request, sends fixed bytes and closes."""
    servers = []

    def start(reply: bytes) -> str:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(4)

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(reply)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.getsockname()[1]}"

    yield start
    for server, thread in servers:
        server.close()
        thread.join(5)


def test_chunked_answer_is_understood(raw_server, keys):
    body = b'{"driver": "biscuit", "username": "alice", "password": "%s"}' % keys.hex.encode()
    chunks = (body[:20], body[20:], b"")
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks
    )
    url = raw_server(reply)
    accepted(run_shim(authn_xml("alice", keys.hex, expiring(keys)), url), "alice", keys.hex)


@pytest.mark.parametrize(
    "reply, needle",
    [
        (b"hello\n", "not HTTP"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not HTTP"),
        (b"", "closed the connection without answering"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{}", "cut short"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "cut short"),
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 70000, "over 65536 bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000, "over 65536"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n{}", "broken HTTP"),
    ],
)
def test_broken_http_from_authd_is_a_rejection(raw_server, keys, reply, needle):
    url = raw_server(reply)
    rejected(run_shim(authn_xml("alice", keys.hex, expiring(keys)), url), needle)


def test_a_trickling_authd_is_cut_at_the_overall_deadline(keys):
    # One byte every 0.1 s never trips a per-read socket timeout: the deadline is for the whole.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.1):
                try:
                    conn.sendall(b"X")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        result = run_shim(authn_xml("alice", keys.hex, expiring(keys)), url, timeout_env="0.5")
        elapsed = time.monotonic() - started
        rejected(result, "did not answer within 0.5 s")
        assert elapsed < 3
    finally:
        stop.set()
        thread.join(5)
        server.close()


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1:9932", "127.0.0.1:9932", "http://127.0.0.1:notaport", "http://"]
)
def test_unusable_authd_url_is_refused(keys, url):
    rejected(run_shim(authn_xml("alice", keys.hex, "t"), url), "ONE_COGNIT_AUTHD_URL must be")


@pytest.mark.parametrize(
    "stdin, needle",
    [
        (b"", "invalid XML input"),
        (b"not xml at all", "invalid XML input"),
        (b"<AUTHN><USERNAME>alice</USERNAME>", "invalid XML input"),
        (
            b"<AUTHZ><USERNAME>a</USERNAME><PASSWORD>k</PASSWORD><SECRET>t</SECRET></AUTHZ>",
            "<AUTHZ>",
        ),
        (b"<AUTHN><USERNAME>alice</USERNAME><PASSWORD>k</PASSWORD></AUTHN>", "no <SECRET>"),
        (
            b"<AUTHN><USERNAME/><PASSWORD>k</PASSWORD><SECRET>t</SECRET></AUTHN>",
            "USERNAME> is empty",
        ),
    ],
)
def test_invalid_xml_is_a_rejection(stdin, needle):
    # Refused before authd is asked: the URL points nowhere.
    rejected(run_shim(stdin, f"http://127.0.0.1:{free_port()}"), needle)


def test_proxy_settings_are_ignored(authd_process, keys):
    # oned may run with http_proxy set; tokens must still go straight to the local authd.
    env_before = dict(os.environ)
    os.environ["http_proxy"] = os.environ["HTTP_PROXY"] = f"http://127.0.0.1:{free_port()}"
    try:
        accepted(login(authd_process, "alice", keys.hex, expiring(keys)), "alice", keys.hex)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
