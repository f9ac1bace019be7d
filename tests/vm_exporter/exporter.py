"""The exporter in-process for tests: built by `create_app`, served on a real port by aiohttp's
TestServer (Prometheus can scrape it), read through TestClient; samples parsed for asserts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from services.vm_exporter.app import BOX, create_app
from services.vm_exporter.config import ExporterConfig
from testkit import async_wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a /metrics text, keyed by (name, sorted labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(data: Samples, name: str, **labels: str | int) -> float | None:
    """One sample's value, or None when the series is absent."""
    key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
    return data.get(key)


def series(data: Samples, name: str, label: str) -> dict[str, float]:
    """All samples of `name`, by the value of `label`."""
    return {dict(labels)[label]: v for (n, labels), v in data.items() if n == name}


class Exporter:
    """A running in-process exporter: its app, an HTTP client, and ways to wait on it."""

    def __init__(self, app: web.Application, client: TestClient) -> None:
        self.app = app
        self.client = client
        self.port: int = client.port  # type: ignore[assignment]
        self.url = f"http://127.0.0.1:{self.port}"

    async def get(self, path: str) -> tuple[int, bytes]:
        resp = await self.client.get(path)
        return resp.status, await resp.read()

    async def metrics(self) -> Samples:
        status, body = await self.get("/metrics")
        assert status == 200, body[:300]
        return parse(body.decode())

    async def healthz(self) -> tuple[int, dict[str, Any]]:
        resp = await self.client.get("/healthz")
        return resp.status, await resp.json()

    def refreshes(self, result: str = "ok") -> int:
        """Refreshes so far with `result` (what `_refreshes_total` will show)."""
        return self.app[BOX].state.status.refreshes.get(result, 0)

    async def refreshed(self, n: int = 1, timeout: float = 15.0) -> Samples:
        """Wait for `n` more complete refreshes; the metrics after them."""
        target = self.refreshes() + n
        await async_wait_for(
            lambda: self.refreshes() >= target, timeout=timeout, what=f"{n} more refreshes"
        )
        return await self.metrics()


@contextlib.asynccontextmanager
async def running_exporter(
    tmp_path: Path,
    one_xmlrpc: str,
    *,
    auth: str = "oneadmin:opennebula",
    port: int | None = None,
    **flags: Any,
) -> AsyncIterator[Exporter]:
    """`create_app(ExporterConfig(...))` served on 127.0.0.1 (on `port` when given, as for a
    Prometheus already told where to scrape) until the block ends."""
    auth_file = tmp_path / "one_auth"
    auth_file.write_text(auth + "\n")
    config = ExporterConfig(one_xmlrpc=one_xmlrpc, one_auth=auth_file, **flags)
    app = create_app(config)
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
        yield Exporter(app, client)
