"""`make demo` / `one-cognit demo`: the whole stack on the simulator, with live per-VM power.

Starts the simulator with simulated hypervisors, then every service, each wired the way it
would be on a real cloud:
one rapl_agent per host on the host's own loopback address, reading that host's powercap tree
and /proc view; a tunnel_agent per host beside it; vm_exporter against the simulated oned;
authd; discovery; geo; and, when a `prometheus` binary is found, Prometheus with discovery
feeding it and deploy's rules loaded. Then it redraws a table of VM power and energy every
few seconds. Ctrl-C (or SIGTERM, or `--duration`) stops everything.

Adding a service to the demo is one `DemoService` entry in `SERVICES`.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from services.common.config import Listen, ServiceConfig, fail, load_config, option
from services.common.errors import ConfigError

from .config import parse_ipv4
from .demo_table import readings_from_agents, readings_from_exporter, render, vm_rows

PROG = "one-cognit demo"
RULES = (
    Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "rules" / "one-cognit.yml"
)
SESSION = "oneadmin:opennebula"
PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True)
class DemoConfig(ServiceConfig):
    """Flags of `one-cognit demo`."""

    listen: Listen = option(Listen("127.0.0.1", 2633), "simulated oned XML-RPC address")
    control_listen: Listen = option(Listen("127.0.0.1", 2634), "simulator control API address")
    hosts: int = option(3, "simulated hosts")
    vms_per_host: int = option(3, "VMs per simulated host")
    seed: int = option(0, "fleet seed")
    host_ip_base: str = option(
        "127.0.1.1", "loopback address of the first host's agents", parse=parse_ipv4, metavar="IPV4"
    )
    agent_port: int = option(8080, "port of every host's rapl_agent (on the host's address)")
    tunnel_port: int = option(9933, "port of every host's tunnel_agent (on the host's address)")
    exporter_listen: Listen = option(Listen("127.0.0.1", 9925), "vm_exporter address")
    authd_listen: Listen = option(Listen("127.0.0.1", 9932), "authd address")
    discovery_listen: Listen = option(Listen("127.0.0.1", 9930), "discovery address")
    geo_listen: Listen = option(Listen("127.0.0.1", 9931), "geo address")
    prometheus: str = option(
        "prometheus",
        "Prometheus binary to start with discovery feeding it and deploy's rules loaded, when "
        "it is found ('none': do not start one)",
        metavar="PATH",
    )
    prometheus_listen: Listen = option(Listen("127.0.0.1", 9090), "Prometheus address")
    refresh: float = option(3.0, "seconds between table refreshes", metavar="SECONDS")
    duration: float = option(0.0, "stop after this many seconds (0: until Ctrl-C)", metavar="S")
    workdir: Path | None = option(
        None, "keep hypervisor trees and logs here (default: a temporary directory, removed)"
    )

    def __post_init__(self) -> None:
        if self.hosts < 1 or self.vms_per_host < 0:
            raise ValueError("--hosts must be >= 1 and --vms-per-host >= 0")
        if self.hosts * self.vms_per_host > 64:
            raise ValueError("the demo burns real CPU per VM: keep hosts x vms-per-host <= 64")
        if self.refresh <= 0 or self.duration < 0:
            raise ValueError("--refresh must be > 0 and --duration >= 0")
        if not 0 < self.agent_port < 65536 or not 0 < self.tunnel_port < 65536:
            raise ValueError("--agent-port and --tunnel-port must be 1-65535")


@dataclasses.dataclass(frozen=True)
class Instance:
    """One process of a service: its label, command line, health URL and URLs to show."""

    label: str
    argv: list[str]
    health: str
    urls: list[str]
    notes: tuple[str, ...] = ()  # more lines for the header, under the URLs


@dataclasses.dataclass(frozen=True)
class Context:
    """What the service entries need to build their command lines."""

    config: DemoConfig
    workdir: Path
    one_auth: Path
    rpc_url: str
    hosts: list[dict[str, Any]]


def _module(name: str) -> list[str]:
    return [sys.executable, "-m", f"services.{name}"]


def _frontend(ctx: Context, name: str, listen: Listen) -> list[str]:
    """The command of a frontend service on `listen` that talks to the simulated oned."""
    return _module(name) + [
        "--listen", str(listen), "--one-xmlrpc", ctx.rpc_url, "--one-auth", str(ctx.one_auth),
    ]  # fmt: skip


def _per_host(
    ctx: Context,
    name: str,
    port: int,
    flags: Callable[[dict[str, Any]], list[str]],
    paths: tuple[str, ...],
) -> list[Instance]:
    """One `name` per simulated host, listening on the host's own address and `port`."""
    out = []
    for host in ctx.hosts:
        base = f"http://{host['hostname']}:{port}"
        out.append(
            Instance(
                f"{name} {host['host']}",
                _module(name) + ["--listen", f"{host['hostname']}:{port}", *flags(host)],
                f"{base}/healthz",
                [base + path for path in paths],
            )
        )
    return out


