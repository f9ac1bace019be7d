"""HTTP to a host's agent: the URL of a host template's HOSTNAME, and a bounded body read.

A HOSTNAME comes from a host template an operator typed; a reply comes from a host that may
be broken or hostile. A typo ("node1/x", "a b") must not send a request to another host or
path, and a reply must not grow past a limit in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator

import aiohttp

# Characters that would end a URL's host part (or are never in one): not a host name.
_NOT_IN_HOST = frozenset("/?#@[]\\% ")


class ReplyTooLarge(ValueError):
    """A reply passed the size limit; it was cut off there."""


class AgentError(Exception):
    """A host's agent gave no usable answer; `reason` is a short label value for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@contextlib.asynccontextmanager
async def asking(hostname: str, base: str, timeout: float) -> AsyncIterator[None]:
    """One exchange with a host's agent within `timeout`; every failure as an AgentError.

    Checks `hostname` first: a typo in a template must cost that host only, never reach
    another host or path, and never fail the caller's whole cycle.
    """
    try:
        check_host(hostname)
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        raise AgentError("timeout", f"{base}: no answer in {timeout:g}s") from None
    except ReplyTooLarge as exc:
        raise AgentError("too_large", f"{base}: {exc}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise AgentError("unreachable", f"{base}: {str(exc)[:200]}") from None
    except ValueError as exc:
        # check_host, or the resolver's IDNA encoding ("..", a label over 63 characters).
        raise AgentError(
            "bad_address", f"host name {hostname[:100]!r} is not a usable address: {exc}"
        ) from None


def check_host(address: str) -> None:
    """ValueError when a HOSTNAME/NAME cannot be a URL's host part."""
    host = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    if ":" in host:
        ipaddress.IPv6Address(host)
    elif not host or any(c in _NOT_IN_HOST or not c.isprintable() for c in host):
        raise ValueError("not a host name or address")


def base_url(address: str, port: int) -> str:
    """`http://host:port` for a host name, an IPv4 or an IPv6 address."""
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"http://{host}:{port}"


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ReplyTooLarge as soon as it passes `limit` bytes."""
    if resp.content_length is not None and resp.content_length > limit:
        raise ReplyTooLarge(f"reply of {resp.content_length} bytes, over {limit}")
    parts, size = [], 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise ReplyTooLarge(f"reply is over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)
