"""Fair sharing of the verifier workers, without processes: issue 14 point 4."""

from __future__ import annotations

import asyncio

import pytest

from services.authd.scheduler import Busy, FairScheduler, Priority

CHEAP, JOINS, HEAVY = Priority.CHEAP, Priority.JOINS, Priority.HEAVY


def scheduler(size: int = 2, **kwargs) -> FairScheduler[str]:
    s: FairScheduler[str] = FairScheduler(size, **kwargs)
    for n in range(size):
        s.put(f"w{n}")
    return s


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_one_user_runs_one_verification_at_a_time_and_leaves_the_rest_free():
    s = scheduler(2)
    first = await s.acquire("mallory", priority=CHEAP, timeout=1)
    second = asyncio.create_task(s.acquire("mallory", priority=CHEAP, timeout=1))
    await settle()
    assert not second.done() and s.idle == 1 and s.waiting == 1
    # Another user gets the free worker at once, though mallory asked first.
    assert await s.acquire("alice", priority=CHEAP, timeout=1) == "w1"
    s.done("mallory", CHEAP, first)
    assert await second == first


async def test_free_workers_go_to_users_in_turn():
    s = scheduler(1)
    held = await s.acquire("x", priority=CHEAP, timeout=1)
    order: list[str] = []

    async def login(user: str) -> None:
        worker = await s.acquire(user, priority=CHEAP, timeout=5)
        order.append(user)
        s.done(user, False, worker)

    tasks = [asyncio.create_task(login(u)) for u in ["mallory"] * 4 + ["alice", "bob"]]
    await settle()
    s.done("x", CHEAP, held)
    await asyncio.gather(*tasks)
    # FIFO would serve mallory's four first; in turn, alice and bob come second and third.
    assert order == ["mallory", "alice", "bob", "mallory", "mallory", "mallory"]


async def test_queues_are_bounded_per_user_and_in_all():
    s = scheduler(1, user_queue=2, queue=3)
    held = await s.acquire("x", priority=CHEAP, timeout=1)
    waiting = [
        asyncio.create_task(s.acquire("mallory", priority=CHEAP, timeout=5)) for _ in range(2)
    ]
    await settle()
    with pytest.raises(Busy) as refused:
        await s.acquire("mallory", priority=CHEAP, timeout=5)
    assert refused.value.cause == "user_queue" and "2 verifications for this user" in str(
        refused.value
    )
    waiting.append(asyncio.create_task(s.acquire("alice", priority=CHEAP, timeout=5)))
    await settle()
    with pytest.raises(Busy) as refused:
        await s.acquire("bob", priority=CHEAP, timeout=5)
    assert refused.value.cause == "queue"
    assert s.refusals == {"user_queue": 1, "queue": 1} and s.last_refusal is not None
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert s.waiting == 0
    s.done("x", CHEAP, held)
    assert s.idle == 1


async def test_a_wait_that_times_out_is_refused_and_forgotten():
    s = scheduler(1)
    held = await s.acquire("x", priority=CHEAP, timeout=1)
    with pytest.raises(Busy) as refused:
        await s.acquire("alice", priority=CHEAP, timeout=0.01)
    assert refused.value.cause == "timeout" and s.waiting == 0
    s.done("x", CHEAP, held)
    assert s.idle == 1 and s.running == 0


async def test_heavy_users_come_last_and_never_take_the_last_free_worker():
    s = scheduler(2)
    held = await s.acquire("x", priority=CHEAP, timeout=1)
    heavy = asyncio.create_task(s.acquire("mallory", priority=HEAVY, timeout=5))
    await settle()
    # One worker is free, but it is the last one: kept for users with a clean record.
    assert not heavy.done() and s.idle == 1
    assert await s.acquire("alice", priority=CHEAP, timeout=1) == "w1"
    s.done("alice", CHEAP, "w1")
    await settle()
    assert not heavy.done()  # still only one free
    s.done("x", CHEAP, held)
    worker = await heavy
    assert s.costly_running == 1 and s.idle == 1
    # While mallory holds one, her next waits even with a worker free.
    again = asyncio.create_task(s.acquire("eve", priority=HEAVY, timeout=5))
    await settle()
    assert not again.done()
    s.done("mallory", HEAVY, worker)
    assert await again in ("w0", "w1")


async def test_with_one_worker_heavy_users_still_get_their_turn():
    s = scheduler(1)
    assert await s.acquire("mallory", priority=HEAVY, timeout=1) == "w0"


async def test_a_worker_granted_as_the_wait_is_cancelled_is_not_lost():
    s = scheduler(1)
    held = await s.acquire("x", priority=CHEAP, timeout=1)
    task = asyncio.create_task(s.acquire("alice", priority=CHEAP, timeout=5))
    await settle()
    s.done("x", CHEAP, held)  # grants alice's future ...
    task.cancel()  # ... and her request goes away before it runs
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s.idle == 1 and s.running == 0 and s.waiting == 0


async def test_saturation_is_reported_while_refusals_are_recent():
    now = [100.0]
    s: FairScheduler[str] = FairScheduler(1, user_queue=1, clock=lambda: now[0])
    assert s.saturation(10) is None
    with pytest.raises(Busy):
        await s.acquire("alice", priority=CHEAP, timeout=0)
    reason = s.saturation(10)
    assert reason is not None and reason.startswith("saturated: ") and "1 timeout" in reason
    assert "0 of 1 workers busy" in reason
    now[0] += 9.9
    assert s.saturation(10) is not None
    now[0] += 0.1
    assert s.saturation(10) is None


async def test_join_free_tokens_first_then_joins_then_heavy_users():
    s = scheduler(3)
    held = [await s.acquire(f"x{n}", priority=CHEAP, timeout=1) for n in range(3)]
    got: dict[str, str] = {}

    async def login(user: str, priority: Priority) -> None:
        got[user] = await s.acquire(user, priority=priority, timeout=5)

    tasks = [
        asyncio.create_task(login(user, priority))
        for user, priority in (("mallory", HEAVY), ("joiner", JOINS), ("alice", CHEAP))
    ]
    await settle()
    s.done("x0", CHEAP, held[0])
    await settle()
    assert set(got) == {"alice"}  # the join-free login first, though it came last
    s.done("x1", CHEAP, held[1])
    await settle()
    assert set(got) == {"alice"}  # the last free worker is not for tokens that join
    s.done("x2", CHEAP, held[2])
    await settle()
    assert set(got) == {"alice", "joiner"}  # joins before users whose tokens blew up
    s.done("alice", CHEAP, got["alice"])
    await asyncio.gather(*tasks)
    assert s.costly_running == 2 and s.idle == 1  # never the last free one
