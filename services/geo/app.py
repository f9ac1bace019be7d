"""create_app(config): geo's routes, oned and agent sessions, the reconcile and the file watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver

from services.common.app import HEALTH, REGISTRY, create_base_app
from services.common.auth import read_token_file
from services.common.errors import BadRequest, ConfigError
from services.common.health import Health
from services.common.oned import Oned, read_one_auth
from services.common.periodic import Periodic

from .collectors import GeoCollector
from .config import GeoConfig
from .database import FOUND, INVALID, MAX_TEXT, Database, DatabaseError, default_path
from .dns import Resolver, loop_resolver
from .events import host_from_event
from .locator import Locator

SERVICE = "geo"
DATABASE = web.AppKey("database", Database)
LOCATOR = web.AppKey("locator", Locator)


def open_database(config: GeoConfig) -> Database:
    """The database of `--mmdb` or the default one; ConfigError (exit 2) when unusable."""
    try:
        return Database(config.mmdb or default_path())
    except DatabaseError as exc:
        raise ConfigError(str(exc)) from None


async def watch_database(database: Database, health: Health) -> None:
    """One look at the database file: switch to a replaced one, say on /healthz if it failed."""
    fresh = await asyncio.to_thread(database.changed_file)
    if fresh is not None:
        database.switch(fresh)
        health.details["database"] = fresh.label
    if database.problem:
        health.fail("database", database.problem)
    else:
        health.ok("database")


def _running(
    config: GeoConfig, auth: str, agent_names: AbstractResolver | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Cleanup context: oned and agent sessions, the reconcile and the database watch."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        locator, health, database = app[LOCATOR], app[HEALTH], app[DATABASE]
        connector = aiohttp.TCPConnector(
            limit=config.agent_concurrency, ttl_dns_cache=60, resolver=agent_names
        )
        async with (
            aiohttp.ClientSession(connector=connector) as agents,
            Oned.connect(config.one_xmlrpc, auth, timeout=config.one_timeout) as oned,
        ):
            locator.attach(oned, agents)
            reconcile = Periodic(
                "reconcile", locator.reconcile, config.reconcile_interval, health=health
            )
            watch = Periodic(
                "database watch",
                lambda: watch_database(database, health),
                config.mmdb_check_interval,
                health=health,
                run_first=False,
            )
            async with reconcile, watch:
                yield
                await locator.close()
        database.close()

    return ctx


async def post_host_event(request: web.Request) -> web.Response:
    """`POST /v1/events/host`: the hook's base64 `$TEMPLATE`; the host is re-read and checked."""
    host = host_from_event(await request.read())
    queued = request.app[LOCATOR].submit(host.id)
    return web.json_response({"host_id": host.id, "queued": queued}, status=202)


async def get_lookup(request: web.Request) -> web.Response:
    """`GET /v1/lookup?ip=X`: what the database says about one address."""
    text = request.query.get("ip")
    if text is None or not text.strip():
        raise BadRequest("give the address to look up as ?ip=ADDRESS")
    if len(text) > MAX_TEXT:
        raise BadRequest(f"ip is {len(text)} characters long; not an IP address")
    database = request.app[DATABASE]
    result = database.lookup(text.strip())
    label = database.current.label
    if result.result == INVALID:
        raise BadRequest(result.reason)
    if result.result != FOUND or result.location is None:
        return web.json_response(
            {"error": result.reason, "reason": result.result, "ip": result.ip, "database": label},
            status=404,
        )
    where = result.location
    return web.json_response(
        {
            "ip": result.ip,
            "latitude": where.latitude,
            "longitude": where.longitude,
            "city": where.city,
            "country": where.country,
            "country_name": where.country_name,
            "database": label,
        }
    )


async def get_hosts(request: web.Request) -> web.Response:
    """`GET /v1/hosts`: per host, its addresses and their sources, what was found and done."""
    locator = request.app[LOCATOR]
    reports = sorted(locator.reports.values(), key=lambda r: r.host_id)
    return web.json_response(
        {
            "hosts": [report.as_json() for report in reports],
            "database": request.app[DATABASE].current.label,
        }
    )


def create_app(
    config: GeoConfig,
    *,
    resolver: Resolver = loop_resolver,
    agent_names: AbstractResolver | None = None,
) -> web.Application:
    """geo: base routes, the lookup, event and hosts routes, reconcile and database watch.

    `resolver` answers the DNS source (HOSTNAME's addresses); `agent_names` resolves host
    names for connections to the agents (aiohttp's default: the loop's getaddrinfo too).
    Tests give both stand-ins, so that no name is ever sent to a DNS server from a test.
    """
    auth = read_one_auth(config.one_auth)
    token = read_token_file(config.token_file) if config.token_file else None
    database = open_database(config)
    app = create_base_app(SERVICE, token=token)
    app[DATABASE] = database
    app[LOCATOR] = Locator(config, database, app[HEALTH], resolver=resolver)
    app[HEALTH].details["database"] = database.current.label
    app[REGISTRY].register(GeoCollector(database, lambda: app.get(LOCATOR)))
    app.cleanup_ctx.append(_running(config, auth, agent_names))
    app.router.add_post("/v1/events/host", post_host_event)
    app.router.add_get("/v1/lookup", get_lookup)
    app.router.add_get("/v1/hosts", get_hosts)
    return app
