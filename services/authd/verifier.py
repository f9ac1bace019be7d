"""Is this Biscuit a valid OpenNebula login for this user and key? (SPEC section 7).

Pure: values in, a Verdict out; no I/O, no logging, no clock unless none is given. Revocation
is not decided here: `precheck` gives the token's revocation ids and the caller, which owns
the live revocation list, looks them up.

What needs no Datalog is checked first (issue 14): `precheck` (size, encoding, block count, each
block's size, statements and rule bodies; cheap enough for the event loop), then the signature.
Only then does Datalog run.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import biscuit_auth as biscuit

from .token_shape import BlockShape, ShapeError, block_shape, encoded_blocks
from .verdict import Reason, Verdict

# Login tokens are a few hundred characters; parsing the largest allowed one on the event loop
# takes ~1.5 ms (library parse ~0.7 ms, shape ~0.7 ms, measured): 64 KiB took ~6 ms.
MAX_TOKEN_CHARS = 16 * 1024
# Static limits: a login token holds a user fact and a few checks. Each attenuation block costs
# a signature check (~45 us); a rule or check joining many predicates is how Datalog bombs
# multiply their cost (n facts joined k ways: n**k combinations).
MAX_BLOCKS = 16
MAX_BLOCK_BYTES = 4 * 1024
MAX_BLOCK_STATEMENTS = 64
MAX_BODY_PREDICATES = 4
# Messages quote failing checks; a token may hold long ones.
MAX_MESSAGE_CHARS = 400

# The authorizer: ambient facts, then an allow policy bound to the one user name.
AUTHORIZER = 'time({now}); operation("authenticate"); allow if user({username});'
USER_QUERY = "found($u) <- user($u)"


@dataclasses.dataclass(frozen=True)
class Limits:
    """Datalog run limits; the library's default 1 ms fails valid tokens on a busy host."""

    max_time: float = 0.02
    max_facts: int = 1000
    max_iterations: int = 100


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def _error_text(exc: BaseException) -> str:
    return _clip(str(exc.args[0]) if exc.args else type(exc).__name__)


def public_key(raw: bytes) -> biscuit.PublicKey:
    """A biscuit PublicKey from 32 raw bytes; ValueError when they are not a key."""
    return biscuit.PublicKey.from_bytes(raw, biscuit.Algorithm.Ed25519)


@dataclasses.dataclass(frozen=True)
class Precheck:
    """A token within the static limits; its ids are not yet known to be signed."""

    unverified: biscuit.UnverifiedBiscuit
    revocation_ids: tuple[str, ...]
    widest_body: int  # most predicates one rule or check joins

    @property
    def authority_id(self) -> str:
        return self.revocation_ids[0]

    @property
    def joins(self) -> bool:
        """True when some rule or check joins predicates: the only way Datalog blows up."""
        return self.widest_body >= 2


def _block_verdict(index: int, shape: BlockShape) -> Verdict | None:
    what = "the authority block" if index == 0 else f"block {index}"
    if shape.size > MAX_BLOCK_BYTES:
        problem = f"is {shape.size} bytes; at most {MAX_BLOCK_BYTES} are allowed"
    elif shape.statements > MAX_BLOCK_STATEMENTS:
        problem = (
            f"holds {shape.statements} facts, rules and checks; "
            f"at most {MAX_BLOCK_STATEMENTS} are allowed"
        )
    elif shape.widest_body > MAX_BODY_PREDICATES:
        problem = (
            f"has a rule or check joining {shape.widest_body} predicates; "
            f"at most {MAX_BODY_PREDICATES} are allowed"
        )
    else:
        return None
    return Verdict(Reason.TOKEN_LIMITS, f"{what} {problem} (checked before running Datalog)")


def _shape(token: str) -> int | Verdict:
    """The widest rule body of the token, or TOKEN_LIMITS when a block is over a limit."""
    # The library has decoded this text already; base64url, padding optional.
    encoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    widest = 0
    try:
        for index, block in enumerate(encoded_blocks(encoded)):
            if len(block) > MAX_BLOCK_BYTES:  # refused before its fields are even read
                shape = BlockShape(len(block), 0, 0, 0, 0)
            else:
                shape = block_shape(block)
            verdict = _block_verdict(index, shape)
            if verdict is not None:
                return verdict
            widest = max(widest, shape.widest_body)
    except ShapeError as exc:
        return Verdict(Reason.MALFORMED_TOKEN, f"the token's encoding is not a Biscuit: {exc}")
    return widest


