"""The shared periodic-task helper: fixed schedule, late cycles, failures on /healthz, stop."""

from __future__ import annotations

import asyncio

import pytest

from services.common.health import Health
from services.common.periodic import Periodic, next_due


def test_next_due_keeps_the_schedule_fixed_to_the_start() -> None:
    assert next_due(10.0, 10.3, 1.0) == 11.0
    # A cycle that ended exactly on the next tick does not run again at once.
    assert next_due(10.0, 11.0, 1.0) == 12.0


def test_next_due_skips_the_ticks_a_late_cycle_missed() -> None:
    # The cycle due at 10 ran until 13.5: ticks 11, 12 and 13 are skipped, never run back to back.
    assert next_due(10.0, 13.5, 1.0) == 14.0
    assert next_due(0.0, 2.0 * 5 + 0.01, 2.0) == 12.0


def test_next_due_refuses_a_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        next_due(0.0, 1.0, 0.0)


def test_a_bad_interval_is_refused_at_construction() -> None:
    async def step() -> None:
        return None

    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            Periodic("x", step, bad)


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_cycles_run_until_stopped_and_stop_waits_for_the_task() -> None:
    ran: list[float] = []
    finished: list[bool] = []

    async def step() -> None:
        ran.append(asyncio.get_running_loop().time())
        try:
            await asyncio.sleep(0.001)
        finally:
            finished.append(True)

    periodic = Periodic("tick", step, 0.01)
    async with periodic:
        await wait_until(lambda: len(ran) >= 3)
    count = len(ran)
    assert len(finished) == count  # the cycle in flight ended before stop returned
    await asyncio.sleep(0.05)
    assert len(ran) == count  # nothing runs after stop


async def test_a_failing_cycle_shows_on_health_then_clears_and_is_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = Health("test")
    outcomes = iter([RuntimeError("disk gone"), RuntimeError("disk gone"), None])
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        outcome = next(outcomes, None)
        if outcome is not None:
            raise outcome

    periodic = Periodic("reconcile", step, 0.01, health=health)
    assert await periodic.run_once() is False
    report = health.report()
    assert report["status"] == "degraded"
    assert "reconcile failed: RuntimeError: disk gone" in report["reason"]
    assert await periodic.run_once() is False
    # The traceback is logged once per distinct failure, not every cycle.
    assert sum("reconcile failed" in r.getMessage() for r in caplog.records) == 1
    assert await periodic.run_once() is True
    assert health.report()["status"] == "ok"
    assert periodic.failures == 2 and periodic.cycles == 3


async def test_await_first_runs_one_cycle_before_start_returns() -> None:
    ran = 0

    async def step() -> None:
        nonlocal ran
        ran += 1

    periodic = Periodic("first", step, 60.0, await_first=True)
    await periodic.start()
    try:
        assert ran == 1
    finally:
        await periodic.stop()


async def test_run_first_false_waits_one_interval() -> None:
    ran = 0

    async def step() -> None:
        nonlocal ran
        ran += 1

    async with Periodic("later", step, 60.0, run_first=False):
        await asyncio.sleep(0.02)
        assert ran == 0
