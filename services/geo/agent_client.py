"""A host's tunnel_agent `GET /v1/addresses`: every address of every interface.

One host, one deadline: the whole exchange fits in `--agent-timeout`. A reply over the limit
is cut off as soon as it passes it; one that is not the documented shape is refused whole.
"""

from __future__ import annotations

import asyncio

import aiohttp

from services.common.agent_http import ReplyTooLarge, base_url, check_host, read_limited

from .addresses import Address, AddressesError, parse_agent_addresses

ADDRESSES_PATH = "/v1/addresses"
# A host with a thousand interfaces and addresses answers in ~150 KiB.
MAX_REPLY = 1024 * 1024


class AgentError(Exception):
    """The host's agent gave no usable answer; `reason` is a short label value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


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
    try:
        check_host(hostname)
        async with asyncio.timeout(timeout):
            return await _get(session, url, limit)
    except TimeoutError:
        raise AgentError("timeout", f"{url}: no answer in {timeout:g}s") from None
    except ReplyTooLarge as exc:
        raise AgentError("too_large", f"{url}: {exc}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise AgentError("unreachable", f"{url}: {str(exc)[:200]}") from None
    except ValueError as exc:
        # check_host, or the resolver's IDNA encoding ("..", a label over 63 characters):
        # one host's unusable name must cost that host only.
        raise AgentError(
            "bad_address", f"host name {hostname[:100]!r} is not a usable address: {exc}"
        ) from None
