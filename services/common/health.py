"""What `/healthz` reports: ok, or degraded with the reasons of each failing dependency."""

from __future__ import annotations

import time
from typing import Any


class Health:
    """Named checks that a service marks failing or ok; `/healthz` renders `report()`."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.started = time.time()
        self._failing: dict[str, str] = {}
        self.details: dict[str, Any] = {}

    def fail(self, check: str, reason: str) -> None:
        """Mark a dependency as failing with a reason an operator can act on."""
        self._failing[check] = reason

    def ok(self, check: str) -> None:
        """Mark a dependency as healthy again."""
        self._failing.pop(check, None)

    @property
    def healthy(self) -> bool:
        return not self._failing

    @property
    def failing(self) -> dict[str, str]:
        """The failing checks and their reasons (a copy)."""
        return dict(self._failing)

    def report(self) -> dict[str, Any]:
        """The `/healthz` body: `status`, `reason` when degraded, and service details."""
        body: dict[str, Any] = {
            "status": "ok" if self.healthy else "degraded",
            "service": self.service,
            "uptime_s": round(time.time() - self.started, 1),
        }
        if self._failing:
            body["reason"] = "; ".join(f"{k}: {v}" for k, v in sorted(self._failing.items()))
            body["failing"] = dict(self._failing)
        body.update(self.details)
        return body
