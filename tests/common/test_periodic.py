"""The shared periodic-task helper: fixed schedule, late cycles, failures on /healthz, stop."""

from __future__ import annotations

import asyncio
import time

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


def test_next_due_with_min_gap_skips_a_tick_too_close_to_a_late_start() -> None:
    # Due at 10, started late at 11.5 (interval 2): the tick at 12 would come 0.5 s after it.
    assert next_due(10.0, 11.55, 2.0) == 12.0
    assert next_due(10.0, 11.55, 2.0, started=11.5, min_gap=1.0) == 14.0
    # Late by less than the interval minus the gap: the schedule is kept as it is.
    assert next_due(10.0, 10.95, 2.0, started=10.9, min_gap=1.0) == 12.0
    # Exactly min_gap after the start is allowed; the schedule never drifts either way.
    assert next_due(10.0, 11.05, 2.0, started=11.0, min_gap=1.0) == 12.0
    # An overrun and a late start together: missed ticks skipped, then the gap kept.
    assert next_due(0.0, 5.2, 1.0, started=4.9, min_gap=0.5) == 6.0
    assert next_due(0.0, 5.2, 1.0, started=5.7 - 0.25, min_gap=0.8) == 7.0


def test_min_gap_outside_zero_to_interval_is_refused() -> None:
    async def step() -> None:
        return None

    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_gap"):
            Periodic("x", step, 1.0, min_gap=bad)


async def test_cycles_start_min_gap_apart_even_after_a_blocked_loop() -> None:
    starts: list[float] = []
    loop = asyncio.get_running_loop()

    async def step() -> None:
        starts.append(loop.time())
        if len(starts) % 3 == 1:
            # Block the loop over the next tick: that cycle starts 0.03 s late, and the tick
            # after it would come 0.02 s after its start.
            loop.call_later(0.01, time.sleep, 0.07)

    async with Periodic("cadence", step, 0.05, min_gap=0.025):
        await wait_until(lambda: len(starts) >= 12)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.025 - 1e-6, gaps


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
    assert list(health.failing) == ["reconcile"]
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
