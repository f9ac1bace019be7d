"""Biscuit tokens, Datalog bombs and the auth shim, shared by tests/authd and bench_authd."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Sequence
from xml.sax.saxutils import escape

import biscuit_auth as biscuit

from . import ROOT

SHIM = ROOT / "services" / "authd" / "shim" / "authenticate"
# oned runs drivers with systemd's default PATH: `#!/usr/bin/env python3` finds the system
# Python there (a developer's pyenv shim in front of it would add ~100 ms per run).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHIM_PATH = SYSTEMD_PATH if shutil.which("python3", path=SYSTEMD_PATH) else os.environ["PATH"]


def public_hex(pair: biscuit.KeyPair) -> str:
    """The stored-key text of biscuit-cli 0.5: 64 hex digits."""
    return bytes(pair.public_key.to_bytes()).hex()


def make_token(
    pair: biscuit.KeyPair,
    authority: str = 'user("alice");',
    blocks: Sequence[str] = (),
    params: dict | None = None,
) -> str:
    """A real Biscuit signed with `pair`, attenuated with one block per entry of `blocks`."""
    token = biscuit.BiscuitBuilder(authority, params or {}).build(pair.private_key)
    for block in blocks:
        token = token.append(biscuit.BlockBuilder(block))
    return token.to_base64()


def expiring(
    pair: biscuit.KeyPair, user: str = "alice", delta: dt.timedelta = dt.timedelta(hours=1)
) -> str:
    """A token for `user` whose authority block expires `delta` from now."""
    return make_token(
        pair,
        "user({user}); check if time($t), $t <= {exp};",
        params={"user": user, "exp": dt.datetime.now(dt.UTC) + delta},
    )


def append(token: str, pair: biscuit.KeyPair, block: str) -> str:
    """`token` attenuated with one more block, as anyone holding it can do."""
    parent = biscuit.Biscuit.from_base64(token, pair.public_key)
    return parent.append(biscuit.BlockBuilder(block)).to_base64()


def join_bomb(facts: int = 40, joins: int = 4) -> str:
    """Datalog whose one check joins `facts` facts `joins` ways (facts**joins combinations).

    biscuit's time limit is only checked between rule iterations, so the check runs to the
    end: 40 facts joined 4 ways take about 2 s of CPU, 5 ways minutes. It fits in any block.
    """
    names = [f"$v{i}" for i in range(joins)]
    body = ", ".join(f"n({name})" for name in names)
    return (
        "".join(f"n({i});" for i in range(facts)) + f"check if {body}, {' + '.join(names)} == -1;"
    )


# The three kinds of Datalog bomb, as authority blocks for user alice. CPU_BOMB joins within
# the static limits (4 predicates) and is stopped only by the worker's CPU alarm; FACT_BOMB and
# ITERATION_BOMB trip the library's own limits.
CPU_BOMB = 'user("alice");' + join_bomb(40, 4)
FACT_BOMB = 'user("alice");' + "".join(f"n({i});" for i in range(60)) + "p($x, $y) <- n($x), n($y);"
ITERATION_BOMB = 'user("alice"); p0(1);' + "".join(f"p{i + 1}($x) <- p{i}($x);" for i in range(150))


def authn_xml(username: str, password: str, secret: str) -> bytes:
    """The AUTHN document one_auth_mad writes on the driver's stdin (escaped as REXML does)."""
    return (
        f"<AUTHN><USERNAME>{escape(username)}</USERNAME><PASSWORD>{escape(password)}</PASSWORD>"
        f"<SECRET>{escape(secret)}</SECRET></AUTHN>"
    ).encode()


def shim_env(url: str, timeout_env: str | None = None) -> dict[str, str]:
    """The environment oned gives the driver, pointed at `url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONE_COGNIT_")}
    env["PATH"] = SHIM_PATH
    env["ONE_COGNIT_AUTHD_URL"] = url
    if timeout_env is not None:
        env["ONE_COGNIT_AUTHD_TIMEOUT"] = timeout_env
    return env


def run_shim(
    stdin: bytes, url: str, *, timeout_env: str | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess:
    """Run the shim exactly as oned does: no arguments, AUTHN XML on stdin."""
    return subprocess.run(
        [str(SHIM)],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=shim_env(url, timeout_env),
        cwd="/",
    )
