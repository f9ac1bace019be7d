"""Counter deltas: wraparound corrected once, never negative, implausible jumps refused."""

from __future__ import annotations

import pytest

from services.rapl_agent.counters import counter_delta_uj, joules, power_uw

MAX = 262_143_328_850


def test_plain_increase():
    assert counter_delta_uj(1_000, 51_000, MAX) == 50_000


def test_wraparound_is_corrected_with_max_energy_range():
    prev = MAX - 30_000_000
    assert counter_delta_uj(prev, 20_000_000, MAX) == 50_000_000


def test_wrap_landing_exactly_on_zero():
    assert counter_delta_uj(MAX - 5, 0, MAX) == 5


def test_counter_going_back_without_a_known_range_gives_no_delta():
    assert counter_delta_uj(500, 100, None) is None
    assert counter_delta_uj(500, 100, 0) is None


def test_reset_that_looks_like_a_wrap_is_refused():
    # A reset to near zero from mid-range would "wrap" through more than half the range.
    assert counter_delta_uj(MAX // 3, 10, MAX) is None


def test_forward_jump_over_half_the_range_is_refused():
    assert counter_delta_uj(10, MAX - 10, MAX) is None


def test_previous_above_range_is_garbage():
    assert counter_delta_uj(MAX + 10, 5, MAX) is None


def test_delta_is_never_negative():
    for prev, cur in [(0, 0), (5, 5), (MAX - 1, 0), (100, 99)]:
        delta = counter_delta_uj(prev, cur, MAX)
        assert delta is None or delta >= 0


def test_power_and_units():
    assert power_uw(50_000_000, 2.0) == 25_000_000
    assert power_uw(1, 0.0) is None
    assert joules(1_500_000) == pytest.approx(1.5)
