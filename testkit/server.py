"""In-process test servers that run an app exactly as `runner.serve` does."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common.server import ServiceRunner


class AppTestServer(TestServer):
    """aiohttp's `TestServer` on the services' `ServiceRunner` (JSON refusals, SPEC's limits)."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        # TestServer cancels a handler whose client left; `runner.serve` lets it run, as here.
        kwargs["handler_cancellation"] = False
        return ServiceRunner(self.app, **kwargs)


def app_client(app: web.Application) -> TestClient:
    """A test client for `app` served as in production: `async with app_client(app) as c:`."""
    return TestClient(AppTestServer(app))
