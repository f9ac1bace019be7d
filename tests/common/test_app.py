"""The HTTP contracts every service gets from `create_base_app`, tested in-process.

Through the runtime test service's `create_app`, served as `runner.serve` serves it
(`testkit.server.app_client`): routes, JSON errors, body limit, bearer auth, self metrics,
config reaching the app, the stop's deadline. What only a process shows is in
`test_runtime_service.py`.
"""

from __future__ import annotations

import dataclasses
import io
import time

import pytest

from services.common.config import load_config
from services.common.runner import stop_runner
from services.common.server import ServiceRunner
from testkit.server import app_client
from tests.runtime_service import EchoConfig, create_app


@pytest.fixture
async def echo():
    """Start the test service in-process with config overrides; close every client after."""
    clients = []

    async def start(config: EchoConfig | None = None, **overrides):
        config = dataclasses.replace(config or EchoConfig(), **overrides)
        client = app_client(create_app(config))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def test_healthz_ok_and_degraded(echo):
    resp = await (await echo()).get("/healthz")
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "ok" and body["service"] == "echo"
    resp = await (await echo(degraded=True)).get("/healthz")
    body = await resp.json()
    assert resp.status == 503
    assert body["status"] == "degraded" and "upstream" in body["reason"]


async def test_json_errors_for_404_405_413_and_bad_json(echo):
    client = await echo()
    resp = await client.get("/nope")
    assert resp.status == 404 and resp.content_type == "application/json"
    assert (await resp.json())["error"].startswith("no route GET /nope")
    resp = await client.delete("/v1/echo")
    assert resp.status == 405 and "not allowed" in (await resp.json())["error"]
    assert resp.headers["Allow"] == "POST"
    resp = await client.post("/v1/echo", data=io.BytesIO(b"x" * (1024 * 1024 + 1)))
    assert resp.status == 413 and "body over" in (await resp.json())["error"]
    resp = await client.post("/v1/echo", data=b"{not json")
    assert resp.status == 400 and (await resp.json())["error"].startswith("malformed JSON")
    resp = await client.post("/v1/echo", data=b"")
    assert resp.status == 400 and "empty" in (await resp.json())["error"]
    resp = await client.post("/v1/echo", json={"a": 1})
    assert resp.status == 200 and await resp.json() == {"echo": {"a": 1}}


async def test_a_chunked_body_over_the_limit_is_413(echo):
    async def chunks():
        for _ in range(17):
            yield b"x" * 65536

    resp = await (await echo()).post("/v1/echo", data=chunks())
    assert resp.status == 413 and "body over" in (await resp.json())["error"]


async def test_bearer_token_required_on_state_changing_routes(echo, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    client = await echo(token_file=token_file)
    resp = await client.post("/v1/echo", json={"a": 1})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    assert "bearer token" in (await resp.json())["error"]
    bad = {"Authorization": "Bearer wrong"}
    assert (await client.post("/v1/echo", json={"a": 1}, headers=bad)).status == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert (await client.post("/v1/echo", json={"a": 1}, headers=good)).status == 200
    # Reads stay open: Prometheus and probes carry no token.
    assert (await client.get("/healthz")).status == 200


async def test_metrics_are_prefixed_and_count_requests(echo):
    client = await echo()
    await client.get("/nope")
    await client.post("/v1/echo", json={"a": 1})
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert "one_cognit_echo_up 1.0" in text
    assert (
        'one_cognit_echo_http_requests_total{method="GET",route="unmatched",status="404"} 1.0'
        in text
    )
    assert (
        'one_cognit_echo_http_requests_total{method="POST",route="/v1/echo",status="200"} 1.0'
        in text
    )
    assert 'one_cognit_echo_http_request_duration_seconds_count{route="/v1/echo"} 1.0' in text


async def test_product_metrics_come_first_and_head_has_the_length_only(echo):
    from services.common.app import PRODUCT_METRICS

    config = load_config(EchoConfig, [], prog="echo", description="")
    app = create_app(config)
    app[PRODUCT_METRICS] = lambda: b"# TYPE product_x gauge\nproduct_x 42\n"
    async with app_client(app) as client:
        resp = await client.get("/metrics")
        text = await resp.text()
        assert text.startswith("# TYPE product_x gauge\nproduct_x 42\n")
        assert "one_cognit_echo_up 1.0" in text
        assert int(resp.headers["Content-Length"]) == len(text.encode())
        head = await client.head("/metrics")
        assert head.status == 200 and await head.read() == b""
        assert int(head.headers["Content-Length"]) > len(b"product_x 42")


async def test_config_precedence_flag_over_yaml_over_default(echo, tmp_path):
    config_file = tmp_path / "echo.yaml"
    config_file.write_text("greeting: from-yaml\ninterval: 7.5\n")

    async def shown(*argv: str) -> dict:
        config = load_config(EchoConfig, list(argv), prog="echo-service", description="test")
        return await (await (await echo(config)).get("/v1/config")).json()

    body = await shown()
    assert body["greeting"] == "hello" and body["interval"] == 2.0
    body = await shown("--config", str(config_file))
    assert body["greeting"] == "from-yaml" and body["interval"] == 7.5
    body = await shown("--config", str(config_file), "--greeting", "flag")
    assert body["greeting"] == "flag" and body["interval"] == 7.5


async def test_a_cleanup_that_hangs_is_cut_at_the_stop_deadline(caplog):
    runner = ServiceRunner(create_app(EchoConfig(stop_delay=60.0)))
    await runner.setup()
    started = time.monotonic()
    assert await stop_runner(runner, budget=0.2) == 1
    assert time.monotonic() - started < 5.0
    assert "stop did not finish within 0.2 s" in caplog.text
