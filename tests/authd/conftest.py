"""Keys, real tokens, authd in-process (create_app + aiohttp's test client) or as a process."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import biscuit_auth as biscuit
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.authd.app import create_app
from services.authd.config import AuthdConfig
from testkit import Service, free_port, http
from testkit import authd as kit

AUTHD = [sys.executable, "-m", "services.authd"]
SHIM = kit.SHIM
CPU_BOMB, FACT_BOMB, ITERATION_BOMB = kit.CPU_BOMB, kit.FACT_BOMB, kit.ITERATION_BOMB
authn_xml, run_shim = kit.authn_xml, kit.run_shim


@dataclasses.dataclass(frozen=True)
class Keys:
    """A user's key pair and the stored-key texts of both biscuit-cli formats."""

    pair: biscuit.KeyPair

    @property
    def hex(self) -> str:
        return kit.public_hex(self.pair)

    @property
    def prefixed(self) -> str:
        return f"ed25519/{self.hex}"

    @property
    def private_hex(self) -> str:
        return bytes(self.pair.private_key.to_bytes()).hex()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_token(
    keys: Keys,
    authority: str = 'user("alice");',
    blocks: Sequence[str] = (),
    params: dict | None = None,
) -> str:
    """A real Biscuit signed with `keys`, attenuated with one block per entry of `blocks`."""
    return kit.make_token(keys.pair, authority, blocks, params)


def expiring(keys: Keys, user: str = "alice", delta: dt.timedelta = dt.timedelta(hours=1)) -> str:
    """A token for `user` whose authority block expires `delta` from now."""
    return kit.expiring(keys.pair, user, delta)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(biscuit.KeyPair())


@pytest.fixture(scope="module")
def other_keys() -> Keys:
    return Keys(biscuit.KeyPair())


class InProcess:
    """authd built by `create_app`, served on loopback by aiohttp's TestServer."""

    def __init__(self, client: TestClient, revocation_file: Path) -> None:
        self.client = client
        self.app: web.Application = client.app  # type: ignore[assignment]
        self.revocation_file = revocation_file

    @property
    def base(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def post(self, body: Any, path: str = "/v1/authenticate") -> tuple[int, Any]:
        data = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
        async with self.client.post(path, data=data) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw)

    async def login(self, username: str, password: str, secret: str) -> tuple[int, dict]:
        return await self.post({"username": username, "password": password, "secret": secret})

    async def health(self) -> tuple[int, dict]:
        async with self.client.get("/healthz") as resp:
            return resp.status, await resp.json()

    async def metrics(self) -> str:
        async with self.client.get("/metrics") as resp:
            return await resp.text()

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of `one_cognit_authd_<name>`, chosen by its labels."""
        return sample(await self.metrics(), name, **labels)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample `one_cognit_authd_<name>` whose labels include `labels`."""
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        family = metric.split("{", 1)[0]
        if family != f"one_cognit_authd_{name}":
            continue
        if all(f'{k}="{v}"' in metric for k, v in labels.items()):
            return float(value)
    raise AssertionError(f"no sample one_cognit_authd_{name} {labels}")


@contextlib.asynccontextmanager
async def serve_authd(tmp: Path, **options: Any) -> AsyncIterator[InProcess]:
    """A fresh in-process authd with its own revocation file under `tmp`."""
    revocation_file = tmp / "revoked.txt"
    config = AuthdConfig(revocation_file=revocation_file, **options)
    async with TestClient(TestServer(create_app(config))) as client:
        yield InProcess(client, revocation_file)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def authd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcess]:
    """One in-process authd shared by a test module (its 2 worker processes start once)."""
    async with serve_authd(tmp_path_factory.mktemp("authd")) as server:
        yield server


class Process:
    """authd as a real subprocess, for what only a process shows (and for the shim)."""

    def __init__(self, service: Service, base: str, revocation_file: Path) -> None:
        self.service = service
        self.base = base
        self.revocation_file = revocation_file

    def login(self, username: str, password: str, secret: str) -> tuple[int, dict]:
        body = {"username": username, "password": password, "secret": secret}
        status, _, raw = http("POST", self.base + "/v1/authenticate", body)
        return status, json.loads(raw)


def start_process(tmp: Path, *flags: str) -> Process:
    port = free_port()
    revocation_file = tmp / "revoked.txt"
    argv = [*AUTHD, "--listen", f"127.0.0.1:{port}", "--revocation-file", str(revocation_file)]
    service = Service([*argv, *flags])
    base = f"http://127.0.0.1:{port}"
    try:
        service.wait_http(base + "/healthz", timeout=30)
    except BaseException:
        service.close()
        raise
    return Process(service, base, revocation_file)


@pytest.fixture(scope="module")
def authd_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """One authd process shared by a test module."""
    server = start_process(tmp_path_factory.mktemp("authd"))
    yield server
    server.service.close()
