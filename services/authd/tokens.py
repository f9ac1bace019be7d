"""Make and describe Biscuit tokens for OpenNebula logins (used by `one-authd token/inspect`).

The tokens are plain Biscuits: biscuit-cli can read ours and authd accepts theirs. Ours hold
`user("<name>")` and an expiry check in the authority block, plus any checks the user adds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence

import biscuit_auth as biscuit

from .verdict import Verdict
from .verifier import precheck, public_key

# OpenNebula's User::INVALID_NAME_CHARS: such a name can never log in.
_INVALID_NAME = re.compile(r"[ :\t\n\v\f\r]")
_TTL = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TokenError(ValueError):
    """Input the token commands cannot use; the message says which and why."""


def check_username(name: str) -> str:
    """The name, or TokenError when OpenNebula would refuse it as a user name."""
    if not name:
        raise TokenError("the user name is empty")
    bad = _INVALID_NAME.search(name)
    if bad:
        raise TokenError(f"OpenNebula user names cannot contain {bad.group()!r}")
    return name


def parse_ttl(text: str) -> dt.timedelta:
    """`90s`, `15m`, `1h`, `7d`, `2w` or plain seconds; positive."""
    match = _TTL.fullmatch(str(text).strip().lower())
    if not match:
        raise TokenError(f"--ttl: expected a duration like 90s, 15m, 1h, 7d, got {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise TokenError("--ttl must be positive")
    return dt.timedelta(seconds=seconds)


def check_statement(text: str) -> str:
    """A `--check`: a full `check if|check all|reject if ...` or just the body of `check if`."""
    statement = text.strip().rstrip(";").strip()
    if not re.match(r"(check\s+(if|all)|reject\s+if)\b", statement):
        statement = f"check if {statement}"
    return statement


def private_key(raw: bytes) -> biscuit.PrivateKey:
    """A biscuit PrivateKey from 32 raw bytes."""
    return biscuit.PrivateKey.from_bytes(raw, biscuit.Algorithm.Ed25519)


def public_key_of(raw_private: bytes) -> bytes:
    """The 32 raw bytes of the public key that goes with a private key."""
    return bytes(biscuit.KeyPair.from_private_key(private_key(raw_private)).public_key.to_bytes())


def new_private_key() -> bytes:
    """32 raw bytes of a fresh random Ed25519 private key."""
    return bytes(biscuit.KeyPair().private_key.to_bytes())


def mint(
    raw_private: bytes,
    username: str,
    ttl: dt.timedelta,
    checks: Sequence[str] = (),
    *,
    now: dt.datetime | None = None,
) -> str:
    """A base64url token for `username`, expiring after `ttl`, with extra checks."""
    expires = (now or dt.datetime.now(dt.UTC)) + ttl
    builder = biscuit.BiscuitBuilder(
        "user({user}); check if time($time), $time <= {expires};",
        {"user": check_username(username), "expires": expires.replace(microsecond=0)},
    )
    for text in checks:
        statement = check_statement(text)
        try:
            builder.add_check(biscuit.Check(statement))
        except (biscuit.DataLogError, ValueError) as exc:
            raise TokenError(f"--check {text!r} is not a Datalog check: {exc}") from None
    token = builder.build(private_key(raw_private)).to_base64()
    # Never hand out a token authd would refuse unseen (too many checks, too wide a join).
    refused = precheck(token)
    if isinstance(refused, Verdict):
        raise TokenError(f"authd would refuse this token: {refused.message}")
    return token


@dataclasses.dataclass(frozen=True)
class TokenDescription:
    """What `inspect` shows: each block's Datalog and revocation id."""

    blocks: tuple[str, ...]
    revocation_ids: tuple[str, ...]


def describe(token: str) -> TokenDescription:
    """Parse a token without checking its signature; TokenError when it is not a Biscuit."""
    try:
        unverified = biscuit.UnverifiedBiscuit.from_base64(token.strip())
    except biscuit.BiscuitValidationError as exc:
        raise TokenError(f"not a base64url Biscuit token: {exc}") from None
    blocks = tuple(unverified.block_source(i) for i in range(unverified.block_count()))
    return TokenDescription(blocks, tuple(unverified.revocation_ids))


def signature_verifies(token: str, raw_public: bytes) -> bool:
    """True when the token's signature chain verifies with this public key."""
    try:
        biscuit.UnverifiedBiscuit.from_base64(token.strip()).verify(public_key(raw_public))
    except (biscuit.BiscuitValidationError, ValueError):
        return False
    return True
