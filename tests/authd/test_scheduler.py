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
        s.done(user, CHEAP, worker)

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


async def test_tokens_that_join_run_on_the_slow_lane_only():
    s = scheduler(2)  # two fast-lane workers, no slow-lane one yet
    joins = asyncio.create_task(s.acquire("joiner", priority=JOINS, timeout=5))
    await settle()
    assert not joins.done() and s.idle == 2  # free fast workers are not for tokens that join
    s.put("slow", slow=True)
    assert await joins == "slow"
    # And a join-free login never waits for, nor takes, the slow lane.
    assert await s.acquire("alice", priority=CHEAP, timeout=1) in ("w0", "w1")
    s.done("joiner", JOINS, "slow")
    assert await s.acquire("bob", priority=CHEAP, timeout=1) in ("w0", "w1")
    assert s.idle == 1  # the slow worker, back in its lane


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


async def test_on_the_slow_lane_joins_come_before_users_whose_tokens_blew_up():
    s: FairScheduler[str] = FairScheduler(2)
    s.put("slow", slow=True)
    held = await s.acquire("x", priority=JOINS, timeout=1)
    order: list[str] = []

    async def login(user: str, priority: Priority) -> None:
        worker = await s.acquire(user, priority=priority, timeout=5)
        order.append(user)
        s.done(user, priority, worker)

    tasks = [
        asyncio.create_task(login(user, priority))
        for user, priority in (("mallory", HEAVY), ("eve", HEAVY), ("joiner", JOINS))
    ]
    await settle()
    s.done("x", JOINS, held)
    await asyncio.gather(*tasks)
    assert order == ["joiner", "mallory", "eve"]
