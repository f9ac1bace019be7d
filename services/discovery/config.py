"""discovery's flags (SPEC section 8): one frozen dataclass, validated once."""

from __future__ import annotations

import dataclasses
import math
import shlex
import socket
from pathlib import Path

from services.common.config import Listen, ServiceConfig, option
from services.common.oned import OneOptions

from .addresses import host_part, parse_port
from .targets import ALL_JOBS, DEFAULT_JOBS

MODES = ("file_sd", "http_sd", "static")
RELOADS = ("http", "command", "none")


class JobList(tuple):
    """Job names; shown as `a,b,c` (as typed on the command line) in --help."""

    def __str__(self) -> str:
        return ",".join(self)


def parse_jobs(value: object) -> JobList:
    """`--jobs a,b` (or a YAML list) into a tuple of known job names, no repeats."""
    items = value if isinstance(value, list | tuple) else str(value).replace(" ", ",").split(",")
    jobs = tuple(dict.fromkeys(str(i).strip() for i in items if str(i).strip()))
    unknown = [j for j in jobs if j not in ALL_JOBS]
    if unknown:
        raise ValueError(f"unknown job(s) {', '.join(unknown)}; known: {', '.join(ALL_JOBS)}")
    if not jobs:
        raise ValueError(f"name at least one of {', '.join(ALL_JOBS)}")
    return JobList(jobs)


def parse_address(value: object) -> str:
    """A scrape address HOST:PORT ([IPv6]:PORT), as Prometheus writes targets."""
    text = str(value).strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        host = host if sep else ""
    else:
        host, sep, port = text.rpartition(":")
    address = host_part(host) if sep else None
    if address is None or parse_port(port) is None:
        raise ValueError(f"expected HOST:PORT or [IPv6]:PORT, got {text!r}")
    return f"{address}:{int(port)}"


def _this_host() -> str:
    return f"{socket.gethostname()}:9925"


@dataclasses.dataclass(frozen=True)
class DiscoveryConfig(ServiceConfig, OneOptions):
    """Where oned, Prometheus and its config are, and what discovery keeps in sync."""

    listen: Listen = option(Listen("127.0.0.1", 9930), "address to listen on, HOST:PORT")
    prometheus_config: Path = option(
        Path("/etc/one/prometheus/prometheus.yml"),
        "Prometheus' config file; only the jobs discovery owns are changed",
        metavar="PATH",
    )
    mode: str = option(
        "file_sd",
        "file_sd: <sd-dir>/<job>.json; http_sd: Prometheus asks GET /v1/sd/<job>; "
        "static: targets written into prometheus.yml",
        choices=MODES,
    )
    sd_dir: Path = option(
        Path("/var/lib/one-cognit/sd"), "where file_sd mode writes <job>.json", metavar="DIR"
    )
    prometheus_url: str = option(
        "http://127.0.0.1:9090", "Prometheus, for --reload http", metavar="URL"
    )
    reload: str = option(
        "http",
        "after prometheus.yml changes: http (POST /-/reload; needs --web.enable-lifecycle), "
        "command (--reload-command) or none",
        choices=RELOADS,
    )
    reload_command: str = option(
        "", "command for --reload command, e.g. 'systemctl reload prometheus'", metavar="COMMAND"
    )
    promtool: str = option(
        "promtool", "promtool used to check every new prometheus.yml", metavar="PATH"
    )
    config_check: bool = option(
        True, "check each new prometheus.yml with promtool (--no-config-check: YAML checks only)"
    )
    reconcile_interval: float = option(
        30.0, "seconds between full reads of oned (hooks make changes faster)", metavar="SECONDS"
    )
    jobs: tuple[str, ...] = option(
        JobList(DEFAULT_JOBS),
        f"comma-separated jobs to own, of {', '.join(ALL_JOBS)}",
        parse=parse_jobs,
        metavar="JOB,...",
    )
    agent_port: int = option(8080, "port of each host's power agent (scaphandre job)")
    node_exporter_port: int = option(9100, "port of each host's node_exporter")
    libvirt_exporter_port: int = option(9926, "port of each host's libvirt_exporter")
    vm_exporter: str = option(
        help="the one_vm_exporter job's target, HOST:PORT",
        factory=_this_host,
        parse=parse_address,
        metavar="HOST:PORT",
    )
    http_sd_url: str = option(
        "",
        "base URL Prometheus uses to reach this service in http_sd mode; "
        "none: http://<--listen>, loopback when it listens on all addresses",
        metavar="URL",
    )
    http_sd_refresh: float = option(
        15.0, "refresh_interval of the http_sd_configs written in http_sd mode", metavar="SECONDS"
    )
    token_file: Path | None = option(
        None,
        "file holding the bearer token the event routes require (the shims read it)",
        metavar="PATH",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("agent_port", "node_exporter_port", "libvirt_exporter_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise ValueError(f"--{name.replace('_', '-')} must be 1-65535, got {port}")
        for name in ("reconcile_interval", "http_sd_refresh"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 1):
                raise ValueError(
                    f"--{name.replace('_', '-')} must be at least 1 second, got {value}"
                )
        if self.reload == "command":
            if not self.reload_command.strip():
                raise ValueError("--reload command needs --reload-command")
            try:
                shlex.split(self.reload_command)
            except ValueError as exc:
                raise ValueError(f"--reload-command: {exc}") from None
        if self.http_sd_url and not self.http_sd_url.startswith(("http://", "https://")):
            raise ValueError(f"--http-sd-url must be an http(s) URL, got {self.http_sd_url!r}")

    @property
    def sd_base_url(self) -> str:
        """Where Prometheus reaches GET /v1/sd/<job>."""
        if self.http_sd_url:
            return self.http_sd_url.rstrip("/")
        host = self.listen.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.listen.port}"
