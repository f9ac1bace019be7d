"""Fixtures: the simulator as a real subprocess on free ports, reached through pyone and HTTP."""

from __future__ import annotations

import json
import sys
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyone
import pytest

from testkit import Service, free_port, http

ADMIN = "oneadmin:opennebula"


@dataclass
class Sim:
    """A running `python -m sim` and the ways to talk to it."""

    service: Service
    rpc_url: str
    control_url: str

    def one(self, session: str = ADMIN) -> Any:
        """A pyone client, as the services use it."""
        return pyone.OneServer(self.rpc_url, session=session)

    def raw(self, method: str, *args: Any, session: str | None = ADMIN) -> Any:
        """The raw `[ok, body, code, ...]` reply (or a Fault), without pyone's parsing."""
        params = args if session is None else (session, *args)
        proxy = xmlrpc.client.ServerProxy(self.rpc_url)
        try:
            return getattr(proxy, method)(*params)
        finally:
            proxy("close")()

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, data = http(method, self.control_url + path, body)
        return status, json.loads(data) if data else None

    def vm(self, vm_id: int) -> dict[str, Any]:
        status, body = self.control("GET", f"/v1/vms/{vm_id}")
        assert status == 200, body
        return body["vm"]


def start_sim(*args: str) -> Sim:
    """Start the simulator on free ports and wait until its control API answers."""
    rpc_port, control_port = free_port(), free_port()
    service = Service(
        [
            sys.executable,
            "-m",
            "sim",
            "--listen",
            f"127.0.0.1:{rpc_port}",
            "--control-listen",
            f"127.0.0.1:{control_port}",
            *args,
        ]
    )
    control_url = f"http://127.0.0.1:{control_port}"
    service.wait_http(control_url + "/healthz", timeout=30)
    return Sim(service, f"http://127.0.0.1:{rpc_port}/RPC2", control_url)


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., Sim]]:
    """Start simulators with extra flags; all are stopped after the test."""
    started: list[Sim] = []

    def start(*args: str) -> Sim:
        sim = start_sim(*args)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.service.close()


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Sim]:
    """A 3-host / 3-VM-per-host simulator for tests that only read."""
    sim = start_sim("--hosts", "3", "--vms-per-host", "3", "--seed", "0")
    yield sim
    sim.service.close()
