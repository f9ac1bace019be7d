"""create_app(config): the tunnel routes, the netlink thread, the peer client and the sweep."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from services.common.app import HEALTH, REGISTRY, create_base_app, read_json
from services.common.auth import read_token_file
from services.common.errors import BadRequest, ConfigError, NotFound, ServiceError
from services.common.http_client import HTTP_CLIENT, client_session_ctx
from services.common.logs import clip
from services.common.periodic import Periodic

from . import netlink
from .bodies import parse_accept, parse_open
from .config import TunnelAgentConfig
from .errors import InUse, KernelError, PeerFailed, PoolExhausted
from .halves import conflicting_routes, owned
from .metrics import TunnelCollector
from .naming import valid_id
from .netlink import Netlink
from .peers import PeerClient
from .tunnels import Tunnels

log = logging.getLogger("services.tunnel_agent")

SERVICE = "tunnel_agent"
TUNNELS = web.AppKey("tunnels", Tunnels)
SWEEPER = web.AppKey("sweeper", Periodic)


def _result_of(exc: BaseException) -> str:
    """The `result` label of a failed create."""
    if isinstance(exc, InUse):
        return "conflict"
    if isinstance(exc, BadRequest):
        return "bad_request"
    if isinstance(exc, PeerFailed):
        return "peer_error"
    if isinstance(exc, PoolExhausted):
        return "exhausted"
    if isinstance(exc, KernelError):
        return "kernel_error"
    return "error"


def _tunnel_id(request: web.Request) -> str:
    tunnel_id = request.match_info["id"]
    if not valid_id(tunnel_id):
        raise NotFound(f"no tunnel {clip(tunnel_id, 40)} (ids are 16 hex digits)")
    return tunnel_id


async def open_tunnel(request: web.Request) -> web.Response:
    """`POST /v1/tunnels {"vm_id", "peer"}`: 201 with the new tunnel, 200 with an existing one."""
    tunnels = request.app[TUNNELS]
    try:
        vm_id, peer = parse_open(await read_json(request))
        body, created = await tunnels.open(vm_id, peer)
    except Exception as exc:
        tunnels.counts[("create", "src", _result_of(exc))] += 1
        if isinstance(exc, ServiceError) and exc.status < 500:
            log.warning("tunnel refused: %s", exc.message)
        raise
    tunnels.counts[("create", "src", "created" if created else "renewed")] += 1
    return web.json_response(body, status=201 if created else 200)


async def accept_tunnel(request: web.Request) -> web.Response:
    """`PUT /v1/tunnels/<id>` from the source's agent; 409 `{"conflict": "vni"|"subnet"|"id"}`."""
    tunnels = request.app[TUNNELS]
    try:
        tunnel_id = _tunnel_id(request)
        spec = parse_accept(await read_json(request), tunnels.config.overlay_pool, tunnels.clock())
        body, created = await tunnels.accept(tunnel_id, spec)
    except InUse as exc:
        tunnels.counts[("create", "dst", "conflict")] += 1
        return web.json_response(
            {"error": exc.message, "conflict": exc.what, **tunnels.in_use()}, status=409
        )
    except Exception as exc:
        tunnels.counts[("create", "dst", _result_of(exc))] += 1
        raise
    tunnels.counts[("create", "dst", "created" if created else "renewed")] += 1
    return web.json_response(body, status=201 if created else 200)


async def close_tunnel(request: web.Request) -> web.Response:
    """`DELETE /v1/tunnels/<id>[?scope=local]`: both ends (or only ours); idempotent."""
    tunnel_id = _tunnel_id(request)
    scope = request.query.get("scope", "both")
    if scope not in ("both", "local"):
        raise BadRequest("scope must be both or local")
    return web.json_response(await request.app[TUNNELS].close(tunnel_id, both=scope == "both"))


