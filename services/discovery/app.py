"""create_app(config): discovery's routes, the oned session, the reconcile loop."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from services.common.app import HEALTH, REGISTRY, create_base_app
from services.common.auth import read_token_file
from services.common.errors import BadRequest, ConfigError, NotFound, Unavailable
from services.common.logs import clip
from services.common.oned import Oned, read_one_auth
from services.common.periodic import Periodic

from .config import DiscoveryConfig
from .events import KINDS, BadEvent, event_id
from .metrics import DiscoveryCollector
from .reload import reload_command, reload_http
from .service import Discovery

log = logging.getLogger("services.discovery")

SERVICE = "discovery"
DISCOVERY = web.AppKey("discovery", Discovery)
SD_TYPE = "application/json"


def _check_promtool(config: DiscoveryConfig) -> None:
    if config.config_check and shutil.which(config.promtool) is None:
        raise ConfigError(
            f"promtool not found ({config.promtool!r}): install Prometheus' promtool "
            "(Debian: apt-get install prometheus), give --promtool PATH, or run with "
            "--no-config-check (YAML checks only)"
        )


def _resources(
    config: DiscoveryConfig, auth: str
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Cleanup context: the oned and Prometheus sessions, the discovery core, the reconcile."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with Oned.connect(config.one_xmlrpc, auth, timeout=config.one_timeout) as oned:
            async with aiohttp.ClientSession() as prometheus:
                reload = None
                if config.reload == "http":

                    async def reload() -> None:
                        await reload_http(prometheus, config.prometheus_url)

                elif config.reload == "command":

                    async def reload() -> None:
                        await reload_command(config.reload_command)

                discovery = Discovery(config, oned, app[HEALTH], reload)
                app[DISCOVERY] = discovery
                app[REGISTRY].register(DiscoveryCollector(discovery))
                periodic = Periodic(
                    "reconcile",
                    discovery.reconcile,
                    config.reconcile_interval,
                    health=app[HEALTH],
                    check="reconcile",
                )
                async with periodic:
                    yield
                await discovery.close()

    return ctx


async def post_event(request: web.Request) -> web.Response:
    """`POST /v1/events/{vm,host}`: the hook's base64 $TEMPLATE; the object is re-read now."""
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise NotFound(
            f"no route POST {request.path}; events are /v1/events/vm and /v1/events/host"
        )
    discovery = request.app[DISCOVERY]
    body = await request.read()
    try:
        oid = event_id(kind, body)
    except BadEvent as exc:
        discovery.stats.events[(kind, "invalid")] += 1
        log.warning("refused %s event: %s", kind, clip(str(exc), 300))
        raise BadRequest(str(exc)) from None
    reply = await discovery.event(kind, oid)
    status = 202 if reply["result"] == "queued" else 200
    return web.json_response(reply, status=status)


async def get_targets(request: web.Request) -> web.Response:
    """`GET /v1/targets`: the current targets of every owned job."""
    discovery = request.app[DISCOVERY]
    jobs = {job: [g.as_json() for g in discovery.groups(job)] for job in discovery.jobs}
    return web.json_response(
        {"mode": discovery.config.mode, "synced": discovery.synced, "jobs": jobs}
    )


async def get_sd(request: web.Request) -> web.Response:
    """`GET /v1/sd/{job}`: Prometheus' http_sd document of one job (`[]` when empty)."""
    discovery = request.app[DISCOVERY]
    job = request.match_info["job"]
    if job not in discovery.jobs:
        raise NotFound(
            f"job {clip(job, 80)} is not one discovery owns ({', '.join(discovery.jobs)})"
        )
    if not discovery.synced:
        # Prometheus keeps the targets it has when http_sd fails; [] would drop them all.
        raise Unavailable("no reconcile with oned has succeeded yet")
    return web.Response(body=discovery.document(job), content_type=SD_TYPE)


def create_app(config: DiscoveryConfig) -> web.Application:
    """The discovery service: events, targets, http_sd, self metrics and the reconcile loop."""
    auth = read_one_auth(config.one_auth)
    token = read_token_file(config.token_file) if config.token_file else None
    _check_promtool(config)
    app = create_base_app(SERVICE, token=token)
    app[HEALTH].details.update({"mode": config.mode, "jobs": list(config.jobs)})
    app.cleanup_ctx.append(_resources(config, auth))
    app.router.add_post("/v1/events/{kind}", post_event)
    app.router.add_get("/v1/targets", get_targets)
    app.router.add_get("/v1/sd/{job}", get_sd)
    return app
