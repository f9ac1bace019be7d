"""One host's power source over real sockets: replies streamed without a Content-Length."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from services.vm_exporter.agent_client import AgentError, fetch_host
from services.vm_exporter.config import MAX_AGENT_REPLY
from services.vm_exporter.join import Target
from testkit import free_port

CHUNK = b"0," * (1 << 15)  # 64 KiB


async def _streaming_agent(path: str, total: int):
    """An agent that answers `path` with `total` bytes, chunked (no Content-Length)."""
    sent = {"bytes": 0}

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            while sent["bytes"] < total:
                await resp.write(CHUNK)
                sent["bytes"] += len(CHUNK)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass  # the exporter hung up, as it should
        return resp

    app = web.Application()
    app.router.add_get(path, stream)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port, sent


@pytest.mark.parametrize("path", ["/api/v1/vms", "/metrics"])
async def test_a_reply_streamed_past_16_mib_is_cut_off_and_the_host_is_down(path):
    runner, port, sent = await _streaming_agent(path, 4 * MAX_AGENT_REPLY)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(AgentError) as info:
                await fetch_host(
                    session, Target(1, "127.0.0.1"), port, timeout=30, limit=MAX_AGENT_REPLY
                )
    finally:
        await runner.cleanup()
    assert info.value.reason == "too_large"
    # Read up to the limit, not to the end of what the agent would send.
    assert sent["bytes"] < 2 * MAX_AGENT_REPLY
