"""A stand-in for tunnel_agent's `GET /v1/addresses`, one per simulated host, in-process.

tunnel_agent is built on another branch; until it is on main this serves exactly the reply
SPEC section 8 and its issue fix: `{"addresses": [{"interface", "address", "prefixlen",
"family": "inet"|"inet6", "scope": "global"|"site"|"link"|"host"}]}`. One aiohttp app listens
on one port of many 127.0.x.y addresses (each simulated host's HOSTNAME) and answers by the
address a request came in on. A host can also misbehave: slow, garbage, huge, deeply nested,
an HTTP error, or no listener at all. After the merge,
`tests/geo/test_service.py::test_agent_reports_a_public_interface` is the one to point at a
real tunnel_agent. Tests run it in-process; `python -m testkit.tunnel_standin --port P FILE`
serves a JSON file's `{address: [entries] | fault}` in a process of its own (the benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from aiohttp import web

SLOW = "slow"
GARBAGE = "garbage"
HUGE = "huge"
HUGE_CHUNKED = "huge_chunked"
DEEP = "deep"
HTTP_500 = "http500"
WRONG_SHAPE = "wrong_shape"
DOWN = "down"  # no listener on that address at all


def entry(
    address: str, interface: str = "eth0", prefixlen: int | None = None, scope: str = "global"
) -> dict[str, Any]:
    """One `/v1/addresses` item, as tunnel_agent's netlink reader writes it."""
    ip = ipaddress.ip_address(address)
    return {
        "interface": interface,
        "address": str(ip),
        "prefixlen": prefixlen if prefixlen is not None else (24 if ip.version == 4 else 64),
        "family": "inet" if ip.version == 4 else "inet6",
        "scope": scope,
    }


def kernel_addresses(netns: str | None = None) -> list[dict[str, Any]]:
    """What tunnel_agent reports for a network namespace (None: this one): every address.

    Read from the kernel with `ip -j addr` (iproute2's JSON of the same netlink dump), mapped
    to the agent's fields the way its reader maps them.
    """
    out = subprocess.run(
        ["ip", *(["-n", netns] if netns else []), "-j", "addr", "show"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    addresses = []
    for link in json.loads(out):
        for info in link.get("addr_info", []):
            addresses.append(
                {
                    "interface": link["ifname"],
                    "address": info["local"],
                    "prefixlen": info["prefixlen"],
                    "family": info["family"],
                    "scope": info["scope"],
                }
            )
    return addresses


class Agents:
    """The stand-in agents of several hosts: `behaviour[address]` is a list or a fault name."""

    def __init__(self, port: int, behaviour: dict[str, Any]) -> None:
        self.port = port
        self.behaviour = dict(behaviour)
        self.requests: dict[str, int] = {}
        self.slow_waiting = 0  # slow requests held right now, and the most at once
        self.slow_most = 0
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> Agents:
        app = web.Application()
        app.router.add_get("/v1/addresses", self._addresses)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        for address, what in self.behaviour.items():
            if what != DOWN:
                await web.TCPSite(self._runner, address, self.port).start()
        return self

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Agents:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _addresses(self, request: web.Request) -> web.StreamResponse:
        local = request.transport.get_extra_info("sockname")[0] if request.transport else ""
        self.requests[local] = self.requests.get(local, 0) + 1
        what = self.behaviour.get(local)
        if isinstance(what, list):
            return web.json_response({"addresses": what})
        if what == SLOW:
            self.slow_waiting += 1
            self.slow_most = max(self.slow_most, self.slow_waiting)
            try:
                await self._release.wait()
            finally:
                self.slow_waiting -= 1
            return web.json_response({"addresses": []})
        if what == GARBAGE:
            return web.Response(body=b"\x00\xffnot json at all{", content_type="application/json")
        if what == HUGE:
            return web.Response(body=b" " * (3 * 1024 * 1024), content_type="application/json")
        if what == HUGE_CHUNKED:
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                for _ in range(128):  # 8 MiB at most, unless the client hangs up first
                    await resp.write(b"[" * 65536)
            except (ConnectionError, RuntimeError):
                pass
            return resp
        if what == DEEP:
            return web.Response(body=b'{"addresses": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
        if what == HTTP_500:
            return web.json_response({"error": "broken"}, status=500)
        if what == WRONG_SHAPE:
            bad = [{"interface": "eth0", "address": "8.8.8.8", "prefixlen": 24, "family": "inet6"}]
            return web.json_response({"addresses": bad})
        return web.json_response({"error": "no such host here"}, status=404)


async def _serve(port: int, behaviour: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Agents(port, behaviour):
        print(f"serving {len(behaviour)} stand-in agents on port {port}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="stand-in tunnel_agents for geo's tests")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("behaviour", type=Path, help="JSON: {address: [entries] or a fault}")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, json.loads(args.behaviour.read_text())))


if __name__ == "__main__":
    main()
