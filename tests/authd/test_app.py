"""authd's HTTP contract in-process, through create_app: SPEC sections 4 and 7."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import time

import biscuit_auth as biscuit
import pytest

from services.authd.app import POOL, WATCHER
from testkit import async_wait_for

from .conftest import (
    CPU_BOMB,
    FACT_BOMB,
    expiring,
    make_token,
    sample,
    serve_authd,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_valid_login_answer(authd, keys):
    status, body = await authd.login("alice", f"  {keys.prefixed}\n", expiring(keys))
    assert status == 200
    assert body == {"driver": "biscuit", "username": "alice", "password": keys.prefixed}


@pytest.mark.parametrize(
    "body, needle",
    [
        (b"{not json", "malformed JSON"),
        (b"", "empty"),
        ([1, 2], "expected a JSON object"),
        ({"password": "k", "secret": "t"}, "username is missing"),
        ({"username": "alice", "secret": "t"}, "password is missing"),
        ({"username": "alice", "password": "k"}, "secret is missing"),
        ({"username": "alice", "password": "k", "secret": 5}, "secret is a int"),
        ({"username": " ", "password": "k", "secret": "t"}, "username is empty"),
    ],
)
async def test_malformed_requests_get_400(authd, body, needle):
    before = await authd.metric("authentications_total", reason="bad_request")
    status, answer = await authd.post(body)
    assert status == 400 and needle in answer["error"]
    assert await authd.metric("authentications_total", reason="bad_request") == before + 1


async def test_http_errors_of_the_runtime(authd):
    status, answer = await authd.post(b"x" * (1024 * 1024 + 10))
    assert status == 413 and "body over" in answer["error"]
    async with authd.client.get("/v1/authenticate") as resp:
        assert resp.status == 405
    assert (await authd.post({}, path="/v1/nope"))[0] == 404


@pytest.mark.parametrize(
    "stored",
    ["", "ssh-rsa AAAAB3Nza", "ed25519/" + "zz" * 32, "ab" * 31, "secp256r1/" + "ab" * 32],
)
async def test_unusable_stored_keys_get_401_naming_the_key(authd, keys, stored):
    status, body = await authd.login("alice", stored, expiring(keys))
    assert status == 401 and body["reason"] == "bad_key"
    assert "stored key (the user's PASSWORD)" in body["error"]


async def test_each_rejection_is_a_401_with_its_reason(authd, keys, other_keys):
    # The token rules themselves are tested in test_verifier.py; this is their HTTP face.
    cases = {
        "bad_signature": ("alice", other_keys.hex, expiring(keys)),
        "user_mismatch": ("bob", keys.hex, expiring(keys)),
        "expired": ("alice", keys.hex, expiring(keys, delta=dt.timedelta(seconds=-5))),
        "failed_check": ("alice", keys.hex, make_token(keys, blocks=['check if op("x");'])),
        "malformed_token": ("alice", keys.hex, "not*base64!"),
    }
    for reason, (user, key, token) in cases.items():
        status, body = await authd.login(user, key, token)
        assert status == 401 and body["reason"] == reason, (reason, body)
        assert token not in body["error"]


async def test_metrics_count_results_by_reason_and_pass_promtool(authd, keys, other_keys):
    reasons = ("valid", "bad_signature", "user_mismatch", "expired")
    before = {r: await authd.metric("authentications_total", reason=r) for r in reasons}
    await authd.login("alice", keys.hex, expiring(keys))
    await authd.login("alice", other_keys.hex, expiring(keys))
    await authd.login("bob", keys.hex, expiring(keys))
    await authd.login(
        "alice",
        keys.hex,
        make_token(keys, 'user("alice"); check if time($t), $t < 2000-01-01T00:00:00Z;'),
    )
    text = await authd.metrics()
    for reason in reasons:
        assert sample(text, "authentications_total", reason=reason) == before[reason] + 1
    assert 'one_cognit_authd_authentications_total{reason="revoked",result="rejected"}' in text
    assert 'one_cognit_authd_authentications_total{reason="valid",result="accepted"}' in text
    assert sample(text, "workers") == 3  # 2 on the fast lane, 1 on the slow one
    assert sample(text, "revocation_file_status", status="missing") == 1
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make test installs it)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_concurrent_requests_get_their_own_answers(authd, keys, other_keys):
    # Many requests share two worker pipes: every answer must belong to its request.
    cases = []
    for i in range(40):
        user = f"user{i}"
        if i % 3 == 0:
            cases.append((user, keys.hex, expiring(keys, user=user), 200))
        elif i % 3 == 1:
            cases.append((user, other_keys.hex, expiring(keys, user=user), 401))
        else:
            cases.append((user, keys.hex, expiring(keys, user=f"x{i}"), 401))
    results = await asyncio.gather(*(authd.login(u, k, t) for u, k, t, _ in cases))
    for (user, _, _, expected), (status, body) in zip(cases, results, strict=True):
        assert status == expected, (user, body)
        if status == 200:
            assert body["username"] == user


async def test_datalog_bombs_are_stopped_and_the_worker_replaced(authd, keys):
    restarts = await authd.metric("worker_restarts_total", cause="cpu_limit")
    status, body = await authd.login("alice", keys.hex, make_token(keys, FACT_BOMB))
    assert status == 401 and body["reason"] == "datalog_limits"
    started = time.monotonic()
    status, body = await authd.login("alice", keys.hex, make_token(keys, CPU_BOMB))
    assert status == 401 and body["reason"] == "datalog_limits", body
    assert "ms of CPU" in body["error"]
    assert time.monotonic() - started < 5.0
    assert await authd.metric("worker_restarts_total", cause="cpu_limit") == restarts + 1
    await async_wait_for(lambda: authd.app[POOL].alive == 3, what="3 workers again")
    assert (await authd.login("alice", keys.hex, expiring(keys)))[0] == 200


async def test_a_killed_worker_is_replaced(authd, keys):
    pool = authd.app[POOL]
    await async_wait_for(lambda: pool.alive == 3, what="3 workers")
    victim = sorted(pool.pids(slow=False))[0]
    os.kill(victim, signal.SIGKILL)
    # Replaced as soon as it dies, not when a login next picks it.
    await async_wait_for(
        lambda: pool.alive == 3 and victim not in pool.pids(), what="a replacement worker"
    )
    assert await authd.metric("worker_restarts_total", cause="crashed") >= 1
    answers = [(await authd.login("alice", keys.hex, expiring(keys)))[0] for _ in range(4)]
    assert answers == [200] * 4


async def test_tokens_that_join_run_on_a_slow_lane_at_a_lower_cpu_priority(authd, keys):
    pool = authd.app[POOL]
    await async_wait_for(lambda: pool.alive == 3, what="3 workers")
    (slow,) = pool.pids(slow=True)
    fast = pool.pids(slow=False)
    assert len(fast) == 2
    for pid in fast:
        assert os.getpriority(os.PRIO_PROCESS, slow) - os.getpriority(os.PRIO_PROCESS, pid) == 10
    # A token whose check joins two predicates is verified there, and works.
    token = make_token(keys, 'user("alice"); r("a"); check if r($x), user($u), $u == "alice";')
    assert (await authd.login("alice", keys.hex, token))[0] == 200


async def test_tokens_never_reach_the_log(authd, keys, other_keys, caplog):
    caplog.set_level(logging.INFO)
    valid, wrong = expiring(keys), expiring(keys, user="bob")
    sent = [valid, wrong, valid[:40] + "!"]
    await authd.login("alice", keys.hex, valid)
    await authd.login("alice", keys.hex, wrong)
    await authd.login("alice", other_keys.hex, valid)
    await authd.login("alice", keys.hex, sent[2])
    text = caplog.text
    assert "accepted user='alice'" in text and "reason=bad_signature" in text
    for token in sent:
        assert token not in text and token[:40] not in text


async def test_revocation_file_lifecycle(tmp_path, keys, caplog):
    caplog.set_level(logging.INFO)
    async with serve_authd(tmp_path) as server:
        state = lambda: server.app[WATCHER].state  # noqa: E731
        parent = biscuit.Biscuit.from_base64(expiring(keys), keys.pair.public_key)
        child = parent.append(biscuit.BlockBuilder('check if operation("authenticate");'))
        token, child_token = parent.to_base64(), child.to_base64()
        rid, child_rid = child.revocation_ids
        assert (await server.login("alice", keys.hex, child_token))[0] == 200
        # Created after start: in force within 2 s (SPEC); bad lines are skipped and logged.
        written = time.monotonic()
        server.revocation_file.write_text(f"zz-not-hex\n{rid.upper()}\n")
        await async_wait_for(lambda: rid in state().revocations.ids, what="the new list")
        assert time.monotonic() - written < 2.0
        status, body = await server.login("alice", keys.hex, child_token)
        # Revoking the authority block revokes every token attenuated from it.
        assert status == 401 and body["reason"] == "revoked" and rid[:16] in body["error"]
        assert (await server.login("alice", keys.hex, token))[1]["reason"] == "revoked"
        status, health = await server.health()
        assert status == 200 and health["revoked_ids"] == 1
        # Revoking an attenuation block revokes only that token and its descendants.
        server.revocation_file.write_text(f"{child_rid}\n")
        await async_wait_for(lambda: child_rid in state().revocations.ids, what="the new list")
        assert (await server.login("alice", keys.hex, token))[0] == 200
        status, body = await server.login("alice", keys.hex, child_token)
        assert status == 401 and "block 1" in body["error"]
        # Unreadable: the last good list stays in force and /healthz says why.
        server.revocation_file.unlink()
        server.revocation_file.mkdir()
        await async_wait_for(lambda: state().status == "error", what="the read error")
        status, health = await server.health()
        assert status == 503 and "revocation_file" in health["reason"]
        assert (await server.login("alice", keys.hex, child_token))[1]["reason"] == "revoked"
        # Missing: nothing is revoked.
        server.revocation_file.rmdir()
        await async_wait_for(lambda: state().status == "missing", what="the file gone")
        assert (await server.login("alice", keys.hex, child_token))[0] == 200
        assert (await server.health())[0] == 200
    log = caplog.text
    assert "1 line(s) are not hex revocation ids" in log and "(line 1)" in log
    assert "does not exist: no token is revoked" in log


async def test_revocation_file_unreadable_at_start_refuses_logins(tmp_path, keys):
    # No list was ever read, so nobody knows which tokens are revoked: fail closed.
    (tmp_path / "revoked.txt").mkdir()
    async with serve_authd(tmp_path) as server:
        token = expiring(keys)
        status, body = await server.login("alice", keys.hex, token)
        assert status == 503 and body["reason"] == "unavailable", body
        assert "revocation" in body["error"]
        assert (await server.health())[0] == 503
        server.revocation_file.rmdir()
        server.revocation_file.write_text("# nothing revoked\n")
        await async_wait_for(
            lambda: server.app[WATCHER].state.status == "loaded", what="a readable file"
        )
        assert (await server.login("alice", keys.hex, token))[0] == 200


async def test_request_fields_in_logs_are_cut_and_escaped(authd, keys, caplog):
    # Issue 14.5: a 900 KB user name was a 900 KB log line; a newline in it forged a second one.
    caplog.set_level(logging.INFO, logger="services.authd")
    huge = "a" * 900_000
    forged = "alice\nWARNING services.authd: accepted user=oneadmin"
    for user in (huge, forged):
        await authd.login(user, keys.hex, expiring(keys))
        await authd.login(user, "not-a-key", "t")
    await authd.login("alice", keys.hex, expiring(keys))
    records = [r for r in caplog.records if r.name == "services.authd"]
    assert len(records) == 5
    for record in records:
        message = record.getMessage()
        assert len(message) < 1000, len(message)
        assert "\n" not in message
    assert "more]" in records[0].getMessage()  # says how much was cut
    assert "user='alice\\nWARNING services.authd: accepted user=oneadmin'" in caplog.text
    assert records[-1].getMessage() == "accepted user='alice'"
