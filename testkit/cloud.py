"""The simulated cloud tests and benchmarks run the services on: the simulator with its
hypervisors, one real rapl_agent per host on the host's own loopback address, vm_exporter,
and on request authd and discovery. Every process is stopped by `close()`.

    cloud = Cloud(tmp, fleet, hosts={"h1": "127.0.79.1", ...})
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from testkit import Service, free_port, free_port_on, get_json, http


class Cloud:
    """sim (+ hypervisors) -> one rapl_agent per host -> vm_exporter (-> authd)."""

    def __init__(
        self,
        tmp: Path,
        fleet: dict[str, Any],
        hosts: dict[str, str],
        *,
        refresh: float = 0.5,
        agent_interval: float = 0.5,
        authd: bool = False,
        agent_port: int = 0,
    ) -> None:
        self.tmp = tmp
        self.hosts = hosts
        self.agent_interval = agent_interval
        self.started: list[Service] = []
        self.agent_port = agent_port or free_port_on(list(hosts.values()))
        try:
            self._start_all(fleet, refresh, authd)
        except BaseException:
            self.close()
            raise

    def _start_all(self, fleet: dict[str, Any], refresh: float, authd: bool) -> None:
        fleet_file = self.tmp / "fleet.yaml"
        fleet_file.write_text(yaml.safe_dump(fleet))
        self.oned_port, control_port = free_port(), free_port()
        self.rpc_url = f"http://127.0.0.1:{self.oned_port}/RPC2"
        self.control = f"http://127.0.0.1:{control_port}"
        self.sim = self._start(
            [
                sys.executable,
                "-m",
                "sim",
                "--listen",
                f"127.0.0.1:{self.oned_port}",
                "--control-listen",
                f"127.0.0.1:{control_port}",
                "--fleet",
                str(fleet_file),
                "--hypervisors",
                str(self.tmp / "hv"),
            ],  # fmt: skip
            self.control + "/healthz",
        )
        status, body = get_json(self.control + "/v1/hypervisors")
        assert status == 200 and body["enabled"], body
        self.hypervisors = {hv["host"]: hv for hv in body["hypervisors"]}
        self.agents = {name: self.start_agent(name) for name in self.hosts}
        self.one_auth = self.tmp / "one_auth"
        self.one_auth.write_text("oneadmin:opennebula\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.exporter = self._start(
            [
                sys.executable,
                "-m",
                "services.vm_exporter",
                "--one-xmlrpc",
                self.rpc_url,
                "--one-auth",
                str(self.one_auth),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--agent-port",
                str(self.agent_port),
                "--refresh-interval",
                str(refresh),
                "--agent-timeout",
                "1",
            ],  # fmt: skip
            self.url + "/healthz",
        )
        self.authd_url = ""
        if authd:
            port = free_port()
            self.authd_url = f"http://127.0.0.1:{port}"
            self._start(
                [
                    sys.executable,
                    "-m",
                    "services.authd",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--revocation-file",
                    str(self.tmp / "revoked"),
                    "--workers",
                    "1",
                ],  # fmt: skip
                self.authd_url + "/healthz",
            )

    def _start(self, argv: list[str], ready: str) -> Service:
        service = Service(argv)
        self.started.append(service)
        service.wait_http(ready, timeout=30)
        return service

    def agent_url(self, host: str) -> str:
        return f"http://{self.hosts[host]}:{self.agent_port}"

    def start_agent(self, host: str) -> Service:
        """(Re)start the rapl_agent of `host` on its address, reading that host's trees."""
        hv = self.hypervisors[host]
        return self._start(
            [
                sys.executable,
                "-m",
                "services.rapl_agent",
                "--listen",
                f"{self.hosts[host]}:{self.agent_port}",
                "--powercap-root",
                hv["powercap_root"],
                "--proc-root",
                hv["proc_root"],
                "--interval",
                str(self.agent_interval),
            ],  # fmt: skip
            self.agent_url(host) + "/healthz",
        )

    def start_discovery(self, prometheus_config: Path, *flags: str, port: int = 0) -> str:
        """one-discovery against this cloud (file_sd into tmp/sd unless `flags` say
        otherwise), reconciling every second; its URL."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        self._start(
            [
                sys.executable,
                "-m",
                "services.discovery",
                "--listen",
                f"127.0.0.1:{port}",
                "--one-xmlrpc",
                self.rpc_url,
                "--one-auth",
                str(self.one_auth),
                "--prometheus-config",
                str(prometheus_config),
                "--sd-dir",
                str(self.tmp / "sd"),
                "--reload",
                "none",
                "--reconcile-interval",
                "1",
                "--agent-port",
                str(self.agent_port),
                "--vm-exporter",
                f"127.0.0.1:{self.port}",
                *flags,
            ],  # fmt: skip
            url + "/healthz",
        )
        return url

    def start_tunnel_agents(self) -> int:
        """one-tunnel-agent on every host's address (no tunnel is made: its addresses, its
        sweep and its metrics), sharing a token; the port they listen on."""
        token = self.tmp / "tunnel.token"
        token.write_text("demo-token-of-the-simulated-cloud\n")
        token.chmod(0o600)
        port = free_port_on(list(self.hosts.values()))
        for addr in self.hosts.values():
            self._start(
                [
                    sys.executable,
                    "-m",
                    "services.tunnel_agent",
                    "--listen",
                    f"{addr}:{port}",
                    "--token-file",
                    str(token),
                    "--peer-port",
                    str(port),
                ],  # fmt: skip
                f"http://{addr}:{port}/healthz",
            )
        return port

    def stop_agent(self, host: str) -> None:
        self.agents[host].stop()

    def act(self, vm_id: int, action: str, body: dict | None = None) -> None:
        """A VM action through the simulator's control API."""
        status, _, data = http("POST", f"{self.control}/v1/vms/{vm_id}/{action}", body or {})
        assert status == 200, data

    def close(self) -> None:
        for service in reversed(self.started):
            service.close()
