"""Is this Biscuit a valid OpenNebula login for this user and key? (SPEC section 7).

Pure: values in, a Verdict out; no I/O, no logging, no clock unless none is given. Revocation
is not decided here: the verdict carries the token's revocation ids and the caller, which
owns the live revocation list, looks them up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import biscuit_auth as biscuit

from .verdict import Reason, Verdict

# Biscuit tokens are a few hundred bytes; a large one is only CPU spent parsing it.
MAX_TOKEN_CHARS = 64 * 1024
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
    """Check signature, the single user fact and every check of every block, in that order."""
    token = token.strip()
    if not token:
        return Verdict(Reason.MALFORMED_TOKEN, "the token is empty")
    if len(token) > MAX_TOKEN_CHARS:
        return Verdict(
            Reason.MALFORMED_TOKEN,
            f"the token is {len(token)} characters, over the {MAX_TOKEN_CHARS} limit",
        )
    try:
        root = public_key(key)
    except ValueError as exc:
        return Verdict(Reason.BAD_KEY, f"the user's key is not an Ed25519 key: {_error_text(exc)}")
    try:
        unverified = biscuit.UnverifiedBiscuit.from_base64(token)
    except biscuit.BiscuitValidationError as exc:
        return Verdict(Reason.MALFORMED_TOKEN, f"not a base64url Biscuit: {_error_text(exc)}")
    try:
        parsed = unverified.verify(root)
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
