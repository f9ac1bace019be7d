"""The aiohttp application every service starts from (SPEC section 4).

`create_base_app` wires what all services share: `/healthz`, `/metrics` from a per-app
registry, JSON errors for every 4xx/5xx, the 1 MiB body limit, the bearer-token check for
state-changing routes, and request self metrics. Services add their routes, collectors and
cleanup contexts to the app it returns.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .auth import SAFE_METHODS, bearer_matches
from .errors import BadRequest, ServiceError
from .health import Health
from .logs import clip

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
# Status recorded when the client disconnects before its request is answered (as nginx does).
CLIENT_CLOSED = 499

SERVICE = web.AppKey("service", str)
REGISTRY = web.AppKey("registry", CollectorRegistry)
HEALTH = web.AppKey("health", Health)
TOKEN = web.AppKey("token", str)
# Services whose /metrics is a product (rapl_agent, vm_exporter) set this to a function that
# returns the pre-rendered product text of their last snapshot; self metrics follow it.
PRODUCT_METRICS = web.AppKey("product_metrics", Callable[[], bytes | None])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, **headers: str) -> web.Response:
    """The one error shape every service answers with: `{"error": "..."}`."""
    return web.json_response({"error": message}, status=status, headers=headers or None)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or BadRequest saying why it is not."""
    body = await request.read()
    if not body:
        raise BadRequest("request body is empty; expected JSON")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    except RecursionError:
        # `[[[[...` fits in the body limit and exhausts the decoder's recursion: the client's fault.
        raise BadRequest("malformed JSON: nested too deeply") from None


def _route_name(request: web.Request) -> str:
    """A low-cardinality route label: the matched pattern, never the raw path."""
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    if resource is None or info.http_exception is not None:
        return "unmatched"
    return resource.canonical


def _make_middlewares(service: str, registry: CollectorRegistry) -> list:
    prefix = f"one_cognit_{service}"
    requests = Counter(
        f"{prefix}_http_requests",
        "HTTP requests served, by route and status",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        f"{prefix}_http_request_duration_seconds",
        "Time to serve an HTTP request",
        ["route"],
        registry=registry,
        buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every failure becomes `{"error": ...}` with the right status; never a traceback."""
        started = time.perf_counter()
        try:
            if request.content_length is not None and request.content_length > MAX_BODY:
                response: web.StreamResponse = json_error(
                    413, f"request body over {MAX_BODY} bytes"
                )
            else:
                response = await handler(request)
        except ServiceError as exc:
            response = json_error(exc.status, exc.message)
        except ConnectionError:
            # The client went away (mid-body, typically): not a server error. Nobody reads this
            # reply; its status is nginx's "client closed request", so metrics tell it apart.
            log.debug("client left during %s %s", request.method, clip(request.path))
            response = json_error(CLIENT_CLOSED, "client closed the connection")
        except web.RequestPayloadError as exc:
            # aiohttp's reason (bad chunk, truncated or undecodable body) is fixed text.
            reason = str(exc).split("\n", 1)[0][:100] or "cannot read it"
            response = json_error(400, f"malformed request body: {reason}")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = exc.reason
            if exc.status == 404:
                message = f"no route {request.method} {request.path}"
            elif exc.status == 405:
                message = f"method {request.method} not allowed on {request.path}"
            elif exc.status == 413:
                message = f"request body over {MAX_BODY} bytes"
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
            response = json_error(exc.status, message, **headers)
        except Exception:
            log.exception("unhandled error on %s %s", clip(request.method), clip(request.path))
            response = json_error(500, "internal error; see the service log")
        route = _route_name(request)
        requests.labels(request.method, route, str(response.status)).inc()
        latency.labels(route).observe(time.perf_counter() - started)
        return response

    @web.middleware
    async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        """State-changing requests need the token when the service has one."""
        token = request.app.get(TOKEN)
        if token and request.method not in SAFE_METHODS:
            if not bearer_matches(request.headers.get("Authorization"), token):
                return json_error(
                    401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"}
                )
        return await handler(request)

    return [errors, bearer]


async def _healthz(request: web.Request) -> web.Response:
    health = request.app[HEALTH]
    body = health.report()
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


async def _metrics(request: web.Request) -> web.StreamResponse:
    # Collectors read an in-memory snapshot, so rendering on the loop is cheap.
    own = generate_latest(request.app[REGISTRY])
    source = request.app.get(PRODUCT_METRICS)
    product = (source() if source is not None else None) or b""
    # The product page is megabytes at 5,000 processes: written as it is, not joined to the
    # self metrics first (a copy per scrape; rapl_agent's p50 went from 5-7 ms to 3-4 ms).
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
    response.content_length = len(product) + len(own)
    await response.prepare(request)
    if request.method != "HEAD":
        await response.write(product)
        await response.write(own)
    await response.write_eof()
    return response


def create_base_app(service: str, *, token: str | None = None) -> web.Application:
    """An app with healthz, metrics, JSON errors, body limit and optional bearer auth."""
    registry = CollectorRegistry(auto_describe=True)
    app = web.Application(
        middlewares=_make_middlewares(service, registry), client_max_size=MAX_BODY
    )
    app[SERVICE] = service
    app[REGISTRY] = registry
    app[HEALTH] = Health(service)
    if token:
        app[TOKEN] = token
    Gauge(f"one_cognit_{service}_up", "1 while the service runs", registry=registry).set(1)
    Gauge(
        f"one_cognit_{service}_start_time_seconds",
        "Unix time the service started",
        registry=registry,
    ).set(time.time())
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app
