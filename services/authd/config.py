"""authd's flags (SPEC sections 4 and 7), validated once."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from services.common.config import Listen, ServiceConfig, option
from services.common.errors import ConfigError

from .verifier import Limits

# SPEC section 7: the Datalog limits are at least these.
MIN_MAX_TIME = 0.010
MIN_MAX_FACTS = 1000
MIN_MAX_ITERATIONS = 100


@dataclasses.dataclass(frozen=True)
class AuthdConfig(ServiceConfig):
    """What `one-authd` (server mode) is told on the command line or in `--config`."""

    listen: Listen = option(Listen("127.0.0.1", 9932), "address to listen on, HOST:PORT")
    revocation_file: Path | None = option(
        Path("/etc/one/auth/biscuit_revocations"),
        "revoked Biscuit revocation ids, one hex id per line; re-read within 2 s of a change; "
        "a missing file revokes nothing",
        metavar="PATH",
    )
    datalog_max_time: float = option(
        0.02, "Datalog run time limit per token, seconds (at least 0.01)", metavar="SECONDS"
    )
    datalog_max_facts: int = option(1000, "Datalog facts limit per token (at least 1000)")
    datalog_max_iterations: int = option(100, "Datalog iterations limit per token (at least 100)")
    verify_cpu_limit: float = option(
        0.1,
        "CPU seconds one verification may use before its worker is killed (stops Datalog "
        "bombs that the library's own time limit lets run)",
        metavar="SECONDS",
    )
    workers: int = option(2, "verifier worker processes")
    user_workers: int = option(
        1,
        "verifications of one user that run at once; the other workers stay free for other users",
    )
    user_queue: int = option(
        32, "verifications of one user that may wait for a worker; more are refused (503)"
    )
    queue: int = option(
        256, "verifications that may wait for a worker in all; more are refused (503)"
    )
    blown_token_ttl: float = option(
        600.0,
        "seconds a token that blew the verification limits (and every token attenuated from "
        "it) is refused without running, and its user served after the others; 0 = never",
        metavar="SECONDS",
    )

    def __post_init__(self) -> None:
        # NaN passes every `<` test below and then fails each verification in the worker.
        for flag, value in (
            ("--datalog-max-time", self.datalog_max_time),
            ("--verify-cpu-limit", self.verify_cpu_limit),
            ("--blown-token-ttl", self.blown_token_ttl),
        ):
            if not math.isfinite(value):
                raise ConfigError(f"{flag} must be a finite number of seconds")
        if self.datalog_max_time < MIN_MAX_TIME:
            raise ConfigError(f"--datalog-max-time must be at least {MIN_MAX_TIME} s")
        if self.datalog_max_facts < MIN_MAX_FACTS:
            raise ConfigError(f"--datalog-max-facts must be at least {MIN_MAX_FACTS}")
        if self.datalog_max_iterations < MIN_MAX_ITERATIONS:
            raise ConfigError(f"--datalog-max-iterations must be at least {MIN_MAX_ITERATIONS}")
        if self.verify_cpu_limit < 2 * self.datalog_max_time:
            raise ConfigError(
                "--verify-cpu-limit must be at least twice --datalog-max-time, so the "
                "Datalog limits act first"
            )
        if not 1 <= self.workers <= 64:
            raise ConfigError("--workers must be between 1 and 64")
        if not 1 <= self.user_workers <= self.workers:
            raise ConfigError("--user-workers must be between 1 and --workers")
        if not 1 <= self.queue <= 100_000:
            raise ConfigError("--queue must be between 1 and 100000")
        if not 1 <= self.user_queue <= self.queue:
            raise ConfigError("--user-queue must be between 1 and --queue")
        if self.blown_token_ttl < 0:
            raise ConfigError("--blown-token-ttl must be 0 or more seconds")

    @property
    def limits(self) -> Limits:
        return Limits(self.datalog_max_time, self.datalog_max_facts, self.datalog_max_iterations)
