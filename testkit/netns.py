"""Network namespaces for tests and benchmarks: hosts joined by veth, agents inside, clean-up.

A `Lab` names everything it makes `oct-<random>-<role>` and removes it all in `close()` (its
processes, namespaces and /etc/netns files) even when a test fails. Sockets inside a namespace
are made from a short-lived thread that enters it (setns is per thread), so the test process
itself never leaves its own namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import ROOT, Service, wait_for

PREFIX = "oct-"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ip ARGS` (test set-up only; the agent itself never shells out)."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


class _SocketMaker:
    """A daemon thread inside a namespace that makes sockets there on request."""

    def __init__(self, name: str) -> None:
        self._requests: queue.Queue = queue.Queue()
        ready: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, args=(name, ready), daemon=True).start()
        error = ready.get()
        if error is not None:
            raise error

    def _run(self, name: str, ready: queue.Queue) -> None:
        try:
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {name}: {os.strerror(err)}")
            finally:
                os.close(fd)
        except OSError as exc:
            ready.put(exc)
            return
        ready.put(None)
        while True:
            request = self._requests.get()
            if request is None:
                return  # leaves the namespace, so deleting it frees it
            args, reply = request
            try:
                reply.put(socket.socket(*args))
            except OSError as exc:
                reply.put(exc)

    def close(self) -> None:
        self._requests.put(None)

    def make(self, family: int, kind: int, proto: int) -> socket.socket:
        reply: queue.Queue = queue.Queue()
        self._requests.put(((family, kind, proto), reply))
        made = reply.get()
        if isinstance(made, BaseException):
            raise made
        return made


class Netns:
    """One network namespace (a simulated host or the underlay switch)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._maker: _SocketMaker | None = None

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return ip("-n", self.name, *args, check=check)

    def ip_json(self, *args: str) -> Any:
        return json.loads(self.ip("-j", *args).stdout or "[]")

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def socket(
        self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
    ) -> socket.socket:
        """A socket that lives in this namespace, made by a thread that entered it once and
        stays there (setns is per thread: the test process itself never moves)."""
        if self._maker is None:
            self._maker = _SocketMaker(self.name)
        return self._maker.make(family, kind, proto)

    def release(self) -> None:
        """Stop the thread that lives in this namespace (before the namespace is deleted)."""
        if self._maker is not None:
            self._maker.close()
            self._maker = None

    def links(self) -> list[dict]:
        return self.ip_json("-s", "-d", "link", "show")

    def link_names(self) -> set[str]:
        return {link["ifname"] for link in self.links()}

    def link(self, name: str) -> dict:
        return self.ip_json("-s", "-d", "link", "show", "dev", name)[0]

    def __repr__(self) -> str:
        return f"Netns({self.name})"


