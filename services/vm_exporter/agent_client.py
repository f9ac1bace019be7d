"""Host power source adapter: our agent's `/api/v1/vms`, else Scaphandre's `/metrics`.

One host, one deadline: both requests of a host (the 404 fallback included) fit in
`--agent-timeout`. A reply over 16 MiB is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import asyncio
import ipaddress

import aiohttp

from .join import Target
from .readings import HostReading, parse_agent_vms
from .scaphandre import parse_scaphandre

VMS_PATH = "/api/v1/vms"
METRICS_PATH = "/metrics"
# ReadingError (a ValueError), or whatever else a parser trips on in a hostile reply: that
# host is down, the refresh goes on.
_UNPARSABLE = (ValueError, ArithmeticError, RecursionError)
# Characters that would end a URL's host part (or are never in one): not a host name.
_NOT_IN_HOST = frozenset("/?#@[]\\% ")


class AgentError(Exception):
    """A host's power source gave no usable answer; `reason` is a short label value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def base_url(address: str, port: int) -> str:
    """`http://host:port` for a host name, an IPv4 or an IPv6 address."""
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"http://{host}:{port}"


async def _read_limited(resp: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise AgentError("too_large", f"{url}: reply of {resp.content_length} bytes, over {limit}")
    parts, size = [], 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise AgentError("too_large", f"{url}: reply is over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def _get(session: aiohttp.ClientSession, url: str, limit: int) -> tuple[int, bytes]:
    async with session.get(url, allow_redirects=False) as resp:
        if resp.status != 200:
            return resp.status, b""
        return 200, await _read_limited(resp, limit, url)


async def _fetch(
    session: aiohttp.ClientSession, target: Target, port: int, limit: int
) -> HostReading:
    base = base_url(target.address, port)
    status, body = await _get(session, base + VMS_PATH, limit)
    if status == 200:
        try:
            return parse_agent_vms(body)
        except _UNPARSABLE as exc:
            raise AgentError("bad_reply", f"{base}{VMS_PATH}: {exc}") from None
    if status != 404:
        raise AgentError("http_status", f"{base}{VMS_PATH}: HTTP {status}")
    # Not our agent: a Scaphandre started with --qemu answers the same port.
    status, body = await _get(session, base + METRICS_PATH, limit)
    if status != 200:
        raise AgentError(
            "http_status", f"{base}{METRICS_PATH}: HTTP {status} (after a 404 on {VMS_PATH})"
        )
    try:
        return parse_scaphandre(body.decode("utf-8", errors="replace"))
    except _UNPARSABLE as exc:
        raise AgentError("bad_reply", f"{base}{METRICS_PATH}: {exc}") from None


def _check_address(address: str) -> None:
    """ValueError when a host template's HOSTNAME/NAME cannot be a URL's host.

    A typo there ("node1/x", "a b") must not send the request to another host or path.
    """
    host = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    if ":" in host:
        ipaddress.IPv6Address(host)
    elif not host or any(c in _NOT_IN_HOST or not c.isprintable() for c in host):
        raise ValueError("not a host name or address")


async def fetch_host(
    session: aiohttp.ClientSession, target: Target, port: int, *, timeout: float, limit: int
) -> HostReading:
    """One host's reading within `timeout` seconds, or AgentError saying why not."""
    try:
        _check_address(target.address)
        async with asyncio.timeout(timeout):
            return await _fetch(session, target, port, limit)
    except TimeoutError:
        raise AgentError(
            "timeout", f"{base_url(target.address, port)}: no answer in {timeout:g}s"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise AgentError("unreachable", f"{base_url(target.address, port)}: {exc}") from None
    except ValueError as exc:
        # The check above, or the resolver's IDNA encoding ("..", a label over 63 characters):
        # one host's unusable name must cost that host only, never the refresh.
        raise AgentError(
            "bad_address", f"host name {target.address!r} is not a usable address: {exc}"
        ) from None
