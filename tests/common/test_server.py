"""The server under every service: what aiohttp's parser refuses gets SPEC's JSON error.

In-process, through the runtime test service's app factory served by `ServiceRunner` (as
`runner.serve` does), over raw sockets, since aiohttp's client cannot send malformed requests.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from services.common.app import REGISTRY
from services.common.server import Limits, Refusals, refusal
from services.common.throttle import Throttle
from testkit import async_wait_for
from testkit.server import AppTestServer
from tests.common.malformed import MALFORMED, assert_json_refusal
from tests.runtime_service import EchoConfig, create_app


@pytest.fixture
async def server():
    app = create_app(EchoConfig())
    async with AppTestServer(app) as running:
        yield running


async def exchange(server: AppTestServer, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send `raw` on a fresh connection and read the reply until the server closes it."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def server_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= level]


@pytest.mark.parametrize(
    "raw, status, echoed", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
async def test_a_request_the_parser_refuses_gets_a_json_error(server, caplog, raw, status, echoed):
    caplog.set_level(logging.DEBUG)
    assert_json_refusal(await exchange(server, raw), status, echoed)
    assert not server_records(caplog, logging.ERROR)
    assert not any(r.exc_info for r in caplog.records)


async def test_a_flood_of_refusals_logs_one_warning_and_no_error(server, caplog):
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        for _name, raw, status, echoed in MALFORMED:
            assert_json_refusal(await exchange(server, raw), status, echoed)
    warnings = server_records(caplog, logging.WARNING)
    assert len(warnings) == 1 and warnings[0].name == "services.common.server", warnings
    assert "refused a request from 127.0.0.1" in warnings[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    # The service still serves well-formed requests on the same listener.
    reply = await exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "head, partial",
    [
        (b"Content-Length: 1000\r\n", b'{"a": '),
        (b"Transfer-Encoding: chunked\r\n", b'6\r\n{"a": '),
    ],
    ids=["content-length", "chunked"],
)
async def test_a_client_leaving_mid_body_is_not_a_server_error(server, caplog, head, partial):
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST /v1/echo HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + partial)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    registry = server.app[REGISTRY]

    def count(status: str) -> float:
        labels = {"method": "POST", "route": "/v1/echo", "status": status}
        return registry.get_sample_value("one_cognit_echo_http_requests_total", labels) or 0.0

    await async_wait_for(lambda: count("499") == 1, timeout=10, what="the 499 count")
    assert count("500") == 0
    assert not server_records(caplog, logging.WARNING)


async def test_json_nested_too_deep_is_a_400(server):
    body = b"[" * 100_000 + b"]" * 100_000
    raw = b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    reply = await exchange(server, raw + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    error = assert_json_refusal(reply, 400, b"[[[[")
    assert error == "malformed JSON: nested too deeply"


def test_refusal_names_which_limit_a_long_line_broke() -> None:
    limits = Limits(line=8192, field=8190, headers=128)
    assert refusal(LineTooLong(b"x...", 8190), limits)[0] == 431
    assert refusal(LineTooLong(b"x...", 8192), limits)[0] == 414
    # Equal limits cannot tell the request line from a header: a plain 400.
    assert refusal(LineTooLong(b"x...", 8190), Limits(8190, 8190, 128))[0] == 400
    assert refusal(BadHttpMessage("Too many headers received"), limits) == (
        431,
        "more than 128 header fields",
    )


def test_refusal_keeps_the_parsers_reason_and_drops_the_echoed_input() -> None:
    exc = BadHttpMessage("Invalid character in chunk size:\n\n  b'SECRET'\n    ^")
    assert refusal(exc, Limits()) == (400, "malformed request: Invalid character in chunk size")
    assert refusal(None, Limits()) == (400, "malformed request")


def test_refusals_log_once_per_period_with_the_count_held_back(caplog) -> None:
    now = [0.0]
    refusals = Refusals(Throttle(60.0, clock=lambda: now[0]))
    caplog.set_level(logging.WARNING, logger="services.common.server")
    for t in (0.0, 1.0, 30.0, 59.9):
        now[0] = t
        refusals.note(400, "malformed request line", "192.0.2.1")
    now[0] = 60.0
    refusals.note(431, "more than 128 header fields", "192.0.2.2")
    refusals.note(400, "malformed request line", "192.0.2.3")
    refusals.flush()
    refusals.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused a request from 192.0.2.1: 400 malformed request line",
        "refused a request from 192.0.2.2: 431 more than 128 header fields"
        " (3 more refused since the last such line)",
        "1 more requests refused since the last such line",
    ]


def test_throttle_refuses_a_non_positive_period() -> None:
    with pytest.raises(ValueError):
        Throttle(0.0)
