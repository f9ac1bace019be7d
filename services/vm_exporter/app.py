"""create_app(config): the exporter's routes, HTTP clients and background refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from services.common.app import HEALTH, PRODUCT_METRICS, REGISTRY, create_base_app
from services.common.oned import Oned, read_one_auth
from services.common.periodic import Periodic

from .carbon import Grid
from .carbon_sources import OperatorFile, load_grid
from .collectors import ExporterCollector
from .config import ExporterConfig
from .refresh import Refresher, StateBox

SERVICE = "vm_exporter"
BOX = web.AppKey("state_box", StateBox)
REFRESHER = web.AppKey("refresher", Refresher)


def _refreshing(
    config: ExporterConfig, auth: str, grid: Grid
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Cleanup context: the oned and agent sessions and the refresh cycles, for the app's life."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # One connection pool per kind: the agents' is bounded by --agent-concurrency; oned's
        # is the shared adapter's (a fresh connection per call).
        async with (
            Oned.connect(config.one_xmlrpc, auth, timeout=config.one_timeout) as oned,
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=config.agent_concurrency, ttl_dns_cache=300, force_close=False
                ),
            ) as agents_session,
        ):
            operator = OperatorFile(config.carbon_data, grid, app[HEALTH])
            refresher = Refresher(
                config, oned, agents_session, app[BOX], app[HEALTH], grid, operator
            )
            app[REFRESHER] = refresher
            periodic = Periodic(
                "refresh", refresher.step, config.refresh_interval, health=app[HEALTH]
            )
            async with periodic:
                yield

    return ctx


def create_app(config: ExporterConfig) -> web.Application:
    """The exporter: base routes, product /metrics, self metrics and the refresh task."""
    auth = read_one_auth(config.one_auth)
    app = create_base_app(SERVICE)
    box = StateBox()
    app[BOX] = box
    # The product text is rendered once per refresh; self metrics follow it.
    app[PRODUCT_METRICS] = lambda: box.state.text
    app[REGISTRY].register(ExporterCollector(lambda: box.state))
    app.cleanup_ctx.append(_refreshing(config, auth, load_grid()))
    return app