def rapl_agents(ctx: Context) -> list[Instance]:
    """One agent per simulated host, on the host's address, reading that host's trees."""
    return _per_host(
        ctx,
        "rapl_agent",
        ctx.config.agent_port,
        lambda host: [
            "--powercap-root",
            host["powercap_root"],
            "--proc-root",
            host["proc_root"],
            "--interval",
            "2",
        ],  # fmt: skip
        ("/metrics", "/api/v1/vms"),
    )


def tunnel_agents(ctx: Context) -> list[Instance]:
    """One tunnel_agent per simulated host, on the host's address, sharing a token. The sim
    runs no migrate shim, so they make no tunnel: they serve their addresses (geo asks them;
    the simulated hosts all share this machine's), their sweep and their metrics."""
    token = ctx.workdir / "tunnel.token"
    if not token.exists():
        token.write_text(secrets.token_urlsafe(32) + "\n")
        token.chmod(0o600)
    port = ctx.config.tunnel_port
    return _per_host(
        ctx,
        "tunnel_agent",
        port,
        lambda _host: ["--token-file", str(token), "--peer-port", str(port)],
        ("/v1/tunnels", "/v1/addresses"),
    )


def vm_exporter(ctx: Context) -> list[Instance]:
    listen = ctx.config.exporter_listen
    base = f"http://{listen}"
    return [
        Instance(
            "vm_exporter",
            _frontend(ctx, "vm_exporter", listen)
            + [
                "--agent-port",
                str(ctx.config.agent_port),
                "--refresh-interval",
                "3",
            ],  # fmt: skip
            f"{base}/healthz",
            [f"{base}/metrics"],
        )
    ]


def authd(ctx: Context) -> list[Instance]:
    listen = ctx.config.authd_listen
    return [
        Instance(
            "authd",
            _module("authd")
            + ["--listen", str(listen), "--revocation-file", str(ctx.workdir / "revoked")],
            f"http://{listen}/healthz",
            [f"http://{listen}/healthz  (POST /v1/authenticate)"],
        )
    ]


def prometheus_binary(config: DemoConfig) -> str | None:
    """The Prometheus the demo starts, or None when there is none to start."""
    if config.prometheus == "none":
        return None
    return shutil.which(config.prometheus)


def prometheus_config(ctx: Context) -> Path:
    """The demo's prometheus.yml: the rules of deploy/ and the services' own metrics; the
    jobs of the cloud's targets are discovery's to add (file_sd)."""
    config = ctx.workdir / "prometheus" / "prometheus.yml"
    config.parent.mkdir(parents=True, exist_ok=True)
    if config.exists():
        return config
    c = ctx.config
    lines = [
        "# the demo's Prometheus config; one-discovery adds its jobs (file_sd) below",
        "global:",
        "  scrape_interval: 5s",
        "  evaluation_interval: 5s",
    ]
    if RULES.exists():
        lines += ["rule_files:", f"  - {RULES}"]
    lines.append("scrape_configs:")
    for job, listen in (
        ("one_cognit_authd", c.authd_listen),
        ("one_cognit_discovery", c.discovery_listen),
        ("one_cognit_geo", c.geo_listen),
    ):
        lines += [f"  - job_name: {job}", "    static_configs:", f'      - targets: ["{listen}"]']
    # The hosts' tunnel agents, as deploy/prometheus/tunnel_agent.yml scrapes them.
    lines += [
        "  - job_name: one_cognit_tunnel_agent",
        "    file_sd_configs:",
        f'      - files: ["{ctx.workdir / "sd" / "scaphandre.json"}"]',
        "    relabel_configs:",
        "      - source_labels: [__address__]",
        '        regex: "(.+):[0-9]+"',
        f'        replacement: "${{1}}:{c.tunnel_port}"',
        "        target_label: __address__",
    ]
    config.write_text("\n".join(lines) + "\n")
    return config


