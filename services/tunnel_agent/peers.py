"""Talking to the peer's agent: create, renew, look up and remove its half (bounded in time)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from typing import Any

import aiohttp

from .errors import PeerFailed, PeerTimeout
from .halves import IPAddress

# A peer's answer is a small JSON object; anything bigger is not an agent talking.
MAX_REPLY = 64 * 1024


def peer_base(address: IPAddress, port: int) -> str:
    host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    return f"http://{host}:{port}"


class PeerClient:
    """Calls to peers' `/v1/tunnels/<id>`; every call ends within `timeout` seconds."""

    def __init__(
        self, session: aiohttp.ClientSession, port: int, token: str | None, timeout: float
    ) -> None:
        self._session = session
        self._port = port
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call(
        self, method: str, peer: IPAddress, path: str, body: dict | None = None
    ) -> tuple[int, Any]:
        """(status, JSON body or None) of one request; PeerFailed/PeerTimeout when it fails."""
        url = peer_base(peer, self._port) + path
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.request(
                    method, url, json=body, headers=self._headers, allow_redirects=False
                ) as resp:
                    raw = await resp.content.read(MAX_REPLY + 1)
                    status = resp.status
        except TimeoutError:
            raise PeerTimeout(
                f"peer agent {peer} did not answer {method} within {self._timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise PeerFailed(f"peer agent {peer} unreachable: {exc}") from None
        if len(raw) > MAX_REPLY:
            raise PeerFailed(f"peer agent {peer} answered over {MAX_REPLY} bytes")
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return status, data


def error_of(status: int, data: Any) -> str:
    """The peer's own error text, for our error message."""
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"HTTP {status}: {data['error'][:300]}"
    return f"HTTP {status}"
