"""Host power source adapter: our agent's `/api/v1/vms`, else Scaphandre's `/metrics`.

One host, one deadline: both requests of a host (the 404 fallback included), and the parsing
of the reply as it streams in, fit in `--agent-timeout`. A reply over 16 MiB is cut off as
soon as it passes the limit; a reply that breaks its format is dropped at the first bad line.
"""

from __future__ import annotations

import asyncio
from collections import deque

import aiohttp

from services.common.agent_http import AgentError, asking, base_url

from .agent_vms import AgentVmsReader
from .join import Target
from .readings import HostReading, StreamReader
from .scaphandre import ScaphandreReader

VMS_PATH = "/api/v1/vms"
METRICS_PATH = "/metrics"
# Bytes parsed between two yields to the event loop (a few ms of parsing at most).
CHUNK = 64 * 1024
# ReadingError (a ValueError), or whatever else a parser trips on in a hostile reply: that
# host is down, the refresh goes on.
_UNPARSABLE = (ValueError, ArithmeticError, RecursionError)


class Turns:
    """The hosts' parsing steps take turns: at most one chunk is parsed per event-loop turn.

    Each reply is parsed one chunk at a time, but with every host yielding after each chunk a
    loop turn would still run one chunk of every host being read (8 hosts x 3 ms), and a
    scrape needs a few turns. Taken in turns, a loop turn costs one chunk however many hosts
    send large replies at once, and the hosts are served round-robin.
    """

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._scheduled = False

    async def take(self) -> None:
        """Wait for this task's turn to parse one chunk."""
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        self._waiting.append(turn)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._give)
        await turn

    def _give(self) -> None:
        self._scheduled = False
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():  # a host that timed out while waiting gave its turn up
                turn.set_result(None)
                break
        if self._waiting:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._give)


async def _read_into(
    resp: aiohttp.ClientResponse, reader: StreamReader, limit: int, url: str, turns: Turns | None
) -> HostReading:
    """Stream the body into `reader`, one chunk at a time, giving the loop back before each."""
    if resp.content_length is not None and resp.content_length > limit:
        raise AgentError("too_large", f"{url}: reply of {resp.content_length} bytes, over {limit}")
    size = 0
    try:
        async for chunk in resp.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > limit:
                raise AgentError("too_large", f"{url}: reply is over {limit} bytes")
            # Buffered chunks come back without a pause: yield, so that scrapes and the other
            # hosts' replies go on while a 16 MiB one is parsed.
            if turns is None:
                await asyncio.sleep(0)
            else:
                await turns.take()
            reader.feed(chunk)
        return reader.close()
    except _UNPARSABLE as exc:
        raise AgentError("bad_reply", f"{url}: {exc}") from None


async def _fetch(
    session: aiohttp.ClientSession, target: Target, port: int, limit: int, turns: Turns | None
) -> HostReading:
    base = base_url(target.address, port)
    async with session.get(base + VMS_PATH, allow_redirects=False) as resp:
        if resp.status == 200:
            return await _read_into(resp, AgentVmsReader(), limit, base + VMS_PATH, turns)
        if resp.status != 404:
            raise AgentError("http_status", f"{base}{VMS_PATH}: HTTP {resp.status}")
    # Not our agent: a Scaphandre started with --qemu answers the same port.
    async with session.get(base + METRICS_PATH, allow_redirects=False) as resp:
        if resp.status != 200:
            raise AgentError(
                "http_status",
                f"{base}{METRICS_PATH}: HTTP {resp.status} (after a 404 on {VMS_PATH})",
            )
        return await _read_into(resp, ScaphandreReader(), limit, base + METRICS_PATH, turns)


async def fetch_host(
    session: aiohttp.ClientSession,
    target: Target,
    port: int,
    *,
    timeout: float,
    limit: int,
    turns: Turns | None = None,
) -> HostReading:
    """One host's reading within `timeout` seconds, or AgentError saying why not.

    Hosts read at the same time share `turns`, so that together they parse one chunk per
    event-loop turn.
    """
    async with asking(target.address, base_url(target.address, port), timeout):
        return await _fetch(session, target, port, limit, turns)