def discovery(ctx: Context) -> list[Instance]:
    """discovery in file_sd mode into the workdir, patching the demo's prometheus.yml and
    reloading Prometheus when the demo runs one (else --reload none)."""
    listen = ctx.config.discovery_listen
    config = prometheus_config(ctx)
    check = [] if shutil.which("promtool") else ["--no-config-check"]
    if prometheus_binary(ctx.config):
        reload = ["--reload", "http", "--prometheus-url", f"http://{ctx.config.prometheus_listen}"]
    else:
        reload = ["--reload", "none"]
    return [
        Instance(
            "discovery",
            _frontend(ctx, "discovery", listen)
            + [
                "--sd-dir",
                str(ctx.workdir / "sd"),
                "--prometheus-config",
                str(config),
                *reload,
                "--reconcile-interval",
                "5",
                "--agent-port",
                str(ctx.config.agent_port),
                "--vm-exporter",
                str(ctx.config.exporter_listen),
                *check,
            ],  # fmt: skip
            f"http://{listen}/healthz",
            [f"http://{listen}/v1/targets  ({ctx.workdir / 'sd'}/*.json)"],
        )
    ]


def geo(ctx: Context) -> list[Instance]:
    """geo against the simulated oned: the generated hosts carry PUBLIC_IPs in a few countries."""
    listen = ctx.config.geo_listen
    base = f"http://{listen}"
    return [
        Instance(
            "geo",
            _frontend(ctx, "geo", listen)
            + [
                "--reconcile-interval",
                "30",
                "--agent-port",
                str(ctx.config.tunnel_port),
            ],  # fmt: skip
            f"{base}/healthz",
            [f"{base}/v1/hosts", f"{base}/v1/lookup?ip=193.0.6.139"],
        )
    ]


# Queries to try in the demo's Prometheus (deploy/prometheus/rules gives the recorded ones).
QUERIES = (
    "topk(5, opennebula_vm_power_consumption_uW / 1e6)",
    "flavour:opennebula_vm_power_watts:sum",
    "sum by (one_host_id) (increase(opennebula_vm_energy_joules_total[5m])) / 3600",
    'up{job="scaphandre"}',
    "ALERTS",
)


