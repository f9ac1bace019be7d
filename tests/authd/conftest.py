"""Keys, real tokens, a running authd and the real shim, shared by the authd tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import biscuit_auth as biscuit
import pytest

from testkit import ROOT, Service, free_port, http

SHIM = ROOT / "services" / "authd" / "shim" / "authenticate"
AUTHD = [sys.executable, "-m", "services.authd"]
# oned runs drivers with systemd's default PATH: `#!/usr/bin/env python3` finds the system
# Python there (a developer's pyenv shim in front of it would add ~100 ms per run).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHIM_PATH = SYSTEMD_PATH if shutil.which("python3", path=SYSTEMD_PATH) else os.environ["PATH"]


@dataclasses.dataclass(frozen=True)
class Keys:
    """A user's key pair and the stored-key texts of both biscuit-cli formats."""

    pair: biscuit.KeyPair

    @property
    def hex(self) -> str:
        return bytes(self.pair.public_key.to_bytes()).hex()

    @property
    def prefixed(self) -> str:
        return f"ed25519/{self.hex}"

    @property
    def private_hex(self) -> str:
        return bytes(self.pair.private_key.to_bytes()).hex()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_token(
    keys: Keys,
    authority: str = 'user("alice");',
    blocks: Sequence[str] = (),
    params: dict | None = None,
) -> str:
    """A real Biscuit signed with `keys`, attenuated with one block per entry of `blocks`."""
    token = biscuit.BiscuitBuilder(authority, params or {}).build(keys.pair.private_key)
    for block in blocks:
        token = token.append(biscuit.BlockBuilder(block))
    return token.to_base64()


def expiring(keys: Keys, user: str = "alice", delta: dt.timedelta = dt.timedelta(hours=1)) -> str:
    """A token for `user` whose authority block expires `delta` from now."""
    return make_token(
        keys,
        "user({user}); check if time($t), $t <= {exp};",
        params={"user": user, "exp": now() + delta},
    )


def authn_xml(username: str, password: str, secret: str) -> bytes:
    """The AUTHN document one_auth_mad writes on the driver's stdin (escaped as REXML does)."""
    from xml.sax.saxutils import escape

    return (
        f"<AUTHN><USERNAME>{escape(username)}</USERNAME><PASSWORD>{escape(password)}</PASSWORD>"
        f"<SECRET>{escape(secret)}</SECRET></AUTHN>"
    ).encode()


def run_shim(
    stdin: bytes, url: str, *, timeout_env: str | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess:
    """Run the shim exactly as oned does: no arguments, AUTHN XML on stdin."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONE_COGNIT_")}
    env["PATH"] = SHIM_PATH
    env["ONE_COGNIT_AUTHD_URL"] = url
    if timeout_env is not None:
        env["ONE_COGNIT_AUTHD_TIMEOUT"] = timeout_env
    return subprocess.run(
        [str(SHIM)], input=stdin, capture_output=True, timeout=timeout, env=env, cwd="/"
    )


class Authd:
    """A running authd subprocess with its revocation file."""

    def __init__(self, service: Service, base: str, revocation_file: Path) -> None:
        self.service = service
        self.base = base
        self.revocation_file = revocation_file

    def post(self, body: object) -> tuple[int, dict]:
        status, _, raw = http("POST", self.base + "/v1/authenticate", body)
        return status, json.loads(raw)

    def login(self, username: str, password: str, secret: str) -> tuple[int, dict]:
        return self.post({"username": username, "password": password, "secret": secret})

    def metrics(self) -> str:
        return http("GET", self.base + "/metrics")[2].decode()

    def metric(self, reason: str) -> float:
        """The authentications counter for one reason."""
        for line in self.metrics().splitlines():
            if line.startswith("one_cognit_authd_authentications_total{") and (
                f'reason="{reason}"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no authentications_total sample for reason {reason}")


def start_authd(tmp: Path, *flags: str) -> Authd:
    port = free_port()
    revocation_file = tmp / "revoked.txt"
    service = Service(
        [
            *AUTHD,
            "--listen",
            f"127.0.0.1:{port}",
            "--revocation-file",
            str(revocation_file),
            *flags,
        ]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        service.wait_http(base + "/healthz", timeout=30)
    except BaseException:
        service.close()
        raise
    return Authd(service, base, revocation_file)


@pytest.fixture(scope="module")
def authd(tmp_path_factory) -> Iterator[Authd]:
    """One authd shared by a test module (starting worker processes costs ~0.3 s)."""
    server = start_authd(tmp_path_factory.mktemp("authd"))
    yield server
    server.service.close()


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(biscuit.KeyPair())


@pytest.fixture(scope="module")
def other_keys() -> Keys:
    return Keys(biscuit.KeyPair())


# Datalog bombs. The library's time limit is only checked between rule iterations, so the
# join in CPU_BOMB's check (40^5 = 10^8 combinations, minutes of CPU) is stopped only by the
# worker's CPU alarm; FACT_BOMB and ITERATION_BOMB trip the library's own limits.
CPU_BOMB = (
    'user("alice");'
    + "".join(f"n({i});" for i in range(40))
    + "check if n($a), n($b), n($c), n($d), n($e), $a + $b + $c + $d + $e == -1;"
)
FACT_BOMB = 'user("alice");' + "".join(f"n({i});" for i in range(60)) + "p($x, $y) <- n($x), n($y);"
ITERATION_BOMB = 'user("alice"); p0(1);' + "".join(f"p{i + 1}($x) <- p{i}($x);" for i in range(150))
