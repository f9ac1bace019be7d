"""geo's self metrics (`one_cognit_geo_*`), read from the locator and database at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .database import Database
from .locator import Locator
from .report import OUTCOMES

P = "one_cognit_geo"


class GeoCollector(Collector):
    """Lookups, host outcomes, writes, sources' failures, reconciles and the database in use."""

    def __init__(self, database: Database, locator: Callable[[], Locator | None]) -> None:
        self._database = database
        self._locator = locator

    def collect(self) -> Iterator[Metric]:
        db = self._database
        lookups = CounterMetricFamily(
            f"{P}_lookups", "Database lookups, by result", labels=["result"]
        )
        for result, count in sorted(db.lookups.items()):
            lookups.add_metric([result], count)
        yield lookups
        current = db.current
        yield GaugeMetricFamily(
            f"{P}_database_build_timestamp_seconds",
            "When the database in use was built (its metadata's build_epoch), unix seconds",
            value=current.build_epoch,
        )
        info = GaugeMetricFamily(
            f"{P}_database_info",
            "The database in use: its type, file and attribution",
            labels=["type", "path", "attribution"],
        )
        info.add_metric([current.database_type, str(db.path), current.attribution], 1)
        yield info
        yield _counter(f"{P}_database_reloads", "Replaced database files, by result", db.reloads)
        yield GaugeMetricFamily(
            f"{P}_database_ok",
            "1 while the database file in place is the one in use, 0 when a replacement failed",
            value=0 if db.problem else 1,
        )
        locator = self._locator()
        if locator is None:
            return
        hosts = GaugeMetricFamily(
            f"{P}_hosts", "Hosts by the outcome of their last check", labels=["outcome"]
        )
        outcomes = Counter(report.outcome for report in locator.reports.values())
        for outcome in OUTCOMES:
            hosts.add_metric([outcome], outcomes.get(outcome, 0))
        yield hosts
        yield CounterMetricFamily(
            f"{P}_updates_written",
            "one.host.update calls that wrote a host's location",
            value=locator.updates["written"],
        )
        yield CounterMetricFamily(
            f"{P}_update_errors",
            "one.host.update calls oned refused or did not answer",
            value=locator.updates["failed"],
        )
        errors = CounterMetricFamily(
            f"{P}_source_errors",
            "Address sources that failed for a host, by source and reason",
            labels=["source", "reason"],
        )
        for (source, reason), count in sorted(locator.source_errors.items()):
            errors.add_metric([source, reason], count)
        yield errors
        yield _counter(f"{P}_reconciles", "Passes over the host pool", locator.reconciles)
        yield _counter(f"{P}_events", "Host hook events, by what became of them", locator.events)
        yield GaugeMetricFamily(
            f"{P}_reconcile_duration_seconds",
            "How long the last complete pass over the host pool took",
            value=locator.last_reconcile_s,
        )
        yield GaugeMetricFamily(
            f"{P}_last_reconcile_timestamp_seconds",
            "When the last complete pass over the host pool started (0: none yet)",
            value=locator.last_reconcile_at or 0,
        )


def _counter(name: str, documentation: str, counts: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["result"])
    for result, count in sorted(counts.items()):
        family.add_metric([result], count)
    return family
