"""Real socket servers for the exporter's fault tests: misbehaving agents and an oned proxy.

Each runs in a daemon thread on a real 127.0.0.0/8 address and is closed by the test that
started it. Nothing here imitates a correct component: correct components are the real
simulator and real rapl_agent processes.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from testkit.cloud import port_free_on  # noqa: F401 (the tests import it from here)

Route = Callable[[BaseHTTPRequestHandler], None]


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
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
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


def send(handler: BaseHTTPRequestHandler, body: bytes, content_type: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the exporter hung up on purpose (reply too large)


def agent_json(vms: dict[int, tuple[int | None, int]], host_power_uw: int = 50_000_000) -> bytes:
    """An /api/v1/vms reply in SPEC section 5's shape: {vm id: (power_uw, energy_uj)}."""
    return json.dumps(
        {
            "timestamp": 1718000000.0,
            "host": {"power_uw": host_power_uw, "energy_uj": 123_000_000},
            "vms": [
                {
                    "name": f"one-{vm_id}",
                    "one_vm_id": vm_id,
                    "pid": 10_000 + vm_id,
                    "helper_pids": [],
                    "power_uw": power,
                    "energy_uj": energy,
                }
                for vm_id, (power, energy) in sorted(vms.items())
            ],
        }
    ).encode()


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
