"""The verification rules on real tokens, in-process (no server): SPEC section 7."""

from __future__ import annotations

import base64
import datetime as dt

import biscuit_auth as biscuit
import pytest

from services.authd.verdict import Reason, Verdict
from services.authd.verifier import (
    MAX_BLOCKS,
    MAX_TOKEN_CHARS,
    Limits,
    Precheck,
    precheck,
    verify,
)
from testkit.authd import join_bomb

from .conftest import CPU_BOMB, FACT_BOMB, ITERATION_BOMB, Keys, expiring, make_token, now


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
    verdict = check(keys, make_token(keys, FACT_BOMB))
    assert verdict.reason is Reason.DATALOG_LIMITS, verdict.message
    assert "1000 facts" in verdict.message
    # Higher limits let the same fact bomb through: the limits are really applied.
    roomy = Limits(max_time=1.0, max_facts=10_000, max_iterations=100)
    assert check(keys, make_token(keys, FACT_BOMB), limits=roomy).valid
    # A chain of 10 rules needs 10 iterations: the iteration limit is applied too.
    chain = 'user("alice"); p0(1);' + "".join(f"p{i + 1}($x) <- p{i}($x);" for i in range(10))
    tight = Limits(max_time=1.0, max_facts=1000, max_iterations=5)
    assert check(keys, make_token(keys, chain), limits=tight).reason is Reason.DATALOG_LIMITS
    assert check(keys, make_token(keys, chain)).valid


def test_static_limits_refuse_before_any_datalog_runs(keys, other_keys):
    # Issue 14.4: what needs no Datalog is refused first. ITERATION_BOMB's 150-rule chain is
    # over the limits of one block, so it never reaches the library's iteration limit.
    assert check(keys, make_token(keys, ITERATION_BOMB)).reason is Reason.TOKEN_LIMITS
    chain = 'user("alice"); p0(1);' + "".join(f"p{i + 1}($x) <- p{i}($x);" for i in range(70))
    verdict = check(keys, make_token(keys, chain))
    assert verdict.reason is Reason.TOKEN_LIMITS
    assert "72 facts, rules and checks; at most 64" in verdict.message
    wide = check(keys, make_token(keys, 'user("alice");' + join_bomb(3, 5)))
    assert wide.reason is Reason.TOKEN_LIMITS
    assert "joining 5 predicates; at most 4" in wide.message
    # In an attenuation block, and with the width hidden from the printed Datalog: a quote
    # inside a string prints unescaped, so a text count would see the join inside a string.
    hidden = 'check if a("\\""), n($a), n($b), n($c), n($d), n($e), b("\\"");'
    token = make_token(keys, blocks=[hidden])
    source = biscuit.Biscuit.from_base64(token, keys.pair.public_key).block_source(1)
    assert 'a("""), n($a)' in source
    verdict = check(keys, token)
    assert verdict.reason is Reason.TOKEN_LIMITS and verdict.message.startswith("block 1 ")
    # One block of more than 4 KiB (the token itself is under its 16 KiB limit).
    big = make_token(keys, 'user("alice"); note({n});', params={"n": "x" * 5000})
    verdict = check(keys, big, user="nobody")  # refused before the user is even looked at
    assert verdict.reason is Reason.TOKEN_LIMITS and "bytes; at most 4096" in verdict.message


def test_too_many_blocks_are_refused_before_the_signature_is_checked(keys, other_keys):
    many = biscuit.Biscuit.from_base64(make_token(keys), keys.pair.public_key)
    for _ in range(MAX_BLOCKS):
        many = many.append(biscuit.BlockBuilder('check if operation("authenticate");'))
    token = many.to_base64()
    for key in (keys, other_keys):  # the wrong key too: counting blocks comes first
        verdict = check(key, token)
        assert verdict.reason is Reason.TOKEN_LIMITS, verdict.message
        assert f"{MAX_BLOCKS + 1} blocks; at most {MAX_BLOCKS}" in verdict.message
    pre = precheck(token)
    assert isinstance(pre, Verdict) and pre.reason is Reason.TOKEN_LIMITS
    # At the limit, fine; precheck gives every block's revocation id, the authority's first.
    fine = make_token(keys, blocks=['check if operation("authenticate");'] * (MAX_BLOCKS - 1))
    assert check(keys, fine).valid
    pre = precheck(fine)
    assert isinstance(pre, Precheck) and len(pre.revocation_ids) == MAX_BLOCKS
    assert (
        pre.authority_id
        == biscuit.Biscuit.from_base64(fine, keys.pair.public_key).revocation_ids[0]
    )


def test_precheck_tells_which_tokens_join_predicates(keys):
    # Only a join can blow up; the scheduler serves join-free tokens (every login token our
    # CLI makes) first. CPU_BOMB is within every static limit: the worker's CPU alarm stops it
    # (test_app.py).
    plain = precheck(expiring(keys))
    assert isinstance(plain, Precheck) and plain.widest_body == 1 and not plain.joins
    bomb = precheck(make_token(keys, CPU_BOMB))
    assert isinstance(bomb, Precheck) and bomb.widest_body == 4 and bomb.joins


def test_both_stored_key_formats_are_the_same_bytes(keys):
    token = expiring(keys)
    assert verify(token, bytes.fromhex(keys.prefixed.split("/")[1]), "alice").valid
