"""`one-authd keygen | token | inspect`: what a user needs to log in with a Biscuit.

Exit codes: 0 done (for inspect: the token verifies), 1 the token does not verify,
2 bad arguments or unreadable input (one line on stderr).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .keys import (
    KeyFormatError,
    parse_private_key,
    parse_public_key,
    private_key_formats,
    public_key_formats,
)
from .tokens import (
    TokenError,
    check_username,
    describe,
    mint,
    new_private_key,
    parse_ttl,
    public_key_of,
    signature_verifies,
)
from .verifier import verify


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _fail(self.prog, message)


def _fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _read_private_key(prog: str, path: Path) -> bytes:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(prog, f"cannot read --private-key-file {path}: {getattr(exc, 'strerror', exc)}")
    try:
        return parse_private_key(text)
    except KeyFormatError as exc:
        _fail(prog, f"--private-key-file {path}: {exc}")


def keygen(args: argparse.Namespace) -> int:
    """Print a new key pair in both formats (or keep the private key in a 0600 file)."""
    raw = new_private_key()
    public = public_key_formats(public_key_of(raw))
    private = private_key_formats(raw)
    if args.private_key_file:
        try:
            # O_EXCL: never overwrite a key someone may still sign with.
            fd = os.open(args.private_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            _fail(args.prog, f"cannot create {args.private_key_file}: {exc.strerror or exc}")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(private[0] + "\n")
        print(f"Private key: written to {args.private_key_file}")
    else:
        print(f"Private key: {private[0]}")
    print(f"Public key: {public[0]}")
    if not args.private_key_file:
        print(f"Private key (biscuit-cli 0.5 hex): {private[1]}")
    print(f"Public key (biscuit-cli 0.5 hex): {public[1]}")
    return 0


def token(args: argparse.Namespace) -> int:
    """Print a token for --user signed with the private key."""
    raw = _read_private_key(args.prog, args.private_key_file)
    try:
        print(mint(raw, args.user, parse_ttl(args.ttl), args.check or []))
    except TokenError as exc:
        _fail(args.prog, str(exc))
    return 0


def inspect(args: argparse.Namespace) -> int:
    """Print the token's blocks and ids; with --public-key, whether it verifies."""
    text = sys.stdin.read() if args.token == "-" else args.token
    try:
        description = describe(text)
    except TokenError as exc:
        _fail(args.prog, str(exc))
    for index, source in enumerate(description.blocks):
        title = "authority block" if index == 0 else f"block {index}"
        print(f"{title} (revocation id {description.revocation_ids[index]}):")
        for line in source.strip().splitlines() or ["(empty)"]:
            print(f"    {line}")
    if args.public_key is None:
        if args.user:
            _fail(args.prog, "--user needs --public-key")
        print("signature: not checked (give --public-key)")
        return 0
    try:
        raw_public = parse_public_key(args.public_key)
    except KeyFormatError as exc:
        _fail(args.prog, f"--public-key: {exc}")
    shown = public_key_formats(raw_public)[0]
    if not signature_verifies(text, raw_public):
        print(f"signature: does NOT verify with {shown}")
        return 1
    print(f"signature: verifies with {shown}")
    if not args.user:
        return 0
    try:
        check_username(args.user)
    except TokenError as exc:
        _fail(args.prog, str(exc))
    verdict = verify(text, raw_public, args.user, now=dt.datetime.now(dt.UTC))
    if verdict.valid:
        print(f"login as {args.user}: valid now (revocation list not consulted)")
        return 0
    print(f"login as {args.user}: rejected ({verdict.reason}): {verdict.message}")
    return 1


def build_parser() -> argparse.ArgumentParser:
    """The sub-command parser; `one-authd` with no sub-command is the server."""
    parser = _Parser(
        prog="one-authd",
        description="Biscuit token tools for OpenNebula's biscuit auth driver",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = commands.add_parser(
        "keygen",
        help="print a new Ed25519 key pair",
        description="Print a new Ed25519 key pair in biscuit-cli 0.6 (ed25519/...) and 0.5 "
        "(bare hex) formats. Register the public key with `oneuser create NAME KEY --driver "
        "biscuit`; keep the private key secret.",
    )
    p.add_argument(
        "--private-key-file",
        type=Path,
        metavar="PATH",
        help="write the private key to this new file (mode 0600) instead of printing it",
    )
    p.set_defaults(run=keygen)
    p = commands.add_parser(
        "token",
        help="print a token for a user",
        description="Print a Biscuit token holding user(NAME), an expiry check and your "
        "extra checks, signed with your private key. Use it as the password: NAME:TOKEN.",
    )
    p.add_argument("--private-key-file", type=Path, required=True, metavar="PATH")
    p.add_argument("--user", required=True, metavar="NAME", help="OpenNebula user name")
    p.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (default: 1h)")
    p.add_argument(
        "--check",
        action="append",
        metavar="DATALOG",
        help="extra check, repeatable, e.g. 'operation(\"authenticate\")' or a full 'check if ...'",
    )
    p.set_defaults(run=token)
    p = commands.add_parser(
        "inspect",
        help="print a token's blocks and whether it verifies",
        description="Print a token's blocks and revocation ids; with --public-key, whether "
        "its signature verifies (exit 1 when not); with --user too, whether authd would "
        "accept it now (ignoring the revocation list).",
    )
    p.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    p.add_argument("--public-key", metavar="KEY", help="ed25519/<hex> or 64 hex digits")
    p.add_argument("--user", metavar="NAME", help="also check it as a login for this user")
    p.set_defaults(run=inspect)
    return parser


def main(argv: Sequence[str]) -> None:
    """Run one sub-command and exit with its code."""
    args = build_parser().parse_args(list(argv))
    args.prog = f"one-authd {args.command}"
    raise SystemExit(args.run(args))