def precheck(token: str) -> Precheck | Verdict:
    """Everything that needs neither the signature nor Datalog: empty, too long, not a
    Biscuit, too many blocks, a block too large or too long, a rule or check joining too many
    predicates. Cheap enough for the event loop (~40 us for a login token, 1.5 ms at most)."""
    token = token.strip()
    if not token:
        return Verdict(Reason.MALFORMED_TOKEN, "the token is empty")
    if len(token) > MAX_TOKEN_CHARS:
        return Verdict(
            Reason.MALFORMED_TOKEN,
            f"the token is {len(token)} characters, over the {MAX_TOKEN_CHARS} limit",
        )
    try:
        unverified = biscuit.UnverifiedBiscuit.from_base64(token)
    except biscuit.BiscuitValidationError as exc:
        return Verdict(Reason.MALFORMED_TOKEN, f"not a base64url Biscuit: {_error_text(exc)}")
    blocks = unverified.block_count()
    if blocks > MAX_BLOCKS:
        return Verdict(
            Reason.TOKEN_LIMITS, f"the token has {blocks} blocks; at most {MAX_BLOCKS} are allowed"
        )
    widest = _shape(token)
    if isinstance(widest, Verdict):
        return widest
    return Precheck(unverified, tuple(unverified.revocation_ids), widest)


def _set_limits(builder: biscuit.AuthorizerBuilder, limits: Limits) -> None:
    current = builder.limits()
    current.max_time = dt.timedelta(seconds=limits.max_time)
    current.max_facts = limits.max_facts
    current.max_iterations = limits.max_iterations
    builder.set_limits(current)


def _failed_checks(message: str) -> str:
    """The 'checks failed: ...' part of an authorization error, or '' when none failed."""
    _, sep, checks = message.partition("checks failed:")
    return checks.strip() if sep else ""


def _user_verdict(users: list[biscuit.Fact], username: str) -> Verdict | None:
    """A rejection unless the authority block holds exactly one user fact, equal to the name."""
    if not users:
        return Verdict(Reason.USER_MISMATCH, "the authority block holds no user(...) fact")
    if len(users) > 1:
        return Verdict(
            Reason.USER_MISMATCH,
            f"the authority block holds {len(users)} user(...) facts; exactly one is allowed",
        )
    (term,) = users[0].terms
    if term != username:
        shown = repr(term) if isinstance(term, str) else f"a {type(term).__name__}"
        return Verdict(
            Reason.USER_MISMATCH,
            _clip(f"the token is for user {shown}, not {username!r}"),
        )
    return None


def verify(
    token: str,
    key: bytes,
    username: str,
    *,
    limits: Limits = Limits(),  # noqa: B008 - frozen dataclass, safe as a default
    now: dt.datetime | None = None,
) -> Verdict:
    """Check the static limits, signature, the single user fact and every check, in order."""
    checked = precheck(token)
    if isinstance(checked, Verdict):
        return checked
    try:
        root = public_key(key)
    except ValueError as exc:
        return Verdict(Reason.BAD_KEY, f"the user's key is not an Ed25519 key: {_error_text(exc)}")
    try:
        parsed = checked.unverified.verify(root)
    except (biscuit.BiscuitValidationError, ValueError):
        return Verdict(
            Reason.BAD_SIGNATURE,
            "the token's signature does not verify with the user's key "
            "(another key signed it, or it was altered)",
        )
    ids = tuple(parsed.revocation_ids)
    builder = biscuit.AuthorizerBuilder(
        AUTHORIZER,
        {"now": now or dt.datetime.now(dt.UTC), "username": username},
    )
    _set_limits(builder, limits)
    try:
        authorizer = builder.build(parsed)
    except (biscuit.AuthorizationError, biscuit.DataLogError) as exc:
        return Verdict(Reason.FAILED_CHECK, f"cannot load the token: {_error_text(exc)}", ids)
    try:
        authorizer.authorize()
        failure = None
    except biscuit.AuthorizationError as exc:
        failure = _error_text(exc)
    if failure is not None and "execution limits" in failure.lower():
        return Verdict(
            Reason.DATALOG_LIMITS,
            f"the token's Datalog exceeded the run limits ({limits.max_time * 1000:g} ms, "
            f"{limits.max_facts} facts, {limits.max_iterations} iterations)",
            ids,
        )
    # The authorizer trusts the authority block only, so this sees the authority's user facts
    # (written or derived), never those an attenuation block adds.
    try:
        users = authorizer.query(biscuit.Rule(USER_QUERY))
    except biscuit.AuthorizationError as exc:
        return Verdict(Reason.DATALOG_LIMITS, f"cannot query user facts: {_error_text(exc)}", ids)
    mismatch = _user_verdict(users, username)
    if mismatch is not None:
        return dataclasses.replace(mismatch, revocation_ids=ids)
    if failure is not None:
        checks = _failed_checks(failure)
        if "time(" in checks:
            return Verdict(Reason.EXPIRED, _clip(f"a time check failed (expired): {checks}"), ids)
        return Verdict(Reason.FAILED_CHECK, _clip(f"check failed: {checks or failure}"), ids)
    return Verdict(Reason.VALID, f"valid token for {username!r}", ids)
