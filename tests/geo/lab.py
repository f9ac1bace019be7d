"""geo under test: the real simulator (oned), stand-in agents, geo in-process via create_app.

`geo_lab(tmp_path, fleet, agents)` starts a simulator subprocess with the fleet, the stand-in
tunnel_agents on the hosts' 127.0.x.y addresses, and geo built with the same `create_app` the
command uses, driven with aiohttp's test client. The database is the real DB-IP City Lite;
`expected(ip)` reads it directly with maxminddb, not through geo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import maxminddb
import yaml
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer

import testkit.sim
from services.geo.app import LOCATOR, create_app
from services.geo.config import GeoConfig
from services.geo.database import default_path
from services.geo.dns import Resolver, loop_resolver
from testkit import async_wait_for, free_port_on
from testkit.sim import Sim
from testkit.tunnel_standin import Agents

from .oned_proxy import OnedProxy

ADMIN = "oneadmin:opennebula"


@functools.cache
def reader() -> maxminddb.Reader:
    """The default database, opened directly (not through geo)."""
    return maxminddb.open_database(str(default_path()))


def expected(ip: str) -> tuple[str, str]:
    """(`lat,lon` at 4 decimals, ISO country) for `ip`, read from the database directly."""
    record = reader().get(ip)
    assert record is not None, f"{ip} is not in the database"
    where = record["location"]
    return f"{where['latitude']:.4f},{where['longitude']:.4f}", record["country"]["iso_code"]


def start_sim(tmp_path: Path, fleet: dict[str, Any], *args: str, env: dict | None = None) -> Sim:
    """The simulator with `fleet` on free ports, once its control API answers."""
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    return testkit.sim.start_sim("--fleet", str(path), "--log-level", "warning", *args, env=env)


class OfflineNames(AbstractResolver):
    """Names for connections to agents, without a DNS server: localhost, else not known.

    Test hosts are addressed by 127.0.x.y literals; a name (DNS tests) must never make the
    machine ask its DNS server, nor connect anywhere but loopback.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != "localhost":
            raise OSError(socket.EAI_NONAME, f"{host}: not known (offline test resolver)")
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


async def offline_resolver(name: str) -> list[tuple]:
    """The DNS source without a DNS server: the machine's answer for localhost, else not known."""
    if name != "localhost":
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return await loop_resolver(name)


@dataclasses.dataclass
class Lab:
    """The simulator, the stand-in agents and the geo app under test."""

    sim: Sim
    agents: Agents
    client: TestClient
    config: GeoConfig
    proxy: OnedProxy | None = None

    @property
    def url(self) -> str:
        """geo's base URL, for processes (the shim) to reach it."""
        return str(self.client.make_url("")).rstrip("/")

    @property
    def locator(self):
        return self.client.app[LOCATOR]

    async def reconcile(self) -> None:
        """One more pass over the host pool, run to its end."""
        await self.locator.reconcile()

    async def json(self, path: str) -> tuple[int, Any]:
        resp = await self.client.get(path)
        return resp.status, await resp.json()

    async def report(self, host_id: int) -> dict[str, Any]:
        status, body = await self.json("/v1/hosts")
        assert status == 200, body
        return next(h for h in body["hosts"] if h["id"] == host_id)


def one_auth(tmp_path: Path, session: str = ADMIN) -> Path:
    path = tmp_path / "one_auth"
    path.write_text(session + "\n")
    return path


@contextlib.asynccontextmanager
async def geo_lab(
    tmp_path: Path,
    fleet: dict[str, Any],
    agents: dict[str, Any] | None = None,
    *,
    resolver: Resolver = offline_resolver,
    rpc_url: str | None = None,
    through_proxy: bool = False,
    sim_args: tuple[str, ...] = (),
    sim_env: dict[str, str] | None = None,
    geo_port: int | None = None,
    **overrides: Any,
) -> AsyncIterator[Lab]:
    """Everything of one test, stopped afterwards whatever happens."""
    agents = agents or {}
    addresses = sorted({h["hostname"] for h in fleet.get("hosts", [])} | set(agents))
    port = free_port_on([a for a in addresses if a.startswith("127.")] or ["127.0.0.1"])
    sim = start_sim(tmp_path, fleet, *sim_args, env=sim_env)
    try:
        async with contextlib.AsyncExitStack() as stack:
            stand_ins = await stack.enter_async_context(Agents(port, agents))
            proxy = None
            if through_proxy:
                proxy = await stack.enter_async_context(OnedProxy(sim.rpc_url, ADMIN))
            settings: dict[str, Any] = {
                "one_xmlrpc": rpc_url or (proxy.url if proxy else sim.rpc_url),
                "one_auth": one_auth(tmp_path),
                "one_timeout": 5.0,
                "agent_port": port,
                "agent_timeout": 0.5,
                "dns_timeout": 0.5,
                **overrides,
            }
            config = GeoConfig(**settings)
            app = create_app(config, resolver=resolver, agent_names=OfflineNames())
            server = TestServer(app, host="127.0.0.1", port=geo_port)
            async with TestClient(server) as client:
                lab = Lab(sim, stand_ins, client, config, proxy)
                # The first pass starts with the app; tests count from its end.
                await async_wait_for(
                    lambda: lab.locator.reconciles["ok"] + lab.locator.reconciles["failed"],
                    what="geo's first reconcile",
                )
                yield lab
    finally:
        sim.service.close()
