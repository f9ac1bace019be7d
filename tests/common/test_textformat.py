"""The shared text-format pieces parse back, with prometheus-client's parser, to what went in."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.textformat import escape_label, header, number


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (0.5, "0.5"), (-1.0, "-1.0"), (1e20, "1e+20"), (math.inf, "+Inf")],
)
def test_numbers(value, text):
    assert number(value) == text


def test_nan():
    assert number(math.nan) == "NaN"


def test_escaped_label_and_header_round_trip():
    raw = 'qemu "x"\\y\nz'
    text = header("m", "gauge", "help") + f'm{{cmdline="{escape_label(raw)}"}} {number(2.5)}\n'
    (family,) = text_string_to_metric_families(text)
    (sample,) = family.samples
    assert family.type == "gauge" and family.documentation == "help"
    assert sample.labels == {"cmdline": raw} and sample.value == 2.5
