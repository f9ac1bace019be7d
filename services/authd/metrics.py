"""authd's self metrics (`one_cognit_authd_...`), read from live state at each scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .authenticator import Authenticator
from .pool import VerifierPool
from .revocation_watch import RevocationState
from .scheduler import FairScheduler
from .verdict import Reason

PREFIX = "one_cognit_authd"
# Every reason is exported from the start, so rate() and alerts see zeros, not gaps.
RESULTS = {
    Reason.VALID: "accepted",
    Reason.UNAVAILABLE: "error",
    Reason.BUSY: "error",
    Reason.BAD_REQUEST: "error",
}


def result_of(reason: Reason) -> str:
    """The `result` label of a reason: accepted, rejected or error."""
    return RESULTS.get(reason, "rejected")


class AuthdCollector(Collector):
    """Authentication counts by reason, the revocation list, the workers and their queue."""

    def __init__(
        self,
        counts: dict[Reason, int],
        revocations: Callable[[], RevocationState],
        pool: VerifierPool,
        authenticator: Authenticator,
    ) -> None:
        self._counts = counts
        self._revocations = revocations
        self._pool = pool
        self._authenticator = authenticator

    def collect(self) -> Iterator[Metric]:
        auth = CounterMetricFamily(
            f"{PREFIX}_authentications",
            "Authentication requests answered, by result and reason",
            labels=["result", "reason"],
        )
        for reason in Reason:
            auth.add_metric([result_of(reason), reason.value], self._counts.get(reason, 0))
        yield auth

        state = self._revocations()
        yield GaugeMetricFamily(
            f"{PREFIX}_revoked_ids",
            "Revocation ids in force from the revocation file",
            value=len(state.revocations.ids),
        )
        file_ok = GaugeMetricFamily(
            f"{PREFIX}_revocation_file_status",
            "1 for the revocation file's current status (loaded, missing, error, disabled)",
            labels=["status"],
        )
        for status in ("loaded", "missing", "error", "disabled"):
            file_ok.add_metric([status], 1.0 if state.status == status else 0.0)
        yield file_ok
        yield CounterMetricFamily(
            f"{PREFIX}_revocation_reloads",
            "Times the revocation list changed (the file was changed, created or removed)",
            value=state.reloads,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_revocation_reload_timestamp_seconds",
            "Unix time of the last revocation list change (0 before the first)",
            value=state.loaded_at,
        )

        pool = self._pool
        yield GaugeMetricFamily(
            f"{PREFIX}_workers",
            "Verifier worker processes running (--workers on the fast lane, one on the slow lane)",
            value=pool.alive,
        )
        restarts = CounterMetricFamily(
            f"{PREFIX}_worker_restarts",
            "Verifier workers replaced, by cause (cpu_limit = a Datalog bomb was stopped)",
            labels=["cause"],
        )
        for cause in ("cpu_limit", "crashed", "timeout", "protocol", "cancelled"):
            restarts.add_metric([cause], pool.restarts.get(cause, 0))
        yield restarts

        scheduler = pool.scheduler
        yield GaugeMetricFamily(
            f"{PREFIX}_workers_busy",
            "Verifier workers running a verification",
            value=scheduler.running,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_verifications_waiting",
            "Verifications waiting for a free worker",
            value=scheduler.waiting,
        )
        busy = CounterMetricFamily(
            f"{PREFIX}_busy_refusals",
            "Logins refused (503) for want of a worker, by cause (user_queue: that user's queue "
            "was full; queue: the whole queue was full; timeout: no worker came in time)",
            labels=["cause"],
        )
        for cause in FairScheduler.CAUSES:
            busy.add_metric([cause], scheduler.refusals.get(cause, 0))
        yield busy
        early = CounterMetricFamily(
            f"{PREFIX}_refused_without_worker",
            "Logins refused before any worker ran (size, encoding, block count, revocation, "
            "a remembered blown token), by reason",
            labels=["reason"],
        )
        for reason in (
            Reason.MALFORMED_TOKEN,
            Reason.TOKEN_LIMITS,
            Reason.REVOKED,
            Reason.DATALOG_LIMITS,
        ):
            early.add_metric([reason.value], self._authenticator.refused_early.get(reason, 0))
        yield early
        tokens, users = self._authenticator.blown.counts()
        yield GaugeMetricFamily(
            f"{PREFIX}_blown_tokens",
            "Authority blocks refused at once because a token with them blew the limits recently",
            value=tokens,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_heavy_users",
            "Users served after the others because one of their tokens blew the limits recently",
            value=users,
        )
