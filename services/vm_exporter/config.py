"""vm_exporter's flags (SPEC section 6): one frozen dataclass, validated once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from services.common.config import Listen, ServiceConfig, option
from services.common.oned import OneOptions

# An agent reply larger than this is not a host's VM list; the host is reported down.
MAX_AGENT_REPLY = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ExporterConfig(ServiceConfig, OneOptions):
    """Where oned and the hosts' agents are, and how often and how patiently to ask them."""

    listen: Listen = option(
        Listen("0.0.0.0", 9925), "address to listen on, HOST:PORT", metavar="HOST:PORT"
    )
    agent_port: int = option(8080, "port of each host's power agent (rapl_agent or Scaphandre)")
    refresh_interval: float = option(15.0, "seconds between two reads of oned and the agents")
    agent_timeout: float = option(2.0, "seconds a host's agent has to answer, per refresh")
    agent_concurrency: int = option(64, "hosts asked at the same time")
    carbon_data: Path | None = option(
        None,
        "YAML file of the operator's grid intensities (gCO2e/kWh) per host and per country, "
        "used before the country averages; re-read when it changes",
        metavar="PATH",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.agent_port < 65536:
            raise ValueError(f"--agent-port must be 1-65535, got {self.agent_port}")
        if self.refresh_interval <= 0:
            raise ValueError(f"--refresh-interval must be > 0, got {self.refresh_interval}")
        if self.agent_timeout <= 0:
            raise ValueError(f"--agent-timeout must be > 0, got {self.agent_timeout}")
        if self.agent_concurrency < 1:
            raise ValueError(f"--agent-concurrency must be >= 1, got {self.agent_concurrency}")