def prometheus(ctx: Context) -> list[Instance]:
    """Debian's (or any) Prometheus on the demo's prometheus.yml, which discovery keeps."""
    binary = prometheus_binary(ctx.config)
    assert binary is not None
    listen = ctx.config.prometheus_listen
    base = f"http://{listen}"
    notes = tuple(
        f"    {q}\n      {base}/graph?g0.expr={urllib.parse.quote(q)}&g0.tab=0&g0.range_input=15m"
        for q in QUERIES
    )
    return [
        Instance(
            "prometheus",
            [
                binary,
                f"--config.file={prometheus_config(ctx)}",
                f"--storage.tsdb.path={ctx.workdir / 'prometheus' / 'data'}",
                f"--web.listen-address={listen}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            f"{base}/-/ready",
            [f"{base}  (rules: {base}/rules, alerts: {base}/alerts, targets: {base}/targets)"],
            ("  ready queries (the recorded ones fill after a minute):", *notes),
        )
    ]


@dataclasses.dataclass(frozen=True)
class DemoService:
    """A service of the product and how the demo starts it; `available` says whether it can
    run here (default: the service is built)."""

    name: str
    instances: Callable[[Context], list[Instance]]
    available: Callable[[DemoConfig], bool] | None = None


# The demo starts, in this order, every service here that is available.
SERVICES: tuple[DemoService, ...] = (
    DemoService("rapl_agent", rapl_agents),
    DemoService("tunnel_agent", tunnel_agents),
    DemoService("vm_exporter", vm_exporter),
    DemoService("authd", authd),
    # Before discovery, whose first write of prometheus.yml then reloads a running Prometheus.
    DemoService("prometheus", prometheus, lambda c: prometheus_binary(c) is not None),
    DemoService("discovery", discovery),
    DemoService("geo", geo),
)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the demo itself dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Processes:
    """The demo's children; stopped in reverse order, SIGKILL after 5 s."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, label: str, argv: Sequence[str]) -> subprocess.Popen:
        log = (self.logs / (label.replace(" ", "-") + ".log")).open("wb")
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # the demo is single-threaded here
        )
        log.close()
        self.running.append((label, proc))
        return proc

    def log_tail(self, label: str, lines: int = 5) -> str:
        path = self.logs / (label.replace(" ", "-") + ".log")
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop_all(self) -> None:
        for _, proc in reversed(self.running):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5.0
        for _, proc in reversed(self.running):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running.clear()


def _get(url: str, timeout: float = 2.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _get_json(url: str, timeout: float = 2.0) -> Any:
    body = _get(url, timeout)
    if body is None:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, stop: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop():
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return True
        except urllib.error.HTTPError:
            return True  # it answers, even if degraded
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    return False


class Demo:
    """Runs the stack and the table until told to stop."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.keep = config.workdir is not None
        self.workdir = Path(config.workdir or tempfile.mkdtemp(prefix="one-cognit-demo-"))
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs = Processes(self.logs)
        self.stopping = False
        self.control = f"http://{config.control_listen}"
        self.rpc_url = f"http://{config.listen}/RPC2"
        self.exporter: str | None = None
        self.geo: str | None = None
        self.agents: dict[str, str] = {}
        self.header: list[str] = []

    def request_stop(self, *_: object) -> None:
        self.stopping = True

    def start_sim(self) -> None:
        c = self.config
        argv = [
            sys.executable, "-m", "sim",
            "--listen", str(c.listen), "--control-listen", str(c.control_listen),
            "--hosts", str(c.hosts), "--vms-per-host", str(c.vms_per_host),
            "--seed", str(c.seed), "--host-ip-base", c.host_ip_base,
            "--hypervisors", str(self.workdir / "hypervisors"),
            "--auth", SESSION, "--log-level", "warning",
        ]  # fmt: skip
        proc = self.procs.start("sim", argv)
        if not _wait_http(self.control + "/healthz", proc, 60, lambda: self.stopping):
            raise RuntimeError("the simulator did not start:\n" + self.procs.log_tail("sim", 10))

    def start_services(self) -> None:
        hosts = (_get_json(self.control + "/v1/hypervisors") or {}).get("hypervisors", [])
        one_auth = self.workdir / "one_auth"
        one_auth.write_text(SESSION + "\n")
        one_auth.chmod(0o600)
        ctx = Context(self.config, self.workdir, one_auth, self.rpc_url, hosts)
        self.header = [
            f"{PROG}: {len(hosts)} simulated hosts, "
            f"{self.config.hosts * self.config.vms_per_host} VMs",
            f"  oned (simulated)    {self.rpc_url}  session {SESSION}",
            f"  simulator control   {self.control}/v1/vms   "
            f"(e.g. curl -X POST {self.control}/v1/vms/0/poweroff)",
        ]
        for service in SERVICES:
            if self.stopping:
                return
            if service.available is not None:
                if not service.available(self.config):
                    self.header.append(
                        f"  {service.name:<19} not found: skipped (see the README to install it)"
                    )
                    continue
            for inst in service.instances(ctx):
                proc = self.procs.start(inst.label, inst.argv)
                if _wait_http(inst.health, proc, 30, lambda: self.stopping):
                    self.header.append(f"  {inst.label:<19} {'  '.join(inst.urls)}")
                    self.header.extend(inst.notes)
                    if service.name == "rapl_agent":
                        host = inst.label.split(" ", 1)[1]
                        self.agents[host] = inst.urls[1]
                    elif service.name == "vm_exporter":
                        self.exporter = inst.urls[0]
                    elif service.name == "geo":
                        self.geo = inst.urls[0]
                else:
                    self.header.append(
                        f"  {inst.label:<19} FAILED to start; log: {self.logs}: "
                        + self.procs.log_tail(inst.label, 1)
                    )
        self.header.append(f"  logs                {self.logs}")
        self.header.append("Ctrl-C stops everything.")
        self.header.append("")

    def frame(self) -> str:
        vms = (_get_json(self.control + "/v1/vms") or {}).get("vms", [])
        sim_hosts = (_get_json(self.control + "/v1/hypervisors") or {}).get("hypervisors", [])
        payloads = {host: _get_json(url) for host, url in self.agents.items()}
        agents = readings_from_agents(payloads)
        exporter = None
        source = "rapl_agent /api/v1/vms on each host"
        if self.exporter:
            text = _get(self.exporter)
            if text is not None:
                exporter = readings_from_exporter(text.decode(errors="replace"))
                source = "vm_exporter /metrics (joined with the hosts' agents)"
        if not self.agents and exporter is None:
            source = "none (no power service is built)"
        rows = vm_rows(vms, agents, exporter)
        templates = {}
        if self.geo:  # what geo wrote, as oned (the simulator) holds it
            for h in (_get_json(self.control + "/v1/hosts") or {}).get("hosts", []):
                templates[h["name"]] = h.get("template") or {}
        hosts = []
        for h in sim_hosts:
            reading = agents.get(h["host"])
            host = {
                "name": h["host"],
                "address": h["hostname"],
                "vms": len(h["vms"]),
                "measured_w": reading["host_w"] if reading else None,
                "model_w": h["power_w"],
            }
            if self.geo:
                template = templates.get(h["host"], {})
                host["public_ip"] = template.get("PUBLIC_IP", "")
                host["geolocation"] = template.get("GEOLOCATION", "")
                host["country"] = template.get("GEOLOCATION_COUNTRY", "")
            hosts.append(host)
        stamp = time.strftime("%H:%M:%S")
        return render(rows, hosts, f"{source}, at {stamp}", self.header)

    def loop(self) -> None:
        clear = sys.stdout.isatty()
        started = time.monotonic()
        while not self.stopping:
            text = self.frame()
            if clear:
                sys.stdout.write("\x1b[H\x1b[2J")
            sys.stdout.write(text + "\n\n")
            sys.stdout.flush()
            wake = time.monotonic() + self.config.refresh
            while not self.stopping and time.monotonic() < wake:
                if self.config.duration and time.monotonic() - started >= self.config.duration:
                    self.stopping = True
                    break
                if self.procs.running and self.procs.running[0][1].poll() is not None:
                    print(f"{PROG}: the simulator exited:\n" + self.procs.log_tail("sim", 10))
                    self.stopping = True
                    break
                time.sleep(0.1)

    def close(self) -> None:
        self.procs.stop_all()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Start everything, show the table until Ctrl-C / SIGTERM / --duration, stop everything."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(
            DemoConfig, args, prog=PROG, description=__doc__.splitlines()[0] if __doc__ else ""
        )
    except ConfigError as exc:
        fail(PROG, str(exc))
    demo = Demo(config)
    signal.signal(signal.SIGINT, demo.request_stop)
    signal.signal(signal.SIGTERM, demo.request_stop)
    code = 0
    try:
        print(f"{PROG}: starting the simulator and the services (logs in {demo.logs})", flush=True)
        demo.start_sim()
        demo.start_services()
        demo.loop()
    except RuntimeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        code = 1
    finally:
        print(f"{PROG}: stopping everything", flush=True)
        demo.close()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
