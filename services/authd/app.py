"""authd's aiohttp application: `POST /v1/authenticate` (SPEC section 7)."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import Histogram

from services.common.app import HEALTH, REGISTRY, create_base_app, read_json
from services.common.errors import BadRequest
from services.common.logs import clip
from services.common.periodic import Periodic

from .config import AuthdConfig
from .keys import KeyFormatError, parse_public_key
from .metrics import PREFIX, AuthdCollector
from .pool import VerifierPool, worker_argv
from .revocation_watch import POLL_INTERVAL, RevocationState, RevocationWatcher
from .revocations import RevocationList
from .verdict import Reason, Verdict

log = logging.getLogger("services.authd")

POOL = web.AppKey("pool", VerifierPool)
WATCHER = web.AppKey("watcher", RevocationWatcher)
COUNTS = web.AppKey("counts", collections.Counter)
DURATION = web.AppKey("duration", Histogram)


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


def _revoked(verdict: Verdict, revocations: RevocationList) -> Verdict:
    """The worker's verdict, overruled when one of the token's revocation ids is revoked."""
    block = revocations.first_revoked(verdict.revocation_ids)
    if block is None:
        return verdict
    rid = verdict.revocation_ids[block]
    return Verdict(
        Reason.REVOKED,
        f"the token is revoked (block {block}, revocation id {rid[:16]}...)",
        verdict.revocation_ids,
    )


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
    try:
        key = parse_public_key(key_text)
    except KeyFormatError as exc:
        verdict = Verdict(Reason.BAD_KEY, f"bad stored key (the user's PASSWORD): {exc}")
    else:
        if app[WATCHER].state.unknown:
            # Unreadable since start (e.g. wrong owner): accepting would ignore every revocation.
            verdict = Verdict(
                Reason.UNAVAILABLE,
                f"the revocation file cannot be read ({app[WATCHER].state.error}); "
                "no login is accepted until it can",
            )
        else:
            verdict = _revoked(
                await app[POOL].verify(secret, key, username), app[WATCHER].state.revocations
            )
    app[DURATION].observe(time.perf_counter() - started)
    app[COUNTS][verdict.reason] += 1
    # Never the token: the user (cut and escaped: it is the caller's text), the outcome and why.
    if verdict.valid:
        log.info("accepted user=%s", clip(username))
        return web.json_response({"driver": "biscuit", "username": username, "password": key_text})
    log.warning("rejected user=%s reason=%s: %s", clip(username), verdict.reason, verdict.message)
    status = 503 if verdict.reason is Reason.UNAVAILABLE else 401
    return web.json_response(
        {"error": verdict.message, "reason": verdict.reason.value}, status=status
    )


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[POOL].start()
    yield
    await app[POOL].close()


def create_app(config: AuthdConfig) -> web.Application:
    """The authd app: routes, self metrics, the worker pool and the revocation watcher."""
    app = create_base_app("authd")
    health = app[HEALTH]
    path = config.revocation_file
    health.details["revocation_file"] = str(path) if path else None

    def on_revocations(state: RevocationState) -> None:
        health.details["revoked_ids"] = len(state.revocations.ids)
        health.details["revocation_file_status"] = state.status
        if state.status == "error":
            health.fail("revocation_file", f"cannot read {path}: {state.error}")
        else:
            health.ok("revocation_file")

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
        alive = app[POOL].alive
        health.details["workers"] = alive
        if alive:
            health.ok("verifier")
        else:
            health.fail("verifier", "no verifier worker process is running")

    app[POOL] = VerifierPool(
        worker_argv(config.limits, config.verify_cpu_limit),
        config.workers,
        cpu_limit=config.verify_cpu_limit,
        on_change=on_workers,
    )
    app[REGISTRY].register(AuthdCollector(counts, lambda: app[WATCHER].state, app[POOL]))
    app.cleanup_ctx.append(_pool_ctx)
    # The list is read before the first request is served, then every POLL_INTERVAL seconds.
    watch = Periodic(
        "revocation_watch", app[WATCHER].refresh, POLL_INTERVAL, health=health, await_first=True
    )
    app.cleanup_ctx.append(watch.cleanup_ctx)
    app.router.add_post("/v1/authenticate", authenticate)
    return app
