"""Real socket servers for the exporter's tests: misbehaving agents, an oned proxy, and a loop
thread that runs the real simulator and real rapl_agents beside the test.

Each runs in a daemon thread on a real 127.0.0.0/8 address and is closed by the test that
started it. Nothing here imitates a correct component: correct components are the real
simulator and real rapl_agents.
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
from collections.abc import Callable, Coroutine
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from aiohttp import web

Route = Callable[[BaseHTTPRequestHandler], None]
T = TypeVar("T")


class _Quiet(BaseHTTPRequestHandler):
    routes: dict[str, Route] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        route(self)

    def log_message(self, *_args: object) -> None:
        pass


class _Threaded:
    """A socketserver serving in a daemon thread; `close` releases held handlers, then stops."""

    def __init__(self, server: socketserver.TCPServer) -> None:
        self.release = threading.Event()
        self.server = server
        server.daemon_threads = True  # type: ignore[attr-defined]
        # A short poll: `close` (server.shutdown) waits for the loop to notice.
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class HttpAgent(_Threaded):
    """An HTTP server on `address:port` answering each path with a route function."""

    def __init__(self, address: str, port: int, routes: dict[str, Route]) -> None:
        handler = type("Handler", (_Quiet,), {"routes": routes})
        super().__init__(ThreadingHTTPServer((address, port), handler))


def send(
    handler: BaseHTTPRequestHandler, body: bytes, content_type: str = "application/json"
) -> None:
    """Answer 200 with `body` (Content-Length set)."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the exporter hung up on purpose (reply too large)


class HangingServer(_Threaded):
    """Accepts TCP connections and never answers (until closed)."""

    def __init__(self, address: str, port: int) -> None:
        hanging = self

        class Hold(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                hanging.release.wait()

        super().__init__(socketserver.ThreadingTCPServer((address, port), Hold))


class Proxy(_Threaded):
    """A TCP proxy to `target`; `hang = True` makes new connections accepted but never served."""

    def __init__(self, address: str, port: int, target: tuple[str, int]) -> None:
        self.hang = False
        proxy = self

        class Relay(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                if proxy.hang:
                    proxy.release.wait()
                    return
                try:
                    upstream = socket.create_connection(target, timeout=10)
                except OSError:
                    return
                with upstream:
                    pump = threading.Thread(
                        target=_pump, args=(upstream, self.request), daemon=True
                    )
                    pump.start()
                    _pump(self.request, upstream)
                    pump.join(10)

        super().__init__(socketserver.ThreadingTCPServer((address, port), Relay))


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(1 << 16):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class LoopThread:
    """An event loop in a daemon thread, for real services the tests run beside the one under
    test (the simulator, rapl_agents): started in milliseconds instead of a process's second,
    while the test's own loop stays free for the exporter."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run `coro` on the thread's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, app: web.Application, host: str, port: int) -> web.AppRunner:
        """Serve `app` on host:port from this loop (its cleanup contexts run here too)."""

        async def start() -> web.AppRunner:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            return runner

        return self.run(start())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
