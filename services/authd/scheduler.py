"""Which waiting verification gets the next free worker: users in turn, costly ones apart.

One user must never lock out the others (issue 14). So:
- a user runs at most `per_user` verifications at once; the rest of that user's wait in the
  user's own queue (at most `user_queue`, and `queue` for everyone together: beyond that a
  request is refused at once, not queued for seconds);
- free workers go to waiting users in turn (round robin), not to whoever sent the most;
- two lanes: tokens whose rules and checks join no predicates (they cannot blow up; every token
  our CLI makes) run on the fast lane; tokens that join run on the slow lane (the pool runs it
  at a lower CPU priority), users whose tokens blew the limits recently after the others there.
  A Datalog bomb therefore never holds a worker a join-free login needs.

No I/O: the workers are opaque objects the pool puts back when they are free.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import time
from collections.abc import Callable
from typing import Generic, TypeVar

W = TypeVar("W")


class Priority(enum.IntEnum):
    """CHEAP runs on the fast lane; JOINS, then HEAVY, on the slow lane."""

    CHEAP = 0  # no rule or check joins predicates
    JOINS = 1  # some rule or check joins predicates: it may blow up
    HEAVY = 2  # one of the user's tokens blew the limits recently

    @property
    def slow(self) -> bool:
        return self is not Priority.CHEAP


class Busy(Exception):
    """No worker for this verification now; `cause` is a metric label."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


@dataclasses.dataclass(eq=False)
class _Waiter:
    user: str
    priority: Priority
    future: asyncio.Future


class FairScheduler(Generic[W]):
    """Hands free workers to waiting verifications; `acquire` then `done` around each use."""

    CAUSES = ("user_queue", "queue", "timeout")

    def __init__(
        self,
        size: int,
        *,
        per_user: int = 1,
        user_queue: int = 32,
        queue: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.per_user = per_user
        self.user_queue = user_queue
        self.queue = queue
        self._clock = clock
        # Free workers of the fast lane (False) and of the slow lane (True).
        self._idle: dict[bool, collections.deque[W]] = {
            False: collections.deque(),
            True: collections.deque(),
        }
        # Per priority: users in turn, each with its waiters in arrival order.
        self._rings: dict[Priority, collections.OrderedDict[str, collections.deque[_Waiter]]] = {
            priority: collections.OrderedDict() for priority in Priority
        }
        self._waiting_of: collections.Counter[str] = collections.Counter()
        self._running_of: collections.Counter[str] = collections.Counter()
        self.refusals: collections.Counter[str] = collections.Counter()
        self.last_refusal: float | None = None

    @property
    def waiting(self) -> int:
        return sum(self._waiting_of.values())

    @property
    def running(self) -> int:
        return sum(self._running_of.values())

    @property
    def idle(self) -> int:
        return len(self._idle[False]) + len(self._idle[True])

    def saturation(self, window: float) -> str | None:
        """Why /healthz should say "saturated": logins refused within `window` s; else None."""
        if self.last_refusal is None or self._clock() - self.last_refusal >= window:
            return None
        refused = ", ".join(f"{n} {cause}" for cause, n in sorted(self.refusals.items()))
        return (
            f"saturated: logins refused for want of a worker in the last {window:g} s "
            f"(since start: {refused}); {self.running} of {self.size} workers busy, "
            f"{self.waiting} verifications waiting"
        )

    def put(self, worker: W, *, slow: bool = False) -> None:
        """A new worker of one lane is free."""
        self._idle[slow].append(worker)
        self._dispatch()

    def discard(self, worker: W) -> bool:
        """Take a free worker out (it died); False when it is not free (someone holds it)."""
        for idle in self._idle.values():
            if worker in idle:
                idle.remove(worker)
                return True
        return False

    def done(self, user: str, priority: Priority, worker: W | None = None) -> None:
        """A verification that held a worker ended; `worker` is free again unless retired."""
        self._running_of[user] -= 1
        if self._running_of[user] <= 0:
            del self._running_of[user]
        if worker is not None:
            self._idle[priority.slow].append(worker)
        self._dispatch()

    def _refuse(self, cause: str, message: str) -> Busy:
        self.refusals[cause] += 1
        self.last_refusal = self._clock()
        return Busy(cause, message)

    async def acquire(self, user: str, *, priority: Priority, timeout: float) -> W:
        """A worker for one verification of `user`, or Busy (queue full, or none in time)."""
        if self._waiting_of[user] >= self.user_queue:
            raise self._refuse(
                "user_queue", f"{self.user_queue} verifications for this user are already waiting"
            )
        if self.waiting >= self.queue:
            raise self._refuse("queue", f"{self.queue} verifications are already waiting")
        waiter = _Waiter(user, priority, asyncio.get_running_loop().create_future())
        self._rings[priority].setdefault(user, collections.deque()).append(waiter)
        self._waiting_of[user] += 1
        self._dispatch()
        try:
            async with asyncio.timeout(timeout):
                return await waiter.future
        except BaseException as exc:
            if waiter.future.done() and not waiter.future.cancelled():
                # Granted as the timeout or a cancellation struck: hand the worker on.
                self.done(user, priority, waiter.future.result())
            else:
                self._forget(waiter)
            if isinstance(exc, TimeoutError):
                message = f"no verifier worker free within {timeout:g} s"
                raise self._refuse("timeout", message) from None
            raise

    def _forget(self, waiter: _Waiter) -> None:
        ring = self._rings[waiter.priority]
        queue = ring.get(waiter.user)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del ring[waiter.user]
            self._drop_waiting(waiter.user)

    def _drop_waiting(self, user: str) -> None:
        self._waiting_of[user] -= 1
        if self._waiting_of[user] <= 0:
            del self._waiting_of[user]

    def _pick(self, priority: Priority) -> _Waiter | None:
        """The first waiter, in user order, whose user may run one more."""
        ring = self._rings[priority]
        for user in ring:
            if self._running_of[user] >= self.per_user:
                continue
            queue = ring[user]
            waiter = queue.popleft()
            if queue:
                ring.move_to_end(user)
            else:
                del ring[user]
            return waiter
        return None

    def _dispatch(self) -> None:
        for slow, order in ((False, (Priority.CHEAP,)), (True, (Priority.JOINS, Priority.HEAVY))):
            idle = self._idle[slow]
            while idle:
                waiter = None
                for priority in order:
                    waiter = self._pick(priority)
                    if waiter is not None:
                        break
                if waiter is None:
                    break
                self._drop_waiting(waiter.user)
                self._running_of[waiter.user] += 1
                waiter.future.set_result(idle.popleft())
