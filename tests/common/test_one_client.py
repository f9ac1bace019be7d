"""OneClient, the services' async oned access, against the real simulator and bad peers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from services.common.errors import OneError
from services.common.one import OneClient
from testkit import free_port
from tests.sim.conftest import Sim, start_sim

AUTHENTICATION = 0x100
NO_EXISTS = 0x400


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    sim = start_sim("--hosts", "2", "--vms-per-host", "2")
    yield sim
    sim.service.close()


async def test_call_returns_the_body_of_an_ok_reply(sim):
    client = OneClient(sim.rpc_url, "oneadmin:opennebula", timeout=5)
    version = await client.call("one.system.version")
    assert version.count(".") == 2
    pool = await client.call("one.hostpool.info")
    assert pool.startswith("<HOST_POOL>") and pool.count("<HOST>") == 2


async def test_refused_calls_carry_oneds_error_code(sim):
    bad = OneClient(sim.rpc_url, "oneadmin:wrong", timeout=5)
    with pytest.raises(OneError) as auth:
        await bad.call("one.hostpool.info")
    assert auth.value.code == AUTHENTICATION and auth.value.status == 503
    client = OneClient(sim.rpc_url, "oneadmin:opennebula", timeout=5)
    with pytest.raises(OneError) as missing:
        await client.call("one.vm.info", 987654)
    assert missing.value.code == NO_EXISTS and "987654" in missing.value.message


async def test_pyone_bindings_from_the_same_settings(sim):
    server = OneClient(sim.rpc_url, "oneadmin:opennebula").pyone()
    assert len(server.hostpool.info().HOST) == 2


async def test_unreachable_oned_is_a_one_error():
    client = OneClient(f"http://127.0.0.1:{free_port()}/RPC2", "a:b", timeout=2)
    with pytest.raises(OneError, match="cannot reach oned"):
        await client.call("one.system.version")


async def test_a_hanging_oned_costs_the_timeout_not_forever():
    """pyone's timeout= is not enforced; OneClient's is."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hang() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_hang, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    client = OneClient(f"http://127.0.0.1:{port}/RPC2", "a:b", timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(OneError, match="cannot reach oned"):
            await client.call("one.system.version")
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()
