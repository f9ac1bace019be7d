"""Reading the exporter from tests: parsed samples and bounded polling."""

from __future__ import annotations

from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from testkit import http

T = TypeVar("T")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(url: str) -> Samples:
    """Every sample of `GET url`, keyed by (name, sorted labels)."""
    status, _, body = http("GET", url, timeout=10)
    assert status == 200, body[:300]
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(data: Samples, name: str, **labels: str | int) -> float | None:
    """One sample's value, or None when the series is absent."""
    key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
    return data.get(key)


def series(data: Samples, name: str, label: str) -> dict[str, float]:
    """All samples of `name`, by the value of `label`."""
    return {dict(labels)[label]: v for (n, labels), v in data.items() if n == name}
