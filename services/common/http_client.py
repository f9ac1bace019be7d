"""One aiohttp ClientSession per app, opened and closed as a cleanup context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)


def client_session_ctx(
    timeout: float, *, limit: int = 100
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that keeps `app[HTTP_CLIENT]` open for the app's lifetime."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=60)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout),
            raise_for_status=False,
        )
        app[HTTP_CLIENT] = session
        yield
        await session.close()

    return ctx
