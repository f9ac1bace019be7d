"""The shared ClientSession context: open for the app's life, real timeouts, closed after."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.common.http_client import HTTP_CLIENT, client_session_ctx
from testkit import free_port


async def test_session_lives_with_the_app_and_enforces_its_timeout():
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def fast(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    peer = web.Application()
    peer.router.add_get("/slow", slow)
    peer.router.add_get("/fast", fast)
    app = web.Application()
    app.cleanup_ctx.append(client_session_ctx(timeout=0.3))
    async with TestServer(peer) as server:
        runner = web.AppRunner(app)
        await runner.setup()
        session = app[HTTP_CLIENT]
        async with session.get(server.make_url("/fast")) as resp:
            assert await resp.text() == "ok"
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(server.make_url("/slow")) as resp:
                await resp.text()
        assert loop.time() - started < 2
        await runner.cleanup()
        assert session.closed
        with pytest.raises(RuntimeError):
            async with session.get(server.make_url("/fast")):
                pass


async def test_unreachable_peer_is_a_client_error():
    app = web.Application()
    app.cleanup_ctx.append(client_session_ctx(timeout=1))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with app[HTTP_CLIENT].get(f"http://127.0.0.1:{free_port()}/"):
                pass
    finally:
        await runner.cleanup()
