"""Start a service: logging, uvloop, the HTTP server, and a clean stop on SIGTERM/SIGINT.

SPEC section 4: on SIGTERM or SIGINT a service stops accepting, lets in-flight requests finish,
runs its cleanup (flushing state) and exits 0 within 5 s, however many signals arrive. The
first signal starts that stop; later ones are counted and change nothing. The handlers are
plain `signal.signal` handlers that only set a flag and wake the loop (never raising into
whatever code runs), installed before the app is built and replaced by "ignore" once the loop
is closed, so no signal finds the default action (death by signal, exit 143) or a
KeyboardInterrupt at any point of the stop, `shutdown_asyncgens` included.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TypeVar

from aiohttp import web

from .config import Listen, ServiceConfig, fail, load_config
from .errors import ConfigError
from .logs import setup_logging
from .server import ServiceRunner

log = logging.getLogger(__name__)

C = TypeVar("C", bound=ServiceConfig)

# SPEC: exit 0 within 5 s of SIGTERM. In-flight requests get SHUTDOWN_TIMEOUT to finish; the
# whole stop (requests, then the app's cleanup contexts) gets STOP_BUDGET.
SHUTDOWN_TIMEOUT = 3.5
STOP_BUDGET = 4.5
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Idle keep-alive connections close after this long (what `web.run_app` used to set).
KEEPALIVE_TIMEOUT = 75.0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is importable, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class StopSignals:
    """SIGTERM/SIGINT ask for one graceful stop; any further ones are counted and ignored."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle the stop signals from now on (main thread only, as `signal` requires)."""
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        """Give the signals back to whoever had them (a start that failed before serving)."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def ignore(self) -> None:
        """The process is exiting: signals have nothing left to stop."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes of whatever runs: only record and wake.
        # The loop wakes on its self-pipe: uvloop also runs Python handlers promptly, and the
        # stdlib loop's epoll wait returns EINTR to the main thread, which the kernel prefers.
        self.received.append(signum)
        loop, event = self._loop, self._event
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def wait(self) -> int:
        """Wait for the first stop signal (at once if one came earlier); return its number."""
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if not self.received:
            await self._event.wait()
        return self.received[0]


class _CannotListen(Exception):
    """The listening socket could not be bound: exit 1 with this message."""


def serve(
    config_cls: type[C],
    build_app: Callable[[C], web.Application],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
) -> None:
    """Parse config (exit 2 on a bad one), build the app and run it until a signal."""
    stop = StopSignals()
    try:
        config = load_config(config_cls, argv, prog=prog, description=description)
        setup_logging(config.log_level, config.log_format)
        stop.install()
        app = build_app(config)
    except ConfigError as exc:
        stop.restore()
        fail(prog, str(exc))
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            code = runner.run(_run(app, config.listen, prog, stop))
    except _CannotListen as exc:
        stop.ignore()
        fail(prog, str(exc), code=1)
    stop.ignore()
    log.info("%s stopped", prog)
    if code:
        raise SystemExit(code)


async def _run(app: web.Application, listen: Listen, prog: str, stop: StopSignals) -> int:
    """Serve `app` on `listen` until a stop signal; the exit code."""
    runner = ServiceRunner(
        app,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        access_log=logging.getLogger("aiohttp.access"),
        keepalive_timeout=KEEPALIVE_TIMEOUT,
    )
    stopping = asyncio.create_task(stop.wait())
    # Start-up (the app's cleanup contexts: a first sample, worker processes) may take long or
    # hang on a dependency; a signal meanwhile stops the service then, not after it.
    starting = asyncio.create_task(runner.setup())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a start-up that failed raises here
            site = web.TCPSite(runner, listen.host, listen.port)
            try:
                await site.start()
            except OSError as exc:
                message = f"cannot listen on {listen}: {exc.strerror or exc}"
                raise _CannotListen(message) from None
            log.info("%s listening on %s", prog, listen)
            when = ""
        else:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            when = " during start-up"
        signum = await stopping
        log.info("%s stopping on %s%s", prog, signal.Signals(signum).name, when)
    except BaseException:
        stopping.cancel()
        await stop_runner(runner)
        raise
    return await stop_runner(runner)


async def stop_runner(runner: web.AppRunner, budget: float = STOP_BUDGET) -> int:
    """Close the listener, finish in-flight requests, run the app's cleanup: 0, or 1 if late.

    Exit 0 would claim a clean stop; a cleanup still running at the deadline (a flush that
    hangs) is cut, logged and reported with exit 1, so the 5 s of SPEC hold either way.
    """
    try:
        async with asyncio.timeout(budget):
            await runner.cleanup()
    except TimeoutError:
        log.error("stop did not finish within %.1f s; exiting with cleanup unfinished", budget)
        return 1
    return 0
