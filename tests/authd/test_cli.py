"""`one-authd keygen | token | inspect` as a user runs them (SPEC section 7)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
import stat
import subprocess
import sys

import biscuit_auth as biscuit
import pytest

from services.authd.__main__ import main
from services.authd.verifier import verify
from testkit import VENV_BIN, run

from .conftest import expiring, make_token

CLI = str(VENV_BIN / "one-authd")


def cli(argv: list[str], input: str | None = None) -> subprocess.CompletedProcess:
    """`one-authd <argv>` run in-process: its exit code and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    stdin, sys.stdin = sys.stdin, io.StringIO(input or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = stdin
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


LINE = {
    "private": re.compile(r"Private key: ed25519-private/([0-9a-f]{64})"),
    "public": re.compile(r"Public key: ed25519/([0-9a-f]{64})"),
    "private_hex": re.compile(r"Private key \(biscuit-cli 0\.5 hex\): ([0-9a-f]{64})"),
    "public_hex": re.compile(r"Public key \(biscuit-cli 0\.5 hex\): ([0-9a-f]{64})"),
}


def keygen(*args: str) -> dict[str, str]:
    result = cli(["keygen", *args])
    assert result.returncode == 0, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        for name, pattern in LINE.items():
            if match := pattern.fullmatch(line):
                found[name] = match.group(1)
    found["stdout"] = result.stdout
    return found


def test_keygen_prints_a_matching_pair_in_both_formats():
    keys = keygen()
    assert len(keys["stdout"].splitlines()) == 4
    assert keys["private"] == keys["private_hex"] and keys["public"] == keys["public_hex"]
    private = biscuit.PrivateKey.from_bytes(
        bytes.fromhex(keys["private"]), biscuit.Algorithm.Ed25519
    )
    derived = biscuit.KeyPair.from_private_key(private).public_key
    assert bytes(derived.to_bytes()).hex() == keys["public"]
    assert keygen()["private"] != keys["private"]


def test_keygen_private_key_file_is_0600_and_never_overwritten(tmp_path):
    path = tmp_path / "me.key"
    keys = keygen("--private-key-file", str(path))
    assert "private" not in keys and "private_hex" not in keys
    assert f"Private key: written to {path}" in keys["stdout"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    assert re.fullmatch(r"ed25519-private/[0-9a-f]{64}\n", content)
    again = cli(["keygen", "--private-key-file", str(path)])
    assert again.returncode == 2 and "File exists" in again.stderr
    assert path.read_text() == content


@pytest.mark.parametrize("fmt", ["prefixed", "hex"])
def test_token_is_valid_for_the_user_and_expires(tmp_path, fmt):
    keys = keygen()
    key_file = tmp_path / "k"
    key_file.write_text(
        f"ed25519-private/{keys['private']}\n" if fmt == "prefixed" else keys["private"].upper()
    )
    result = cli(
        [
            "token",
            "--private-key-file",
            str(key_file),
            "--user",
            "alice",
            "--ttl",
            "15m",
            "--check",
            'operation("authenticate")',
            "--check",
            "check if time($t), $t > 2020-01-01T00:00:00Z",
        ]
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert len(result.stdout.splitlines()) == 1
    public = biscuit.PublicKey.from_bytes(bytes.fromhex(keys["public"]), biscuit.Algorithm.Ed25519)
    source = biscuit.Biscuit.from_base64(token, public).block_source(0)
    assert 'user("alice");' in source and 'check if operation("authenticate");' in source
    raw = bytes.fromhex(keys["public"])
    assert verify(token, raw, "alice").valid
    assert not verify(token, raw, "bob").valid
    in_16_min = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16)
    assert verify(token, raw, "alice", now=in_16_min).reason == "expired"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--ttl", "soon"], "--ttl: expected a duration"),
        (["--ttl", "0"], "--ttl must be positive"),
        (["--check", "this is not datalog"], "is not a Datalog check"),
        (
            ["--check", "a($a), b($b), c($c), d($d), e($e)"],
            "authd would refuse this token: the authority block has a rule or check joining 5",
        ),
        (["--user", "al ice"], "cannot contain ' '"),
        (["--user", "a:b"], "cannot contain ':'"),
    ],
)
def test_token_refuses_bad_input(tmp_path, args, needle):
    key_file = tmp_path / "k"
    key_file.write_text(keygen()["private"])
    argv = ["token", "--private-key-file", str(key_file)]
    if "--user" not in args:
        argv += ["--user", "alice"]
    result = cli([*argv, *args])
    assert result.returncode == 2 and needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_token_refuses_bad_key_files(tmp_path):
    missing = cli(["token", "--private-key-file", str(tmp_path / "none"), "--user", "a"])
    assert missing.returncode == 2 and "cannot read --private-key-file" in missing.stderr
    public = tmp_path / "pub"
    public.write_text("ed25519/" + "ab" * 32)
    wrong = cli(["token", "--private-key-file", str(public), "--user", "a"])
    assert wrong.returncode == 2 and "algorithm 'ed25519'" in wrong.stderr
    no_user = cli(["token", "--private-key-file", str(public)])
    assert no_user.returncode == 2 and "--user" in no_user.stderr