class NsConnection(http.client.HTTPConnection):
    """http.client over a socket made inside a namespace."""

    def __init__(self, ns: Netns, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ns = ns

    def connect(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = self._ns.socket(family)
        try:
            sock.settimeout(self.timeout)
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Agent:
    """A tunnel_agent subprocess inside a namespace and a client to it."""

    def __init__(
        self, ns: Netns, service: Service, port: int, token: str | None, host: str = "127.0.0.1"
    ) -> None:
        self.ns = ns
        self.host = host
        self.service = service
        self.port = port
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None | bool = True,
        timeout: float = 15.0,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON or None); `token=True` sends the agent's own token."""
        conn = NsConnection(self.ns, self.host, self.port, timeout)
        headers = {}
        bearer = self.token if token is True else token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(payload) if payload else None
        except ValueError:
            return resp.status, payload.decode(errors="replace")

    def tunnels(self) -> list[dict]:
        status, body = self.request("GET", "/v1/tunnels")
        assert status == 200, body
        return body["tunnels"]

    def metrics(self) -> str:
        conn = NsConnection(self.ns, self.host, self.port, 10)
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def metric(self, name: str, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == want:
                return float(value)
        raise AssertionError(f"no sample {name}{{{want}}}")

    def wait_up(self, timeout: float = 30.0) -> None:
        def answers() -> bool:
            if self.service.proc.poll() is not None:
                raise RuntimeError(
                    f"agent in {self.ns.name} exited {self.service.proc.returncode}: "
                    f"{self.service.output()[1][-2000:]}"
                )
            try:
                return self.request("GET", "/healthz", timeout=2)[0] in (200, 503)
            except OSError:
                return False

        wait_for(answers, timeout, f"tunnel agent in {self.ns.name}")

    def kill(self) -> None:
        self.service.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.service.output()[1]


class Lab:
    """Namespaces, veths, agents and files made for one test (or benchmark), removed together."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.namespaces: list[Netns] = []
        self.services: list[Service] = []
        self.etc_dirs: list[Path] = []
        self.tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"{PREFIX}{self.tag}"
        self.tmp.mkdir(mode=0o700)
        self._veths = 0

    def netns(self, role: str) -> Netns:
        ns = Netns(f"{PREFIX}{self.tag}-{role}")
        ip("netns", "add", ns.name)
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def veth(self, a: Netns, b: Netns, *, mtu: int = 1500) -> tuple[str, str]:
        """A veth pair with one end in each namespace, both up; returns the two names."""
        self._veths += 1
        ea, eb = f"u{self._veths}a", f"u{self._veths}b"
        ip(
            "link",
            "add",
            ea,
            "netns",
            a.name,
            "mtu",
            str(mtu),
            "type",
            "veth",
            "peer",
            "name",
            eb,
            "netns",
            b.name,
            "mtu",
            str(mtu),
        )
        a.ip("link", "set", ea, "up")
        b.ip("link", "set", eb, "up")
        return ea, eb

    def hosts(
        self, count: int, *, family: int = 4, mtu: int = 1500, switch: bool | None = None
    ) -> list[tuple[Netns, str]]:
        """`count` hosts on one underlay segment: [(namespace, underlay address)].

        Two hosts share a veth; more hang off a bridge in a switch namespace.
        """
        names = [self.netns(chr(ord("a") + i)) for i in range(count)]
        addrs = [f"10.77.0.{i + 1}" if family == 4 else f"fd77::{i + 1}" for i in range(count)]
        plen = "24" if family == 4 else "64"
        devs: list[str] = []
        if count == 2 and not switch:
            devs = list(self.veth(names[0], names[1], mtu=mtu))
        else:
            sw = self.netns("sw")
            sw.ip("link", "add", "sw", "mtu", str(mtu), "type", "bridge")
            sw.ip("link", "set", "sw", "up")
            for host in names:
                mine, theirs = self.veth(host, sw, mtu=mtu)
                sw.ip("link", "set", theirs, "master", "sw")
                devs.append(mine)
        for host, dev, addr in zip(names, devs, addrs, strict=True):
            args = ["addr", "add", f"{addr}/{plen}", "dev", dev]
            host.ip(*(args + (["nodad"] if family == 6 else [])))
        return list(zip(names, addrs, strict=True))

    def hosts_file(self, ns: Netns, entries: dict[str, str]) -> None:
        """/etc/netns/<ns>/hosts: what `ip netns exec` shows processes as /etc/hosts."""
        path = Path("/etc/netns") / ns.name
        path.mkdir(parents=True, exist_ok=True)
        self.etc_dirs.append(path)
        lines = ["127.0.0.1 localhost"] + [f"{a} {n}" for n, a in entries.items()]
        (path / "hosts").write_text("\n".join(lines) + "\n")

    def token_file(self, token: str = "lab-token-0123456789") -> Path:
        path = self.tmp / "token"
        path.write_text(token + "\n")
        path.chmod(0o600)
        return path

    def agent(
        self,
        ns: Netns,
        *flags: str,
        token: str | None = "lab-token-0123456789",
        port: int = 9933,
        host: str = "0.0.0.0",
        wait: bool = True,
    ) -> Agent:
        """Start `python -m services.tunnel_agent` inside `ns` as a real subprocess."""
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        args = ["--listen", listen, "--peer-port", str(port)]
        if token is None:
            args.append("--insecure-no-auth")
        else:
            args += ["--token-file", str(self.token_file(token))]
        argv = ns.exec_argv([sys.executable, "-m", "services.tunnel_agent", *args, *flags])
        service = Service(argv)
        self.services.append(service)
        agent = Agent(ns, service, port, token, "::1" if ":" in host else "127.0.0.1")
        if wait:
            agent.wait_up()
        return agent

    def agents(self, namespaces: Sequence[Netns], *flags: str, **kwargs: Any) -> list[Agent]:
        """One agent per namespace, started together (each takes ~1 s to import and bind)."""
        started = [self.agent(ns, *flags, wait=False, **kwargs) for ns in namespaces]
        for agent in started:
            agent.wait_up()
        return started

    def run_in(self, ns: Netns, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.run(ns.exec_argv(argv), cwd=ROOT, **kwargs)

    def close(self) -> None:
        for service in self.services:
            with contextlib.suppress(Exception):
                service.close()
        for ns in reversed(self.namespaces):
            ns.release()
            ip("netns", "del", ns.name, check=False)
        for path in self.etc_dirs:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    with Lab() as made:
        yield made


def leftovers() -> list[str]:
    """Namespaces of ours that still exist (a test that cleans up leaves none of its own)."""
    run = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in run.splitlines() if line.startswith(PREFIX)]
