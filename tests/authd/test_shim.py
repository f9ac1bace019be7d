"""The auth driver shim run as oned runs it, against a running authd: SPEC sections 7 and 9."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator

import pytest

from testkit import VENV_BIN, free_port, run

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


SENT: list[str] = []


def login(authd, user: str, key: str, token: str, **kwargs):
    SENT.append(token)
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
def test_valid_token_with_both_stored_key_formats(authd, keys, key_format):
    key = {"hex": keys.hex, "prefixed": keys.prefixed, "upper": keys.prefixed.upper()}[key_format]
    accepted(login(authd, "alice", key, expiring(keys)), "alice", key)


def test_valid_token_made_by_our_cli(authd, keys, tmp_path):
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
    accepted(login(authd, "alice", keys.prefixed, made.stdout.strip()), "alice", keys.prefixed)


def test_expired_token(authd, keys):
    token = expiring(keys, delta=dt.timedelta(seconds=-5))
    rejected(login(authd, "alice", keys.hex, token), "HTTP 401", "expired", token=token)


def test_attenuated_token_passing_and_failing_checks(authd, keys):
    base = expiring(keys)
    import biscuit_auth as biscuit

    parent = biscuit.Biscuit.from_base64(base, keys.pair.public_key)
    narrower = parent.append(
        biscuit.BlockBuilder(
            'check if operation("authenticate"); check if time($t), $t > 2020-01-01T00:00:00Z;'
        )
    ).to_base64()
    accepted(login(authd, "alice", keys.hex, narrower), "alice", keys.hex)
    wrong_op = parent.append(biscuit.BlockBuilder('check if operation("delete");')).to_base64()
    rejected(login(authd, "alice", keys.hex, wrong_op), "check failed", 'operation("delete")')


def test_two_user_facts(authd, keys):
    token = make_token(keys, 'user("alice"); user("oneadmin");')
    for user in ("alice", "oneadmin"):
        rejected(login(authd, user, keys.hex, token), "2 user(...) facts")


def test_user_fact_outside_the_authority_block(authd, keys):
    token = make_token(keys, 'right("read");', ['user("alice");'])
    rejected(login(authd, "alice", keys.hex, token), "holds no user(...) fact")


def test_token_of_another_user(authd, keys):
    token = expiring(keys, user="bob")
    rejected(login(authd, "alice", keys.hex, token), "for user 'bob', not 'alice'")


def test_wrong_key(authd, keys, other_keys):
    token = expiring(keys)
    rejected(login(authd, "alice", other_keys.hex, token), "signature does not verify", token=token)


def test_tampered_token(authd, keys):
    raw = base64.urlsafe_b64decode(make_token(keys, 'user("alice");'))
    forged = base64.urlsafe_b64encode(raw.replace(b"alice", b"bobby")).decode()
    rejected(login(authd, "bobby", keys.hex, forged), "signature does not verify")
    cut = make_token(keys)[:-12]
    rejected(login(authd, "alice", keys.hex, cut), "HTTP 401")


@pytest.mark.parametrize("secret", ["%%%not-base64%%%", "AAAA", "eyJhbGciOiJIUzI1NiJ9"])
def test_malformed_base64(authd, keys, secret):
    rejected(login(authd, "alice", keys.hex, secret), "HTTP 401", "base64url Biscuit")


def test_empty_token(authd, keys):
    rejected(login(authd, "alice", keys.hex, ""), "the token is empty")


def test_oversized_token(authd, keys):
    huge = "A" * (1024 * 1024)
    err = rejected(login(authd, "alice", keys.hex, huge), "rejected by authd")
    assert "HTTP 413" in err
    big = "A" * (100 * 1024)
    rejected(login(authd, "alice", keys.hex, big), "HTTP 401", "over the 65536 limit")


def test_datalog_bomb_fails_fast(authd, keys):
    token = make_token(keys, CPU_BOMB)
    started = time.monotonic()
    result = login(authd, "alice", keys.hex, token)
    elapsed = time.monotonic() - started
    rejected(result, "HTTP 401", "Datalog")
    # Unbounded, this check joins 10^8 combinations (minutes of CPU); the shim's own deadline
    # is 5 s, so an answer before it proves authd stopped the token.
    assert elapsed < 5.0
    accepted(login(authd, "alice", keys.hex, expiring(keys)), "alice", keys.hex)


def test_bad_stored_key(authd, keys):
    err = rejected(login(authd, "alice", "ssh-rsa-not-a-key", expiring(keys)), "stored key")
    assert "PASSWORD" in err


def test_revoked_after_a_live_reload(authd, keys):
    import biscuit_auth as biscuit

    parent = expiring(keys)
    child = (
        biscuit.Biscuit.from_base64(parent, keys.pair.public_key)
        .append(biscuit.BlockBuilder('check if operation("authenticate");'))
        .to_base64()
    )
    accepted(login(authd, "alice", keys.hex, child), "alice", keys.hex)
    parent_id = biscuit.Biscuit.from_base64(parent, keys.pair.public_key).revocation_ids[0]
    authd.revocation_file.write_text(f"# revoked in a test\n{parent_id}\n")
    deadline = time.monotonic() + 10
    while True:
        result = login(authd, "alice", keys.hex, child)
        if result.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # Revoking the authority block revokes every token attenuated from it.
    rejected(result, "revoked")
    authd.revocation_file.write_text("")
    deadline = time.monotonic() + 10
    while login(authd, "alice", keys.hex, child).returncode != 0:
        assert time.monotonic() < deadline, "un-revoking did not take effect"
        time.sleep(0.1)


def test_revoking_an_attenuation_block_revokes_only_its_tokens(authd, keys):
    import biscuit_auth as biscuit

    parent = biscuit.Biscuit.from_base64(expiring(keys), keys.pair.public_key)
    child = parent.append(biscuit.BlockBuilder('check if operation("authenticate");'))
    accepted(login(authd, "alice", keys.hex, child.to_base64()), "alice", keys.hex)
    authd.revocation_file.write_text(f"{child.revocation_ids[1]}\n")
    try:
        deadline = time.monotonic() + 10
        while (result := login(authd, "alice", keys.hex, child.to_base64())).returncode == 0:
            assert time.monotonic() < deadline, "revoking block 1 did not take effect"
            time.sleep(0.1)
        rejected(result, "revoked", "block 1")
        accepted(login(authd, "alice", keys.hex, parent.to_base64()), "alice", keys.hex)
    finally:
        authd.revocation_file.write_text("")


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


def test_authd_hanging_default_timeout_is_5_seconds(silent_server, keys):
    started = time.monotonic()
    result = run_shim(authn_xml("alice", keys.hex, expiring(keys)), silent_server)
    elapsed = time.monotonic() - started
    rejected(result, "did not answer within 5 s")
    assert 5.0 <= elapsed < 15


def test_bad_timeout_setting_is_refused(silent_server, keys):
    for value in ("soon", "0", "-1"):
        result = run_shim(authn_xml("alice", keys.hex, "x"), silent_server, timeout_env=value)
        rejected(result, "ONE_COGNIT_AUTHD_TIMEOUT")


class _Garbage(http.server.BaseHTTPRequestHandler):
    replies: dict[str, tuple[int, bytes]] = {}

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = self.replies[self.server.mode]  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


_Garbage.replies = {
    "html": (200, b"<html>ok</html>"),
    "other_user": (200, b'{"driver": "biscuit", "username": "oneadmin", "password": "k"}'),
    "other_driver": (200, b'{"driver": "core", "username": "alice", "password": "k"}'),
    "space_key": (200, b'{"driver": "biscuit", "username": "alice", "password": "a b"}'),
    "other_key": (200, b'{"driver": "biscuit", "username": "alice", "password": "k"}'),
    "list": (200, b"[1, 2]"),
    "error_no_reason": (500, b"Internal Server Error"),
}


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
def test_garbage_from_authd_is_a_rejection(keys, mode, needle):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    server.mode = mode  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        rejected(run_shim(authn_xml("alice", keys.hex, expiring(keys)), url), needle)
    finally:
        server.shutdown()
        server.server_close()


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
def test_invalid_xml_is_a_rejection(authd, stdin, needle):
    rejected(run_shim(stdin, authd.base), needle)


def test_proxy_settings_are_ignored(authd, keys):
    # oned may run with http_proxy set; tokens must still go straight to the local authd.
    env_before = dict(os.environ)
    os.environ["http_proxy"] = os.environ["HTTP_PROXY"] = f"http://127.0.0.1:{free_port()}"
    try:
        accepted(login(authd, "alice", keys.hex, expiring(keys)), "alice", keys.hex)
    finally:
        os.environ.clear()
        os.environ.update(env_before)


def test_tokens_never_reach_the_log(authd, keys, other_keys):
    valid, wrong = expiring(keys), expiring(keys, user="bob")
    accepted(login(authd, "alice", keys.hex, valid), "alice", keys.hex)
    rejected(login(authd, "alice", keys.hex, wrong), "not 'alice'")
    rejected(login(authd, "alice", other_keys.hex, valid), "signature")
    rejected(login(authd, "alice", keys.hex, valid[:40] + "!"), "base64url")
    _, err = authd.service.output()
    assert "accepted user=alice" in err and "rejected user=alice reason=bad_signature" in err
    for token in SENT:
        if len(token) >= 16:
            assert token not in err and token[:40] not in err
