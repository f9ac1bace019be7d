"""A minimal service on the shared runtime, for the runtime tests (in-process and as a process).

It is test scaffolding, not a product service: it exists so the runtime's behaviour (healthz,
errors, auth, body limit, graceful stop, config precedence) is proven before and independently
of any product service: in-process through `create_app`, and as a real process for signals,
exit codes, ports and log lines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aiohttp import web

from services.common.app import HEALTH, create_base_app, read_json
from services.common.auth import read_token_file
from services.common.config import Listen, ServiceConfig, option
from services.common.runner import serve

log = logging.getLogger("echo")


@dataclasses.dataclass(frozen=True)
class EchoConfig(ServiceConfig):
    listen: Listen = option(Listen("127.0.0.1", 9999), "address to listen on")
    token_file: Path | None = option(None, "bearer token required on POST", metavar="PATH")
    greeting: str = option("hello", "word the /v1/config route reports")
    interval: float = option(2.0, "a float flag")
    degraded: bool = option(False, "report 503 on /healthz")
    start_delay: float = option(0.0, "seconds the start-up takes (a slow first cycle)")
    stop_delay: float = option(0.0, "seconds the cleanup takes (a hung flush)")


def create_app(config: EchoConfig) -> web.Application:
    token = read_token_file(config.token_file) if config.token_file else None
    app = create_base_app("echo", token=token)
    if config.degraded:
        app[HEALTH].fail("upstream", "unreachable for the test")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"echo": await read_json(request)})

    sleeping = {"now": 0}

    async def slow(request: web.Request) -> web.Response:
        sleeping["now"] += 1
        try:
            await asyncio.sleep(float(request.query.get("seconds", "1")))
        finally:
            sleeping["now"] -= 1
        return web.json_response({"slept": True})

    async def show_sleeping(request: web.Request) -> web.Response:
        # Lets a test wait until its slow request is in flight instead of sleeping a guess.
        return web.json_response(sleeping)

    async def show_config(request: web.Request) -> web.Response:
        return web.json_response(
            {"greeting": config.greeting, "interval": config.interval, "listen": str(config.listen)}
        )

    app.router.add_post("/v1/echo", echo)

    async def slow_start_and_stop(_app: web.Application) -> AsyncIterator[None]:
        if config.start_delay:
            log.info("starting up for %s s", config.start_delay)
            await asyncio.sleep(config.start_delay)
        yield
        if config.stop_delay:
            log.info("cleaning up for %s s", config.stop_delay)
            await asyncio.sleep(config.stop_delay)

    app.cleanup_ctx.append(slow_start_and_stop)
    app.router.add_get("/v1/slow", slow)
    app.router.add_get("/v1/sleeping", show_sleeping)
    app.router.add_get("/v1/config", show_config)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    serve(EchoConfig, create_app, argv, prog="echo-service", description="runtime test service")


if __name__ == "__main__":
    main()
