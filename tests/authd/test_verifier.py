"""The verification rules on real tokens, in-process (no server): SPEC section 7."""

from __future__ import annotations

import base64
import datetime as dt

import biscuit_auth as biscuit
import pytest

from services.authd.verdict import Reason
from services.authd.verifier import MAX_TOKEN_CHARS, Limits, verify

from .conftest import FACT_BOMB, ITERATION_BOMB, Keys, expiring, make_token, now


def check(keys: Keys, token: str, user: str = "alice", **kwargs):
    return verify(token, bytes.fromhex(keys.hex), user, **kwargs)


def test_valid_token_carries_its_revocation_ids(keys):
    token = expiring(keys)
    verdict = check(keys, token)
    assert verdict.reason is Reason.VALID, verdict.message
    assert verdict.revocation_ids == tuple(
        biscuit.Biscuit.from_base64(token, keys.pair.public_key).revocation_ids
    )


def test_expiry_is_checked_against_the_given_clock(keys):
    token = expiring(keys, delta=dt.timedelta(minutes=10))
    assert check(keys, token).valid
    later = check(keys, token, now=now() + dt.timedelta(minutes=11))
    assert later.reason is Reason.EXPIRED
    assert "time check failed" in later.message and "block n°0" in later.message


def test_every_check_of_every_block_runs_with_the_ambient_facts(keys):
    passing = make_token(
        keys,
        blocks=[
            'check if operation("authenticate");',
            "check if time($t), $t > 2020-01-01T00:00:00Z;",
        ],
    )
    assert check(keys, passing).valid
    failing = make_token(keys, blocks=['check if operation("read");'])
    verdict = check(keys, failing)
    assert verdict.reason is Reason.FAILED_CHECK
    assert 'operation("read")' in verdict.message and "block n°1" in verdict.message
    expired_block = make_token(keys, blocks=["check if time($t), $t <= 2020-01-01T00:00:00Z;"])
    assert check(keys, expired_block).reason is Reason.EXPIRED
    rejecting = make_token(keys, 'user("alice"); reject if operation("authenticate");')
    assert check(keys, rejecting).reason is Reason.FAILED_CHECK


@pytest.mark.parametrize(
    "authority, blocks, needle",
    [
        ('user("alice"); user("bob");', [], "holds 2 user(...) facts"),
        ('user("alice"); user("bob") <- user("alice");', [], "holds 2 user(...) facts"),
        ('right("read");', ['user("alice");'], "holds no user(...) fact"),
        ('user("alice", "admin");', [], "holds no user(...) fact"),
        ('user("bob");', [], "for user 'bob', not 'alice'"),
        ('user("Alice");', [], "for user 'Alice', not 'alice'"),
        ("user(1);", [], "for user a int"),
    ],
)
def test_exactly_one_user_fact_in_the_authority_block(keys, authority, blocks, needle):
    verdict = check(keys, make_token(keys, authority, blocks))
    assert verdict.reason is Reason.USER_MISMATCH
    assert needle in verdict.message


def test_two_user_facts_with_attenuation_adding_one(keys):
    # A second user fact in an attenuation block is invisible to the authorizer: still valid.
    token = make_token(keys, 'user("alice");', ['user("bob");'])
    assert check(keys, token).valid
    assert check(keys, token, user="bob").reason is Reason.USER_MISMATCH


def test_signature_and_format_failures(keys, other_keys):
    token = make_token(keys)
    assert check(other_keys, token).reason is Reason.BAD_SIGNATURE
    raw = base64.urlsafe_b64decode(token)
    tampered = base64.urlsafe_b64encode(raw.replace(b"alice", b"alicf")).decode()
    assert check(keys, tampered, user="alicf").reason is Reason.BAD_SIGNATURE
    assert check(keys, "").reason is Reason.MALFORMED_TOKEN
    assert check(keys, "   ").message == "the token is empty"
    assert check(keys, "not*base64!").reason is Reason.MALFORMED_TOKEN
    # Standard base64 is not base64url: a token whose encoding differs is refused.
    while "-" not in token and "_" not in token:
        token = make_token(keys)
    standard = token.replace("-", "+").replace("_", "/")
    assert check(keys, standard).reason is Reason.MALFORMED_TOKEN
    assert check(keys, "AAAA").reason is Reason.MALFORMED_TOKEN
    assert check(keys, "eyJhbGciOiJIUzI1NiJ9").reason is Reason.MALFORMED_TOKEN  # a JWT's head
    assert check(keys, make_token(keys)[:-12]).reason is Reason.MALFORMED_TOKEN  # cut short
    huge = check(keys, "A" * (MAX_TOKEN_CHARS + 1))
    assert huge.reason is Reason.MALFORMED_TOKEN and "over the" in huge.message
    for verdict in (check(keys, "not*base64!"), huge, check(other_keys, token)):
        assert token not in verdict.message and "AAAAAAAA" not in verdict.message


def test_datalog_limits_stop_fact_and_iteration_bombs(keys):
    for source in (FACT_BOMB, ITERATION_BOMB):
        verdict = check(keys, make_token(keys, source))
        assert verdict.reason is Reason.DATALOG_LIMITS, verdict.message
        assert "1000 facts" in verdict.message
    # Higher limits let the same fact bomb through: the limits are really applied.
    roomy = Limits(max_time=1.0, max_facts=10_000, max_iterations=100)
    assert check(keys, make_token(keys, FACT_BOMB), limits=roomy).valid


def test_both_stored_key_formats_are_the_same_bytes(keys):
    token = expiring(keys)
    assert verify(token, bytes.fromhex(keys.prefixed.split("/")[1]), "alice").valid
