"""The HTTP server under every service: aiohttp's, answering what its own parser refuses in JSON.

aiohttp answers a request its parser refuses (bad request line, no Host, oversized URL or
header, bad chunking, invalid method) itself, before any middleware runs: `text/plain` that
echoes the input, and an ERROR traceback in the log per request, so an unauthenticated flood
fills the disk. aiohttp has no setting for that answer (aio-libs/aiohttp#3287); its extension
point is `RequestHandler.handle_error`, and the connection handler class is chosen by `Server`,
which `AppRunner` makes. `ServiceRunner` brings the three together: `runner.serve` runs every
service on it, and in-process tests serve apps with it (`testkit.AppTestServer`).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any, NamedTuple

from aiohttp import web, web_protocol, web_request, web_server
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)

from .throttle import Throttle

log = logging.getLogger(__name__)

# The request line and a header field get different limits (aiohttp uses 8190 for both) so that
# a refusal tells which one was exceeded: an over-long URL is 414, an over-long header 431.
REQUEST_LINE_LIMIT = 8192
HEADER_FIELD_LIMIT = 8190
HEADER_COUNT_LIMIT = 128
# A flood of refused requests logs one line per this many seconds, with a count of the rest.
REFUSAL_LOG_PERIOD = 60.0
_REASON_LIMIT = 120


class Limits(NamedTuple):
    """What the parser accepts: request line bytes, header field bytes, header count."""

    line: int = REQUEST_LINE_LIMIT
    field: int = HEADER_FIELD_LIMIT
    headers: int = HEADER_COUNT_LIMIT


def refusal(exc: BaseException | None, limits: Limits) -> tuple[int, str]:
    """The status and `{"error"}` text for a request the parser refused; never echoes it."""
    if isinstance(exc, LineTooLong):
        limit = _as_int(exc.args[1] if len(exc.args) > 1 else None)
        if limit == limits.field != limits.line:
            return 431, f"a header field is over {limits.field} bytes"
        if limit == limits.line != limits.field:
            return 414, f"the request line is over {limits.line} bytes"
        return 400, "a line of the request is too long"
    if isinstance(exc, BadStatusLine | InvalidURLError):  # a bad method included
        return 400, "malformed request line"
    if isinstance(exc, InvalidHeader):
        return 400, "malformed header"
    if isinstance(exc, PayloadEncodingError):
        return 400, "malformed body framing (Content-Length or Transfer-Encoding)"
    if isinstance(exc, BadHttpMessage):
        # llhttp's and aiohttp's reasons are fixed text on the first line; the echoed input,
        # when there is one, follows on the next lines.
        reason = exc.message.split("\n", 1)[0].rstrip(" :.")[:_REASON_LIMIT]
        if reason == "Too many headers received":
            return 431, f"more than {limits.headers} header fields"
        return 400, f"malformed request: {reason}" if reason else "malformed request"
    if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
        return exc.code, "malformed request"
    return 400, "malformed request"


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


class Refusals:
    """Logs refused requests as warnings, at most one line per period."""

    def __init__(self, throttle: Throttle | None = None) -> None:
        self.throttle = throttle or Throttle(REFUSAL_LOG_PERIOD)

    def note(self, status: int, reason: str, remote: str | None) -> None:
        held = self.throttle.admit()
        if held is None:
            return
        more = f" ({held} more refused since the last such line)" if held else ""
        log.warning("refused a request from %s: %d %s%s", remote, status, reason, more)

    def flush(self) -> None:
        """Say how many refusals were held back, so a flood's end is in the log too."""
        held = self.throttle.drain()
        if held:
            log.warning("%d more requests refused since the last such line", held)


class JsonErrorRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler, answering requests it refuses with SPEC's JSON error."""

    __slots__ = ("_limits", "_refusals")

    def __init__(self, manager: web_server.Server, *, refusals: Refusals, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._refusals = refusals
        # What this connection's parser was given (aiohttp's own defaults when nothing was).
        self._limits = Limits(
            kwargs.get("max_line_size", 8190),
            kwargs.get("max_field_size", 8190),
            kwargs.get("max_headers", 128),
        )

    def handle_error(
        self,
        request: web_request.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """`{"error": ...}` with the right status; a refusal is a throttled warning, not ERROR."""
        if status >= 500:
            # The service failed, not the client: keep aiohttp's ERROR with the traceback.
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            reason = (
                "internal error; see the service log"
                if status == 500
                else HTTPStatus(status).phrase.lower()
            )
        else:
            status, reason = refusal(exc, self._limits)
            self._refusals.note(status, reason, request.remote)
        if request.writer.output_size > 0:
            # Part of a response already left: the connection is beyond repair.
            raise ConnectionError("response already started; cannot send the error reply")
        response = web.json_response({"error": reason}, status=status)
        response.force_close()
        return response


class _JsonErrorServer(web_server.Server):
    """aiohttp's low-level server, making `JsonErrorRequestHandler` connections."""

    def __init__(
        self,
        handler: Any,
        *,
        request_factory: Any,
        handler_cancellation: bool,
        refusals: Refusals,
        **handler_kwargs: Any,
    ) -> None:
        super().__init__(
            handler,
            request_factory=request_factory,
            handler_cancellation=handler_cancellation,
            **handler_kwargs,
        )
        self.refusals = refusals
        self._handler_kwargs = handler_kwargs

    def __call__(self) -> web_protocol.RequestHandler:
        return JsonErrorRequestHandler(
            self, loop=asyncio.get_running_loop(), refusals=self.refusals, **self._handler_kwargs
        )


class ServiceRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer refused requests in JSON, with SPEC's limits."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", REQUEST_LINE_LIMIT)
        kwargs.setdefault("max_field_size", HEADER_FIELD_LIMIT)
        kwargs.setdefault("max_headers", HEADER_COUNT_LIMIT)
        super().__init__(app, **kwargs)
        self.refusals = Refusals()

    async def _make_server(self) -> web_server.Server:
        # AppRunner starts the app and builds aiohttp's Server; ours takes the same handler,
        # request factory and connection settings (`_kwargs`: aiohttp offers no public view of
        # them) and differs only in the connection class.
        plain = await super()._make_server()
        return _JsonErrorServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            refusals=self.refusals,
            **plain._kwargs,
        )

    async def shutdown(self) -> None:
        self.refusals.flush()
        await super().shutdown()
