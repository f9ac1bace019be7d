"""A host's tunnel_agent `GET /v1/addresses`: every address of every interface.

One host, one deadline: the whole exchange fits in `--agent-timeout`. A reply over the limit
is cut off as soon as it passes it; one that is not the documented shape is refused whole.
"""

from __future__ import annotations

import aiohttp

from services.common.agent_http import AgentError, asking, base_url, read_limited

from .addresses import Address, AddressesError, parse_agent_addresses

ADDRESSES_PATH = "/v1/addresses"
# A host with a thousand interfaces and addresses answers in ~150 KiB.
MAX_REPLY = 1024 * 1024


async def _get(session: aiohttp.ClientSession, url: str, limit: int) -> list[Address]:
    async with session.get(url, allow_redirects=False) as resp:
        if resp.status != 200:
            raise AgentError("http_status", f"{url}: HTTP {resp.status}")
        body = await read_limited(resp, limit)
    try:
        return parse_agent_addresses(body)
    except AddressesError as exc:
        raise AgentError("bad_reply", f"{url}: {exc}") from None


async def fetch_addresses(
    session: aiohttp.ClientSession,
    hostname: str,
    port: int,
    *,
    timeout: float,
    limit: int = MAX_REPLY,
) -> list[Address]:
    """The host's addresses as its agent reports them, or AgentError saying why not."""
    url = base_url(hostname, port) + ADDRESSES_PATH
    async with asking(hostname, url, timeout):
        return await _get(session, url, limit)
