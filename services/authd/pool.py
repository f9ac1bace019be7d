"""The verifier worker processes seen from the server: one request at a time per worker.

Requests wait for a free worker as the FairScheduler decides (users in turn, costly tokens
last, bounded queues: a request that cannot wait is `busy`, 503). A worker that dies is replaced in
the background: by its CPU alarm (a Datalog bomb: the request gets `datalog_limits`), by a crash
or by missing its wall-clock deadline (the request gets `unavailable`, which the shim treats as
a rejection).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from .scheduler import Busy, FairScheduler, Priority
from .verdict import Reason, Verdict
from .verifier import Limits

log = logging.getLogger(__name__)

_READY_LINE = b'{"ready": true}'
_PIPE_LIMIT = 1024 * 1024
# The slow lane (tokens that join predicates, where Datalog bombs live) runs at this niceness:
# under contention a bomb, and the start of its replacement, get ~10 % of the CPU share of a
# normal process (CFS weight 110 against 1024), so they cannot slow the fast lane's logins.
SLOW_NICE = 10


class WorkerDied(Exception):
    """A worker stopped answering; `cause` is a metric label."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause


def worker_argv(limits: Limits, cpu_limit: float) -> list[str]:
    """The command line of one worker process."""
    return [
        sys.executable,
        "-m",
        "services.authd.worker",
        "--max-time",
        repr(limits.max_time),
        "--max-facts",
        str(limits.max_facts),
        "--max-iterations",
        str(limits.max_iterations),
        "--cpu-limit",
        repr(cpu_limit),
    ]


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process, slow: bool) -> None:
        self.proc = proc
        self.slow = slow
        self._next_id = 0

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    async def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._next_id += 1
        request_id = self._next_id
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"id": request_id, **request}).encode() + b"\n")
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise WorkerDied("timeout", f"no answer within {timeout:g} s") from None
        except (ConnectionError, ValueError) as exc:
            raise WorkerDied("crashed", f"pipe to the worker failed: {exc}") from None
        if not line:
            code = await self.proc.wait()
            if code == -signal.SIGPROF:
                raise WorkerDied("cpu_limit", "over its CPU budget")
            raise WorkerDied("crashed", f"exited with status {code}")
        try:
            reply = json.loads(line)
        except ValueError:
            raise WorkerDied("protocol", "answered something that is not JSON") from None
        if not isinstance(reply, dict) or reply.get("id") != request_id:
            raise WorkerDied("protocol", "answered out of order")
        return reply

    def kill(self) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


