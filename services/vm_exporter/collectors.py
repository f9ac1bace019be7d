"""The exporter's self metrics: fresh families per scrape from one `State`, never any I/O.

The product families (`opennebula_*`) are rendered once per refresh by `exposition.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .snapshot import State

StateSource = Callable[[], State]
SELF = "one_cognit_vm_exporter"


class ExporterCollector(Collector):
    """`one_cognit_vm_exporter_*`: oned reachability, refresh timing, agent errors."""

    def __init__(self, state: StateSource) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        status = self._state().status
        oned = GaugeMetricFamily(
            f"{SELF}_oned_up", "1 when the last refresh read both pools from oned, else 0"
        )
        oned.add_metric([], int(status.oned_up))
        yield oned
        if status.refresh_duration_s is not None:
            duration = GaugeMetricFamily(
                f"{SELF}_refresh_duration_seconds", "Duration of the last refresh attempt"
            )
            duration.add_metric([], status.refresh_duration_s)
            yield duration
        if status.phases:
            phases = GaugeMetricFamily(
                f"{SELF}_refresh_phase_seconds",
                "Duration of each phase of the last complete refresh",
                labels=["phase"],
            )
            for phase, seconds in status.phases.items():
                phases.add_metric([phase], seconds)
            yield phases
        if status.last_success_at is not None:
            last = GaugeMetricFamily(
                f"{SELF}_last_refresh_timestamp_seconds",
                "Unix time of the last complete refresh (the data being served)",
            )
            last.add_metric([], status.last_success_at)
            yield last
        refreshes = CounterMetricFamily(
            f"{SELF}_refreshes", "Refresh attempts, by result", labels=["result"]
        )
        for result, n in sorted(status.refreshes.items()):
            refreshes.add_metric([result], n)
        yield refreshes
        errors = CounterMetricFamily(
            f"{SELF}_agent_errors",
            "Refreshes in which a host's power agent did not give a usable answer, by reason",
            labels=["one_host_id", "reason"],
        )
        for (host_id, reason), n in sorted(status.agent_errors.items()):
            errors.add_metric([str(host_id), reason], n)
        yield errors
