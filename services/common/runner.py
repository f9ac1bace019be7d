"""Start a service: logging, uvloop, the aiohttp runner and graceful SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from aiohttp import web

from .config import ServiceConfig, fail, load_config
from .errors import ConfigError
from .logs import setup_logging

log = logging.getLogger(__name__)

C = TypeVar("C", bound=ServiceConfig)

# SPEC: exit 0 within 5 s of SIGTERM; in-flight requests get this long to finish.
SHUTDOWN_TIMEOUT = 4.0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is importable, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(
    config_cls: type[C],
    build_app: Callable[[C], web.Application],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
) -> None:
    """Parse config (exit 2 on a bad one), build the app and run it until a signal."""
    try:
        config = load_config(config_cls, argv, prog=prog, description=description)
        setup_logging(config.log_level, config.log_format)
        app = build_app(config)
    except ConfigError as exc:
        fail(prog, str(exc))
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        web.run_app(
            app,
            host=config.listen.host,
            port=config.listen.port,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            # aiohttp calls `print` once the socket is bound: log it then, not before.
            print=lambda _banner: log.info("%s listening on %s", prog, config.listen),
            access_log=logging.getLogger("aiohttp.access"),
            loop=loop,
        )
    except OSError as exc:
        fail(prog, f"cannot listen on {config.listen}: {exc.strerror or exc}", code=1)
    log.info("%s stopped", prog)


def not_built(prog: str, issue: str) -> Callable[[Sequence[str] | None], None]:
    """`main` of a service whose issue is not done: says so, exits non-zero, fakes nothing."""

    def main(argv: Sequence[str] | None = None) -> None:
        import sys

        args = list(sys.argv[1:] if argv is None else argv)
        text = f"{prog}: not built yet ({issue}); it does nothing until then."
        if "-h" in args or "--help" in args:
            print(f"usage: {prog}\n\n{text}")
            raise SystemExit(0)
        print(f"{prog}: error: not built yet ({issue})", file=sys.stderr)
        raise SystemExit(3)

    return main