class VerifierPool:
    """`size` fast-lane worker processes and one slow-lane one (niced) that verify tokens;
    `verify()` never blocks the event loop."""

    def __init__(
        self,
        argv: list[str],
        size: int,
        *,
        cpu_limit: float,
        call_timeout: float = 3.0,
        acquire_timeout: float = 4.0,
        start_timeout: float = 30.0,
        per_user: int = 1,
        user_queue: int = 32,
        queue: int = 256,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.argv = argv
        self.size = size
        self.cpu_limit = cpu_limit
        self.call_timeout = max(call_timeout, 3 * cpu_limit)
        self.acquire_timeout = acquire_timeout
        self.start_timeout = start_timeout
        self.restarts: collections.Counter[str] = collections.Counter()
        self._on_change = on_change or (lambda: None)
        self.scheduler: FairScheduler[_Worker] = FairScheduler(
            size + 1, per_user=per_user, user_queue=user_queue, queue=queue
        )
        self._workers: set[_Worker] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def alive(self) -> int:
        """Worker processes running, both lanes."""
        return sum(1 for w in self._workers if w.running)

    @property
    def alive_fast(self) -> int:
        """Fast-lane worker processes running: without one, no login can succeed."""
        return sum(1 for w in self._workers if w.running and not w.slow)

    def pids(self, *, slow: bool | None = None) -> list[int]:
        """Process ids of the running workers, of one lane or both."""
        return [w.proc.pid for w in self._workers if w.running and (slow is None or w.slow == slow)]

    async def _spawn(self, slow: bool) -> _Worker:
        argv = [*self.argv, "--nice", str(SLOW_NICE)] if slow else self.argv
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_PIPE_LIMIT,
        )
        worker = _Worker(proc, slow)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self.start_timeout)
        except TimeoutError:
            line = b""
        if line.strip() != _READY_LINE:
            worker.kill()
            await proc.wait()
            raise RuntimeError(f"verifier worker did not start (exit status {proc.returncode})")
        if self._closing:
            worker.kill()
            await proc.wait()
            return worker
        self._workers.add(worker)
        self.scheduler.put(worker, slow=slow)
        self._on_change()
        self._track(self._watch(worker))
        return worker

    async def _watch(self, worker: _Worker) -> None:
        """Replace a worker that dies while idle (killed, out of memory) at once, not at use."""
        await worker.proc.wait()
        if worker in self._workers and not self._closing and self.scheduler.discard(worker):
            log.error(
                "verifier worker %d exited while idle (status %s)",
                worker.proc.pid,
                worker.proc.returncode,
            )
            self._retire(worker, "crashed")

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        """Start every worker; fail when none can start (a broken install, not a bad token)."""
        lanes = [False] * self.size + [True]
        results = await asyncio.gather(
            *(self._spawn(slow) for slow in lanes), return_exceptions=True
        )
        failed = [slow for slow, r in zip(lanes, results, strict=True) if isinstance(r, Exception)]
        if failed.count(False) == self.size:
            raise RuntimeError(str(next(r for r in results if isinstance(r, Exception))))
        for slow in failed:
            self._respawn_later(slow)

    def _respawn_later(self, slow: bool) -> None:
        if not self._closing:
            self._track(self._respawn(slow))

    async def _respawn(self, slow: bool) -> None:
        delay = 0.0
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self._spawn(slow)
                return
            except Exception as exc:  # keep trying: without workers every login fails
                delay = min(max(delay * 2, 0.5), 10.0)
                log.error("cannot start a verifier worker: %s; retrying in %.1f s", exc, delay)

    def _retire(self, worker: _Worker, cause: str) -> None:
        worker.kill()
        self._workers.discard(worker)
        self.restarts[cause] += 1
        self._on_change()
        self._respawn_later(worker.slow)

    async def _acquire(self, user: str, priority: Priority) -> _Worker:
        """A running worker for this user's turn; Busy when none comes in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.acquire_timeout
        while True:
            try:
                worker = await self.scheduler.acquire(
                    user, priority=priority, timeout=max(0.0, deadline - loop.time())
                )
            except Busy as exc:
                if exc.cause == "timeout":
                    exc.args = (f"no verifier worker free within {self.acquire_timeout:g} s",)
                raise
            if worker.running:
                return worker
            self._retire(worker, "crashed")
            self.scheduler.done(user, priority)

    async def verify(
        self, token: str, key: bytes, username: str, *, priority: Priority = Priority.CHEAP
    ) -> Verdict:
        """Verify in a worker; limits, crashes and full queues become verdicts, never exceptions."""
        if self._closing:
            return Verdict(Reason.UNAVAILABLE, "authd is shutting down")
        try:
            worker = await self._acquire(username, priority)
        except Busy as exc:
            return Verdict(Reason.BUSY, f"authd is busy: {exc}; try again")
        request = {"token": token, "key": key.hex(), "username": username}
        free: _Worker | None = None
        try:
            reply = await worker.call(request, self.call_timeout)
            free = worker
        except WorkerDied as exc:
            self._retire(worker, exc.cause)
            if exc.cause == "cpu_limit":
                return Verdict(
                    Reason.DATALOG_LIMITS,
                    f"the token's Datalog used over {self.cpu_limit * 1000:g} ms of CPU; "
                    "verification stopped",
                )
            log.error("verifier worker failed (%s): %s", exc.cause, exc)
            return Verdict(Reason.UNAVAILABLE, f"verifier worker failed: {exc}")
        except BaseException:  # cancelled mid-call: its answer would reach the next request
            self._retire(worker, "cancelled")
            raise
        finally:
            self.scheduler.done(username, priority, free)
        try:
            return Verdict.from_json(reply)
        except (ValueError, KeyError, TypeError) as exc:
            return Verdict(Reason.UNAVAILABLE, f"verifier worker answered nonsense: {exc}")

    async def close(self) -> None:
        """Stop every worker: close its stdin (it exits), kill it if it lingers."""
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in self._workers:
            if worker.proc.stdin is not None:
                worker.proc.stdin.close()
        for worker in list(self._workers):
            try:
                await asyncio.wait_for(worker.proc.wait(), 1.0)
            except TimeoutError:
                worker.kill()
                await worker.proc.wait()
        self._workers.clear()