async def list_tunnels(request: web.Request) -> web.Response:
    tunnels = request.app[TUNNELS]
    halves = await tunnels.read()
    now = tunnels.clock()
    return web.json_response({"tunnels": [h.as_json(now) for h in halves]})


async def get_tunnel(request: web.Request) -> web.Response:
    """One half; a half still being built answers too, so a peer's sweep never removes it."""
    tunnels = request.app[TUNNELS]
    tunnel_id = _tunnel_id(request)
    if tunnel_id in tunnels.creating:
        return web.json_response(
            {"id": tunnel_id, "vni": tunnels.creating[tunnel_id], "state": "creating"}
        )
    half = await tunnels.find(tunnel_id, thorough=True)
    if half is None:
        raise NotFound(f"no tunnel {tunnel_id} on this host")
    return web.json_response(half.as_json(tunnels.clock()))


async def list_addresses(request: web.Request) -> web.Response:
    """Every address of every interface with its scope (geo reads the public ones)."""
    return web.json_response({"addresses": await request.app[TUNNELS].addresses()})


def check_pool(nl: Netlink, config: TunnelAgentConfig) -> None:
    """Refuse to start when the overlay pool overlaps a route this host already has."""
    try:
        links = nl.run_sync(netlink.read_links)
        routes = nl.run_sync(netlink.read_routes)
    except KernelError as exc:
        raise ConfigError(f"cannot read this host's interfaces and routes: {exc.message}") from None
    own = {link.index for link in links if owned(link)}
    clash = conflicting_routes(config.overlay_pool, routes, own)
    if clash:
        names = {link.index: link.name for link in links}
        shown = "; ".join(r.describe(names) for r in clash[:5])
        raise ConfigError(
            f"--overlay-pool {config.overlay_pool} overlaps route(s) of this host: {shown}; "
            "choose a pool no route uses"
        )


def create_app(
    config: TunnelAgentConfig,
    *,
    clock: Callable[[], float] = time.time,
    netlink_factory: Callable[[], Netlink] = Netlink,
) -> web.Application:
    """The tunnel_agent app; refuses (ConfigError) without a token or with a clashing pool."""
    token = read_token_file(config.token_file) if config.token_file else None
    if token is None:
        log.warning("running with --insecure-no-auth: anyone reaching the port can make tunnels")
    nl = netlink_factory()
    try:
        check_pool(nl, config)
    except BaseException:
        nl.close()
        raise
    app = create_base_app(SERVICE, token=token)
    health = app[HEALTH]
    health.details.update(overlay_pool=str(config.overlay_pool), vni_range=str(config.vni_range))

    def peers() -> PeerClient:
        return PeerClient(app[HTTP_CLIENT], config.peer_port, token, config.peer_timeout)

    tunnels = Tunnels(config, nl, peers, clock=clock)
    app[TUNNELS] = tunnels
    sweeper = Periodic("sweep", tunnels.sweep, config.sweep_interval, health=health, check="sweep")
    app[SWEEPER] = sweeper
    app[REGISTRY].register(TunnelCollector(tunnels, lambda: sweeper))

    async def netlink_ctx(_app: web.Application) -> AsyncIterator[None]:
        await tunnels.read()  # the index of our halves, before the first request
        yield
        nl.close()

    # Order: the netlink thread outlives the HTTP client, which outlives the sweep using both.
    app.cleanup_ctx.append(netlink_ctx)
    app.cleanup_ctx.append(client_session_ctx(config.peer_timeout + 1))
    app.cleanup_ctx.append(sweeper.cleanup_ctx)
    app.router.add_post("/v1/tunnels", open_tunnel)
    app.router.add_get("/v1/tunnels", list_tunnels)
    app.router.add_get("/v1/tunnels/{id}", get_tunnel)
    app.router.add_put("/v1/tunnels/{id}", accept_tunnel)
    app.router.add_delete("/v1/tunnels/{id}", close_tunnel)
    app.router.add_get("/v1/addresses", list_addresses)
    return app
