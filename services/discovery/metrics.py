"""discovery's self metrics (`one_cognit_discovery_*`), read from `Discovery` at each scrape."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .service import Discovery

PREFIX = "one_cognit_discovery"


class DiscoveryCollector(Collector):
    """Targets per job, reconcile timing, writes, checks, reloads and events by result."""

    def __init__(self, discovery: Discovery) -> None:
        self._d = discovery

    def collect(self) -> Iterator[Metric]:
        d, stats = self._d, self._d.stats
        targets = GaugeMetricFamily(
            f"{PREFIX}_targets", "Targets discovery gives Prometheus, by job", labels=["job"]
        )
        for job, n in d.target_counts().items():
            targets.add_metric([job], n)
        yield targets
        oned = GaugeMetricFamily(f"{PREFIX}_oned_up", "1 when the last reconcile read oned")
        oned.add_metric([], int(stats.oned_up))
        yield oned
        synced = GaugeMetricFamily(
            f"{PREFIX}_synced", "1 once a reconcile has succeeded (targets are oned's, not empty)"
        )
        synced.add_metric([], int(d.synced))
        yield synced
        for name, value, help_text in (
            (
                "reconcile_duration_seconds",
                stats.reconcile_duration_s,
                "Duration of the last reconcile (both pools read, targets written)",
            ),
            (
                "last_reconcile_success_timestamp_seconds",
                stats.last_reconcile_success,
                "Unix time of the last successful reconcile",
            ),
            (
                "last_write_success_timestamp_seconds",
                stats.last_write_success,
                "Unix time discovery last brought every file it writes up to date",
            ),
            (
                "last_reload_success_timestamp_seconds",
                stats.last_reload_success,
                "Unix time of the last successful Prometheus reload",
            ),
        ):
            if value is not None:
                family = GaugeMetricFamily(f"{PREFIX}_{name}", help_text)
                family.add_metric([], value)
                yield family
        yield _counter(
            "reconciles",
            "Reconciles, by result (ok, oned_error)",
            ["result"],
            {(k,): v for k, v in stats.reconciles.items()},
        )
        yield _counter(
            "events",
            "Hook events, by kind and result (added, updated, removed, gone, unchanged, "
            "queued, invalid, oned_error)",
            ["kind", "result"],
            dict(stats.events),
        )
        yield _counter(
            "config_checks",
            "promtool checks of a new prometheus.yml, by result",
            ["result"],
            {(k,): v for k, v in stats.config_checks.items()},
        )
        yield _counter(
            "config_writes",
            "Writes of prometheus.yml (file=prometheus_config) and <job>.json (file=file_sd), "
            "by result",
            ["file", "result"],
            dict(stats.config_writes),
        )
        yield _counter(
            "reloads",
            "Prometheus reloads after prometheus.yml changed, by result",
            ["result"],
            {(k,): v for k, v in stats.reloads.items()},
        )
        invalid = CounterMetricFamily(
            f"{PREFIX}_invalid_values",
            "Template values skipped (PROMETHEUS_EXPORTER, HOSTNAME, label values), "
            "counted once per object and value",
        )
        invalid.add_metric([], stats.invalid_values)
        yield invalid


def _counter(name: str, help_text: str, labels: list[str], values: dict) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=labels)
    for key, n in sorted(values.items()):
        family.add_metric(list(key), n)
    return family
