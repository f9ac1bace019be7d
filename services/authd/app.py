"""authd's aiohttp application: `POST /v1/authenticate` (SPEC section 7)."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from prometheus_client import Histogram

from services.common.app import HEALTH, REGISTRY, create_base_app, read_json
from services.common.errors import BadRequest
from services.common.health import Health
from services.common.logs import clip
from services.common.periodic import Periodic

from .authenticator import Authenticator
from .blown import BlownTokens
from .config import AuthdConfig
from .keys import KeyFormatError, parse_public_key
from .metrics import PREFIX, AuthdCollector
from .pool import VerifierPool, worker_argv
from .revocation_watch import POLL_INTERVAL, RevocationState, RevocationWatcher
from .verdict import Reason, Verdict

log = logging.getLogger("services.authd")

POOL = web.AppKey("pool", VerifierPool)
WATCHER = web.AppKey("watcher", RevocationWatcher)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
COUNTS = web.AppKey("counts", collections.Counter)
DURATION = web.AppKey("duration", Histogram)

# /healthz says "saturated" while logins were refused for want of a worker this recently.
SATURATION_WINDOW = 10.0
CAPACITY_INTERVAL = 1.0
# Answered 503 (the caller may retry), not 401 (the token is bad).
UNAVAILABLE = (Reason.UNAVAILABLE, Reason.BUSY)


def parse_request(body: Any) -> tuple[str, str, str]:
    """(username, password, secret) of a request body, or BadRequest saying what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest('expected a JSON object {"username", "password", "secret"}')
    values = []
    for field in ("username", "password", "secret"):
        value = body.get(field)
        if not isinstance(value, str):
            what = "missing" if value is None else f"a {type(value).__name__}, not a string"
            raise BadRequest(f"{field} is {what}")
        values.append(value)
    username, password, secret = values
    if not username.strip():
        raise BadRequest("username is empty")
    return username, password, secret


async def _decide(app: web.Application, username: str, key_text: str, secret: str) -> Verdict:
    try:
        key = parse_public_key(key_text)
    except KeyFormatError as exc:
        return Verdict(Reason.BAD_KEY, f"bad stored key (the user's PASSWORD): {exc}")
    state = app[WATCHER].state
    if state.unknown:
        # Unreadable since start (e.g. wrong owner): accepting would ignore every revocation.
        return Verdict(
            Reason.UNAVAILABLE,
            f"the revocation file cannot be read ({state.error}); "
            "no login is accepted until it can",
        )
    return await app[AUTHENTICATOR].authenticate(username, key, secret)


async def authenticate(request: web.Request) -> web.Response:
    """Verify a token for oned's auth driver: 200 with the driver line's fields, or 401."""
    app = request.app
    started = time.perf_counter()
    try:
        username, password, secret = parse_request(await read_json(request))
    except BadRequest:
        app[COUNTS][Reason.BAD_REQUEST] += 1
        raise
    key_text = password.strip()
    verdict = await _decide(app, username, key_text, secret)
    app[DURATION].observe(time.perf_counter() - started)
    app[COUNTS][verdict.reason] += 1
    # Never the token: the user (cut and escaped: it is the caller's text), the outcome and why.
    if verdict.valid:
        log.info("accepted user=%s", clip(username))
        return web.json_response({"driver": "biscuit", "username": username, "password": key_text})
    log.warning("rejected user=%s reason=%s: %s", clip(username), verdict.reason, verdict.message)
    _show_capacity(app)  # a few microseconds; /healthz then tells at once
    status = 503 if verdict.reason in UNAVAILABLE else 401
    return web.json_response(
        {"error": verdict.message, "reason": verdict.reason.value}, status=status
    )


def _show_capacity(app: web.Application) -> None:
    """Workers, queue and remembered bombs on /healthz; degraded while logins are refused."""
    scheduler, health = app[POOL].scheduler, app[HEALTH]
    tokens, users = app[AUTHENTICATOR].blown.counts()
    health.details.update(
        workers_busy=scheduler.running,
        verifications_waiting=scheduler.waiting,
        blown_tokens=tokens,
        heavy_users=users,
    )
    reason = scheduler.saturation(SATURATION_WINDOW)
    if reason is None:
        health.ok("verifier_capacity")
    else:
        health.fail("verifier_capacity", reason)


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[POOL].start()
    yield
    await app[POOL].close()


def _revocation_health(health: Health, path: object) -> Callable[[RevocationState], None]:
    def on_revocations(state: RevocationState) -> None:
        health.details["revoked_ids"] = len(state.revocations.ids)
        health.details["revocation_file_status"] = state.status
        if state.status == "error":
            health.fail("revocation_file", f"cannot read {path}: {state.error}")
        else:
            health.ok("revocation_file")

    return on_revocations


def create_app(config: AuthdConfig) -> web.Application:
    """The authd app: routes, self metrics, the worker pool and the revocation watcher."""
    app = create_base_app("authd")
    health = app[HEALTH]
    path = config.revocation_file
    health.details["revocation_file"] = str(path) if path else None
    on_revocations = _revocation_health(health, path)
    app[WATCHER] = RevocationWatcher(path, on_change=on_revocations)
    on_revocations(app[WATCHER].state)
    counts: collections.Counter[Reason] = collections.Counter()
    app[COUNTS] = counts
    app[DURATION] = Histogram(
        f"{PREFIX}_authentication_duration_seconds",
        "Time to answer an authentication request (parse, verify, revocation lookup)",
        registry=app[REGISTRY],
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )

    def on_workers() -> None:
        pool = app[POOL]
        health.details["workers"] = pool.alive
        if pool.alive_fast:
            health.ok("verifier")
        else:
            health.fail("verifier", "no verifier worker process is running")

    app[POOL] = VerifierPool(
        worker_argv(config.limits, config.verify_cpu_limit),
        config.workers,
        cpu_limit=config.verify_cpu_limit,
        per_user=config.user_workers,
        user_queue=config.user_queue,
        queue=config.queue,
        on_change=on_workers,
    )
    app[AUTHENTICATOR] = Authenticator(
        app[POOL],
        lambda: app[WATCHER].state.revocations,
        BlownTokens(config.blown_token_ttl),
    )
    app[REGISTRY].register(
        AuthdCollector(counts, lambda: app[WATCHER].state, app[POOL], app[AUTHENTICATOR])
    )
    app.cleanup_ctx.append(_pool_ctx)
    # The list is read before the first request is served, then every POLL_INTERVAL seconds.
    watch = Periodic(
        "revocation_watch", app[WATCHER].refresh, POLL_INTERVAL, health=health, await_first=True
    )
    app.cleanup_ctx.append(watch.cleanup_ctx)

    async def capacity() -> None:
        _show_capacity(app)

    app.cleanup_ctx.append(Periodic("capacity", capacity, CAPACITY_INTERVAL).cleanup_ctx)
    app.router.add_post("/v1/authenticate", authenticate)
    return app
