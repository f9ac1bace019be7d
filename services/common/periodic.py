"""One shape for background work: a step run every N seconds, started and stopped with the app.

Every service has one or more loops (rapl_agent samples, vm_exporter refreshes, authd watches
its revocation file, discovery and geo reconcile, tunnel_agent sweeps leases). They share the
rules here: the schedule is fixed to the start time and never drifts; a late cycle skips the
ticks it missed instead of running cycles back to back (and, with `min_gap`, a tick that
would come too soon after a cycle that started late); a failing cycle is logged (its
traceback once per distinct failure) and shown on `/healthz`, never fatal; stopping cancels the
task and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from .health import Health

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[None]]


def next_due(
    due: float,
    now: float,
    interval: float,
    *,
    started: float | None = None,
    min_gap: float = 0.0,
) -> float:
    """The first tick of the fixed schedule `due + k * interval` (k >= 1) that is after `now`.

    A cycle that overran skips the ticks it missed: the next one starts on the schedule, never
    right after the late one to catch up (pure, so tests step time instead of sleeping). With
    `min_gap`, a tick less than `min_gap` after `started` (when the cycle due at `due` really
    began) is skipped too: a cycle that started late is not followed by one a moment later.
    """
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    following = due + interval
    if following <= now:
        following += (math.floor((now - following) / interval) + 1) * interval
    if started is not None and following < started + min_gap:
        following += math.ceil((started + min_gap - following) / interval) * interval
    return following


class Periodic:
    """Runs `step` every `interval` seconds in a task; `check` names it on `/healthz`."""

    def __init__(
        self,
        name: str,
        step: Step,
        interval: float,
        *,
        health: Health | None = None,
        check: str | None = None,
        run_first: bool = True,
        await_first: bool = False,
        min_gap: float = 0.0,
    ) -> None:
        if not interval > 0 or not math.isfinite(interval):
            raise ValueError(f"{name}: interval must be a positive number, got {interval!r}")
        if not 0 <= min_gap <= interval:
            raise ValueError(f"{name}: min_gap must be between 0 and the interval, got {min_gap!r}")
        self.name = name
        self.interval = interval
        # Cycles start at least min_gap apart (see next_due): for a step that measures over the
        # time since the previous cycle, a late cycle must not be followed by a very short one.
        self.min_gap = min_gap
        self._step = step
        self._health = health
        self._check = check or name
        # run_first: the first cycle starts at once, else one interval after start.
        # await_first: the app starts serving only once the first cycle is done.
        self._run_first = run_first or await_first
        self._await_first = await_first
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None
        self.cycles = 0
        self.failures = 0
        self.last_duration_s = 0.0

    async def run_once(self) -> bool:
        """One cycle: True when it succeeded; a failure is logged and shown, never raised."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            reason = f"{self.name} failed: {type(exc).__name__}: {exc}"[:500]
            if reason != self._failure:
                log.exception("%s failed; trying again in %gs", self.name, self.interval)
            self._failure = reason
            if self._health is not None:
                self._health.fail(self._check, reason)
            return False
        finally:
            self.cycles += 1
            self.last_duration_s = loop.time() - started
        if self._failure is not None:
            log.info("%s works again", self.name)
            self._failure = None
            if self._health is not None:
                self._health.ok(self._check)
        return True

    async def _cycle(self, due: float) -> float:
        """Run the cycle due at `due` now; returns when the next one is due."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.run_once()
        return next_due(due, loop.time(), self.interval, started=started, min_gap=self.min_gap)

    async def _run(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = await self._cycle(due)

    async def start(self) -> None:
        """Start the task (after the first cycle when `await_first`)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        if self._await_first:
            due = await self._cycle(due)
        elif not self._run_first:
            due += self.interval
        self._task = asyncio.create_task(self._run(due), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait until it has finished."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> Periodic:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def cleanup_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        """`app.cleanup_ctx.append(periodic.cleanup_ctx)`: runs for the app's lifetime."""
        async with self:
            yield