def test_inspect_shows_blocks_and_verifies(keys, other_keys):
    import biscuit_auth as b

    token = (
        b.Biscuit.from_base64(expiring(keys), keys.pair.public_key)
        .append(b.BlockBuilder('check if operation("authenticate");'))
        .to_base64()
    )
    ids = b.Biscuit.from_base64(token, keys.pair.public_key).revocation_ids
    shown = cli(["inspect", token])
    assert shown.returncode == 0, shown.stderr
    assert f"authority block (revocation id {ids[0]}):" in shown.stdout
    assert f"block 1 (revocation id {ids[1]}):" in shown.stdout
    assert '    user("alice");' in shown.stdout
    assert '    check if operation("authenticate");' in shown.stdout
    assert "signature: not checked" in shown.stdout
    good = cli(["inspect", token, "--public-key", keys.hex])
    assert good.returncode == 0 and f"signature: verifies with {keys.prefixed}" in good.stdout
    bad = cli(["inspect", token, "--public-key", other_keys.prefixed])
    assert bad.returncode == 1 and "signature: does NOT verify" in bad.stdout
    as_alice = cli(
        ["inspect", "-", "--public-key", keys.prefixed, "--user", "alice"], input=token + "\n"
    )
    assert as_alice.returncode == 0 and "login as alice: valid now" in as_alice.stdout
    as_bob = cli(["inspect", token, "--public-key", keys.prefixed, "--user", "bob"])
    assert as_bob.returncode == 1 and "rejected (user_mismatch)" in as_bob.stdout
    expired = make_token(keys, 'user("alice"); check if time($t), $t < 2001-01-01T00:00:00Z;')
    old = cli(["inspect", expired, "--public-key", keys.prefixed, "--user", "alice"])
    assert old.returncode == 1 and "rejected (expired)" in old.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["not-a-token!"], "not a base64url Biscuit token"),
        (["EqsBCkEK", "--public-key", "x"], "not a base64url Biscuit token"),
        (["TOKEN", "--bogus"], "unrecognized arguments"),
        ([], "the following arguments are required: TOKEN"),
    ],
)
def test_inspect_refuses_bad_input(args, needle):
    result = cli(["inspect", *args])
    assert result.returncode == 2 and needle in result.stderr, result.stderr


def test_inspect_refuses_a_bad_public_key(keys):
    result = cli(["inspect", expiring(keys), "--public-key", "ed25519/123"])
    assert result.returncode == 2 and "--public-key: the public key is not an Ed25519 key" in (
        result.stderr
    )


def test_sub_command_help():
    for command in ("keygen", "token", "inspect"):
        result = cli([command, "--help"])
        assert result.returncode == 0 and f"one-authd {command}" in result.stdout


def test_the_installed_console_script():
    # Everything above runs in-process; this is the `one-authd` users type.
    result = run([CLI, "keygen"])
    assert result.returncode == 0 and result.stdout.startswith("Private key: ed25519-private/")
    assert len(result.stdout.splitlines()) == 4
    refused = run([CLI, "token", "--private-key-file", "/nonexistent", "--user", "a"])
    assert refused.returncode == 2 and "cannot read --private-key-file" in refused.stderr
