"""Datalog bombs as a denial of service (issue 14 point 4), in-process through create_app.

A bomb may cost one worker its CPU limit once; it must not cost it again, nor delay the
logins of other users, nor fill the queue for them.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import biscuit_auth as biscuit
import pytest

from services.authd.app import POOL
from testkit import async_wait_for
from testkit.authd import append, join_bomb

from .conftest import Keys, expiring, make_token, sample, serve_authd

pytestmark = pytest.mark.asyncio(loop_scope="module")

BOMB_BLOCK = join_bomb(40, 4)  # within the static limits: only the CPU alarm stops it


def fresh_bomb(keys: Keys, user: str, n: int) -> str:
    """A new authority block each time, as a user holding their own key can mint."""
    return make_token(keys, f"user({{u}}); nonce({n});" + BOMB_BLOCK, params={"u": user})


async def test_a_blown_token_and_every_heir_are_refused_at_once(tmp_path, keys):
    async with serve_authd(tmp_path, verify_cpu_limit=0.04) as server:
        # A leaked, expired token: anyone holding it can append blocks to it.
        old = expiring(keys, delta=dt.timedelta(hours=-1))
        status, body = await server.login("alice", keys.hex, append(old, keys.pair, BOMB_BLOCK))
        assert status == 401 and "40 ms of CPU" in body["error"], body
        restarts = await server.metric("worker_restarts_total", cause="cpu_limit")
        assert restarts == 1
        # Every other bomb appended to it is refused without a worker: no second restart.
        for n in range(3):
            bomb = append(old, keys.pair, f"nonce({n});" + BOMB_BLOCK)
            status, body = await server.login("alice", keys.hex, bomb)
            assert status == 401 and body["reason"] == "datalog_limits"
            assert "refused without running it" in body["error"]
        text = await server.metrics()
        assert sample(text, "worker_restarts_total", cause="cpu_limit") == 1
        assert sample(text, "refused_without_worker_total", reason="datalog_limits") == 3
        assert sample(text, "blown_tokens") == 1 and sample(text, "heavy_users") == 1
        # Alice's own, current token has another authority block: still accepted.
        assert (await server.login("alice", keys.hex, expiring(keys)))[0] == 200
        status, health = await server.health()
        assert health["blown_tokens"] == 1 and health["heavy_users"] == 1


async def test_revoked_tokens_are_refused_before_any_worker_runs(tmp_path, keys):
    old = expiring(keys)
    rid = biscuit.Biscuit.from_base64(old, keys.pair.public_key).revocation_ids[0]
    (tmp_path / "revoked.txt").write_text(f"{rid}\n")
    async with serve_authd(tmp_path, verify_cpu_limit=0.04) as server:
        bomb = append(old, keys.pair, BOMB_BLOCK)
        status, body = await server.login("alice", keys.hex, bomb)
        assert status == 401 and body["reason"] == "revoked"
        text = await server.metrics()
        assert sample(text, "worker_restarts_total", cause="cpu_limit") == 0
        assert sample(text, "refused_without_worker_total", reason="revoked") == 1


async def test_one_user_flooding_bombs_does_not_delay_the_others(tmp_path, keys, other_keys):
    async with serve_authd(tmp_path, verify_cpu_limit=0.04) as server:
        finished: list[str] = []

        async def login(user: str, key: Keys, token: str, label: str) -> int:
            status, _ = await server.login(user, key.hex, token)
            finished.append(label)
            return status

        bombs = [
            asyncio.create_task(
                login("mallory", other_keys, fresh_bomb(other_keys, "mallory", n), f"bomb{n}")
            )
            for n in range(3)
        ]
        await async_wait_for(
            lambda: server.app[POOL].scheduler.waiting == 2, what="mallory's bombs queued"
        )
        users = [f"user{n}" for n in range(6)]
        valid = [login(u, keys, expiring(keys, user=u), u) for u in users]
        assert await asyncio.gather(*valid) == [200] * 6
        assert await asyncio.gather(*bombs) == [401] * 3
        # In a FIFO queue the six logins would come after three bombs (40 ms of CPU each and a
        # new worker): they all finish before mallory's second bomb.
        assert finished.index("bomb1") > max(finished.index(u) for u in users), finished
        assert finished.index("bomb0") < finished.index("bomb1")


async def test_a_full_user_queue_refuses_at_once_and_shows_saturation(tmp_path, keys, other_keys):
    async with serve_authd(tmp_path, verify_cpu_limit=0.04, user_queue=2) as server:
        bombs = [fresh_bomb(other_keys, "mallory", n) for n in range(6)]
        answers = await asyncio.gather(
            *(server.login("mallory", other_keys.hex, b) for b in bombs),
            server.login("alice", keys.hex, expiring(keys)),
        )
        statuses = [status for status, _ in answers[:6]]
        # One runs, two wait in mallory's queue, three are refused at once (503, busy).
        assert sorted(statuses) == [401, 401, 401, 503, 503, 503], answers
        busy = [body for status, body in answers[:6] if status == 503]
        assert all(b["reason"] == "busy" and "for this user" in b["error"] for b in busy)
        assert answers[6][0] == 200  # alice was not in mallory's queue
        status, health = await server.health()
        assert status == 503 and "saturated" in health["reason"]
        text = await server.metrics()
        assert sample(text, "busy_refusals_total", cause="user_queue") == 3
        assert sample(text, "authentications_total", reason="busy", result="error") == 3
        assert sample(text, "workers_busy") >= 0 and sample(text, "verifications_waiting") >= 0
