"""At most one log line per period for an event an outsider can repeat at will."""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    """Lets one event through per `period` seconds and counts the ones it held back.

    A flood of refused requests from the network must not fill the disk with log lines: the
    first event is logged, the next ones within `period` are only counted, and the next line
    says how many were held back. Time comes from `clock`, so tests step it.
    """

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not period > 0:
            raise ValueError(f"period must be positive, got {period!r}")
        self.period = period
        self._clock = clock
        self._last: float | None = None
        self._held = 0

    def admit(self) -> int | None:
        """Count one event: None when it is held back, else how many were held back before it."""
        now = self._clock()
        if self._last is not None and now - self._last < self.period:
            self._held += 1
            return None
        held, self._held, self._last = self._held, 0, now
        return held

    def drain(self) -> int:
        """How many events were held back since the last one let through; resets the count."""
        held, self._held = self._held, 0
        return held
