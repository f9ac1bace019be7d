"""The agent's own metrics (one_cognit_rapl_agent_*), read from its state; no I/O.

The per-VM energy family changes only with a snapshot and has a sample per VM: it is rendered
with the snapshot (`exposition.render_vm_energy`), not on every scrape.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from services.common.periodic import Periodic

from .state import AgentState

PREFIX = "one_cognit_rapl_agent"


class AgentCollector:
    """Sampling health and per-VM energy in base units, from the published snapshot."""

    def __init__(self, state: AgentState, sampling: Periodic) -> None:
        self.state = state
        self.sampling = sampling

    def collect(self) -> Iterator[Metric]:
        state = self.state
        samples = CounterMetricFamily(
            f"{PREFIX}_samples", "Samples taken, by result", labels=["result"]
        )
        for outcome, count in state.samples.items():
            # A sample that raised published nothing new either.
            extra = self.sampling.failures if outcome == "kept_last" else 0
            samples.add_metric([outcome], count + extra)
        yield samples
        yield GaugeMetricFamily(
            f"{PREFIX}_sample_duration_seconds",
            "Time the last sample took to read counters and /proc and compute power",
            value=state.last_duration_s,
        )
        up = GaugeMetricFamily(
            f"{PREFIX}_source_up",
            "1 when a counter or /proc source read well in the last sample, 0 when it did not",
            labels=["source"],
        )
        for source, ok in sorted(state.sources.items()):
            up.add_metric([source], 1 if ok else 0)
        yield up
        published = state.published
        if published is None:
            return
        snap = published.snapshot
        yield GaugeMetricFamily(
            f"{PREFIX}_snapshot_timestamp_seconds",
            "Unix time of the snapshot being served",
            value=snap.timestamp,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_processes", "Processes seen in the snapshot", value=snap.process_count
        )
