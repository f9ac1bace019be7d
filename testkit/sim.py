"""The simulator (`python -m sim`) as a real subprocess on free ports, for tests and benchmarks."""

from __future__ import annotations

import json
import sys
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

from testkit import Service, free_port, http

ADMIN = "oneadmin:opennebula"


@dataclass
class Sim:
    """A running `python -m sim` and the ways to talk to it."""

    service: Service
    rpc_url: str
    control_url: str

    def one(self, session: str = ADMIN) -> Any:
        """A pyone client, as a real OpenNebula client would talk to oned."""
        import pyone

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
        """A call of the control API: (status, JSON body or None)."""
        status, _, data = http(method, self.control_url + path, body)
        return status, json.loads(data) if data else None

    def vm(self, vm_id: int) -> dict[str, Any]:
        status, body = self.control("GET", f"/v1/vms/{vm_id}")
        assert status == 200, body
        return body["vm"]

    def template(self, host: int | str) -> dict[str, Any]:
        """A host's template as the simulated oned holds it."""
        status, body = self.control("GET", f"/v1/hosts/{host}")
        assert status == 200, body
        return body["host"]["template"]

    def calls(self) -> dict[str, int]:
        """XML-RPC calls served so far, by method."""
        return self.control("GET", "/calls")[1]["calls"]

    def reset_calls(self) -> None:
        self.control("DELETE", "/calls")

    def close(self) -> None:
        self.service.close()


def start_sim(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> Sim:
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
        ],
        env=env,
    )
    control_url = f"http://127.0.0.1:{control_port}"
    service.wait_http(control_url + "/healthz", timeout=timeout)
    return Sim(service, f"http://127.0.0.1:{rpc_port}/RPC2", control_url)
