"""RAPL counter arithmetic in integer micro-units: the one place wraparound is handled."""

from __future__ import annotations

MICRO = 1_000_000


def counter_delta_uj(prev: int, cur: int, max_range_uj: int | None) -> int | None:
    """Energy between two readings of one RAPL counter, corrected for a wraparound.

    Returns None when the readings cannot be a plausible interval: the counter went back but
    its range is unknown, or the (corrected) delta covers more than half the counter's range,
    which a sampler reading every few seconds only sees when the counter was reset or jumped.
    Never negative.
    """
    if max_range_uj is not None and max_range_uj <= 0:
        max_range_uj = None
    if cur >= prev:
        delta = cur - prev
    elif max_range_uj is None or prev > max_range_uj:
        return None
    else:
        delta = cur + max_range_uj - prev
    if max_range_uj is not None and delta > max_range_uj // 2:
        return None
    return delta


def power_uw(delta_uj: int, seconds: float) -> int | None:
    """Average power over an interval in microwatts; None for an empty interval."""
    if seconds <= 0:
        return None
    return round(delta_uj / seconds)


def joules(microjoules: int | float) -> float:
    """Microjoules as joules."""
    return microjoules / MICRO
