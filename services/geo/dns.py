"""DNS of a host's HOSTNAME, through the event loop's resolver, within a deadline."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.common.agent_http import check_host

from .addresses import DNS, Address, checked, from_resolver, parse_address

Resolver = Callable[[str], Awaitable[Sequence[tuple[Any, ...]]]]


class DnsError(Exception):
    """The name did not resolve; the message says why."""


async def loop_resolver(name: str) -> Sequence[tuple[Any, ...]]:
    """`getaddrinfo` of the running loop (a thread of the loop's default executor)."""
    loop = asyncio.get_running_loop()
    return await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)


async def resolve(
    name: str, *, timeout: float, resolver: Resolver = loop_resolver
) -> list[Address]:
    """The addresses `name` resolves to (an address literal is itself), or DnsError."""
    try:
        return [checked(parse_address(name), DNS)]
    except ValueError:
        pass
    try:
        check_host(name)
        async with asyncio.timeout(timeout):
            infos = await resolver(name)
    except TimeoutError:
        raise DnsError(f"{name[:100]!r} did not resolve in {timeout:g}s") from None
    except socket.gaierror as exc:
        raise DnsError(f"{name[:100]!r} does not resolve: {exc.strerror or exc}") from None
    except (OSError, ValueError) as exc:
        # ValueError: check_host, or IDNA refusing the name (a label over 63 characters).
        raise DnsError(f"{name[:100]!r} cannot be resolved: {str(exc)[:120]}") from None
    return from_resolver(infos)
