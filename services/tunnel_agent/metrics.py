"""tunnel_agent's self metrics (`one_cognit_tunnel_agent_...`), read from memory at each scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.common.periodic import Periodic

from .tunnels import Tunnels

PREFIX = "one_cognit_tunnel_agent"
CREATE_RESULTS = (
    "created",
    "renewed",
    "bad_request",
    "conflict",
    "peer_error",
    "exhausted",
    "kernel_error",
    "error",
)
DELETE_RESULTS = ("deleted", "absent", "peer_failed")
REMOVED_REASONS = ("expired", "orphaned", "incomplete")
ROLES = ("src", "dst")


class TunnelCollector(Collector):
    """Tunnels present and past their lease (from the last kernel read), and what was done."""

    def __init__(self, tunnels: Tunnels, sweeper: Callable[[], Periodic | None]) -> None:
        self._tunnels = tunnels
        self._sweeper = sweeper

    def collect(self) -> Iterator[Metric]:
        t = self._tunnels
        now = t.clock()
        present = GaugeMetricFamily(
            f"{PREFIX}_tunnels",
            "Tunnel halves on this host (complete ones), by role: src opened here, dst for a peer",
            labels=["role"],
        )
        for role in ROLES:
            present.add_metric(
                [role],
                sum(1 for h in t.halves if h.complete and h.lease and h.lease.role == role),
            )
        yield present
        yield GaugeMetricFamily(
            f"{PREFIX}_tunnels_incomplete",
            "Interfaces of ours that do not form a whole half (removed by the next sweep)",
            value=sum(1 for h in t.halves if not h.complete),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_tunnels_past_lease",
            "Tunnel halves whose lease has expired but which still exist (should be 0 after a "
            "sweep: a lasting value means tunnels leak)",
            value=sum(1 for h in t.halves if h.expired(now)),
        )
        creates = CounterMetricFamily(
            f"{PREFIX}_tunnel_creates",
            "Tunnel create requests by role (src: POST here, dst: a peer's PUT) and result",
            labels=["role", "result"],
        )
        for role in ROLES:
            for result in CREATE_RESULTS:
                creates.add_metric([role, result], t.counts.get(("create", role, result), 0))
        yield creates
        deletes = CounterMetricFamily(
            f"{PREFIX}_tunnel_deletes",
            "DELETE requests by result (peer_failed: our half went, the peer's could not be "
            "reached; its sweep removes it)",
            labels=["result"],
        )
        for result in DELETE_RESULTS:
            deletes.add_metric([result], t.counts.get(("delete", result), 0))
        yield deletes
        conflicts = CounterMetricFamily(
            f"{PREFIX}_allocation_conflicts",
            "Picks the peer refused as already in use (409), by what (vni, subnet)",
            labels=["what"],
        )
        for what in ("vni", "subnet", "None"):
            conflicts.add_metric([what], t.counts.get(("conflict", what), 0))
        yield conflicts
        removed = CounterMetricFamily(
            f"{PREFIX}_sweep_removed",
            "Tunnel halves removed by the sweep, by reason",
            labels=["reason"],
        )
        for reason in REMOVED_REASONS:
            removed.add_metric([reason], t.counts.get(("removed", reason), 0))
        yield removed
        sweeper = self._sweeper()
        sweeps = CounterMetricFamily(f"{PREFIX}_sweeps", "Sweeps run, by result", labels=["result"])
        cycles = sweeper.cycles if sweeper else 0
        failures = sweeper.failures if sweeper else 0
        sweeps.add_metric(["ok"], cycles - failures)
        sweeps.add_metric(["error"], failures)
        yield sweeps
        yield GaugeMetricFamily(
            f"{PREFIX}_sweep_duration_seconds",
            "How long the last sweep took",
            value=sweeper.last_duration_s if sweeper else 0.0,
        )
