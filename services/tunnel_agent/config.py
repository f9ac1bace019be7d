"""tunnel_agent's flags (SPEC sections 4 and 8), validated once."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from pathlib import Path
from typing import Any, NamedTuple

from services.common.config import Listen, ServiceConfig, option
from services.common.errors import ConfigError

from .allocate import MAX_MTU, MIN_MTU, parse_pool, parse_vni_range


class VniRange(NamedTuple):
    """`--vni-range LOW-HIGH`, inclusive."""

    low: int
    high: int

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


def _vni_range(value: Any) -> VniRange:
    return VniRange(*parse_vni_range(value))


def _mtu(value: Any) -> str:
    text = str(value).strip().lower()
    if text == "auto":
        return text
    if not text.isdigit() or not MIN_MTU <= int(text) <= MAX_MTU:
        raise ValueError(f"expected auto or a number {MIN_MTU}-{MAX_MTU}, got {value!r}")
    return str(int(text))


@dataclasses.dataclass(frozen=True)
class TunnelAgentConfig(ServiceConfig):
    """What `one-tunnel-agent` is told on the command line or in `--config`."""

    listen: Listen = option(Listen("0.0.0.0", 9933), "address to listen on, HOST:PORT")
    token_file: Path | None = option(
        None,
        "file holding the bearer token every state-changing call carries (agent to agent and "
        "shim to agent); required unless --insecure-no-auth",
        metavar="PATH",
    )
    insecure_no_auth: bool = option(
        False, "run without a token: anyone who reaches the port may create tunnels"
    )
    overlay_pool: ipaddress.IPv4Network = option(
        ipaddress.IPv4Network("192.168.69.0/24"),
        "IPv4 network the overlay addresses come from, one /30 per tunnel; must not overlap "
        "a route of this host",
        parse=parse_pool,
        metavar="CIDR",
    )
    vni_range: VniRange = option(
        VniRange(4096, 8191),
        "VXLAN ids handed out, LOW-HIGH",
        parse=_vni_range,
        metavar="LOW-HIGH",
    )
    mtu: str = option(
        "auto",
        "overlay MTU; auto = the underlay route's MTU to the peer minus 50 (IPv4) or 70 (IPv6)",
        parse=_mtu,
        metavar="auto|N",
    )
    lease_ttl: int = option(
        3600,
        "seconds a tunnel lives unless renewed (the shim renews it while it migrates)",
        metavar="SECONDS",
    )
    peer_port: int = option(9933, "port of the peers' agents")
    peer_timeout: float = option(
        5.0,
        "seconds one call to a peer's agent (or resolving its name) may take",
        metavar="SECONDS",
    )
    sweep_interval: float = option(
        60.0, "seconds between sweeps for expired and orphaned tunnels", metavar="SECONDS"
    )
    orphan_grace: float = option(
        30.0,
        "seconds after its creation before a half is checked against its peer (the peer's "
        "half may still be on its way)",
        metavar="SECONDS",
    )

    def __post_init__(self) -> None:
        if self.token_file is None and not self.insecure_no_auth:
            raise ConfigError(
                "--token-file is required (the bearer token shared by the agents and the "
                "migrate shim); --insecure-no-auth runs without one"
            )
        if not 1 <= self.lease_ttl <= 7 * 86400:
            raise ConfigError("--lease-ttl must be 1 to 604800 seconds")
        if not 1 <= self.peer_port <= 65535:
            raise ConfigError("--peer-port must be 1-65535")
        for flag, value, low, high in (
            ("--peer-timeout", self.peer_timeout, 0.05, 120.0),
            ("--sweep-interval", self.sweep_interval, 0.05, 86400.0),
            ("--orphan-grace", self.orphan_grace, 0.0, 86400.0),
        ):
            if not math.isfinite(value) or not low <= value <= high:
                raise ConfigError(f"{flag} must be {low:g} to {high:g} seconds")

    @property
    def fixed_mtu(self) -> int | None:
        """The --mtu given, or None for auto."""
        return None if self.mtu == "auto" else int(self.mtu)
