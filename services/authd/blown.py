"""Tokens that blew the limits, remembered for a while so they cost nothing the next time.

Anyone holding a token can append blocks to it, so one leaked token (even an expired or
revoked one) yields endless new bombs; they all share the authority block, whose revocation id
is what is remembered here. Their users are remembered too: the scheduler serves them after
everyone else. Pure: the clock is a parameter; sizes are bounded (oldest forgotten first).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable


class _Expiring:
    """Keys remembered until a deadline, at most `capacity` of them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._until: collections.OrderedDict[str, float] = collections.OrderedDict()

    def add(self, key: str, until: float) -> None:
        self._until.pop(key, None)
        self._until[key] = until  # deadlines only grow, so insertion order is expiry order
        while len(self._until) > self.capacity:
            self._until.popitem(last=False)

    def until(self, key: str, now: float) -> float | None:
        deadline = self._until.get(key)
        if deadline is None or deadline <= now:
            return None
        return deadline

    def purge(self, now: float) -> None:
        while self._until:
            key, deadline = next(iter(self._until.items()))
            if deadline > now:
                return
            del self._until[key]

    def __len__(self) -> int:
        return len(self._until)


class BlownTokens:
    """Authority revocation ids (and users) whose verification blew the limits recently."""

    def __init__(
        self,
        ttl: float,
        *,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._tokens = _Expiring(capacity)
        self._users = _Expiring(capacity)

    def remember(self, authority_id: str, user: str) -> None:
        """This token blew the limits: refuse it at once, and serve its user last, for `ttl`."""
        until = self._clock() + self.ttl
        self._tokens.add(authority_id, until)
        self._users.add(user, until)

    def refused_for(self, authority_id: str) -> float | None:
        """Seconds this token is still refused without running, or None."""
        now = self._clock()
        until = self._tokens.until(authority_id, now)
        return None if until is None else until - now

    def is_heavy(self, user: str) -> bool:
        """True when one of this user's tokens blew the limits within `ttl`."""
        return self._users.until(user, self._clock()) is not None

    def counts(self) -> tuple[int, int]:
        """(tokens, users) remembered now."""
        now = self._clock()
        self._tokens.purge(now)
        self._users.purge(now)
        return len(self._tokens), len(self._users)
