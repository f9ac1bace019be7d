"""Splitting power by CPU time: written once, used for processes and, by aggregation, for VMs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from .procstat import PidStat

K = TypeVar("K")


def jiffy_deltas(
    prev: Mapping[int, PidStat], cur: Mapping[int, PidStat], born_after: int
) -> dict[int, int]:
    """CPU jiffies each process burned between two snapshots.

    A process seen in both (same pid, same starttime: a reused pid has another starttime) gets
    its difference. A process born
    after the earlier snapshot (starttime >= `born_after`, the earlier uptime in clock ticks),
    including one that reused a pid, burned all its jiffies inside the interval. A process
    without a baseline that is older than the interval is left out for this interval: its
    total would be a spike. Processes that exited are simply absent.
    """
    deltas: dict[int, int] = {}
    for pid, stat in cur.items():
        before = prev.get(pid)
        if before is not None and before.starttime == stat.starttime:
            deltas[pid] = max(0, stat.jiffies - before.jiffies)
        elif stat.starttime >= born_after:
            deltas[pid] = stat.jiffies
    return deltas


def split(total: int, deltas: Mapping[K, int], busy: int) -> dict[K, int]:
    """Share `total` by each key's jiffy delta over the interval's busy jiffies.

    When the processes' jiffies add up to more than the busy jiffies (sampling skew between
    /proc/stat and the per-process files), the shares are normalised so they never add up
    to more than `total`. Integer floors keep the sum <= total.
    """
    denominator = max(busy, sum(deltas.values()))
    if denominator <= 0 or total <= 0:
        return dict.fromkeys(deltas, 0)
    return {key: total * delta // denominator for key, delta in deltas.items()}


def aggregate(values: Mapping[int, int], groups: Mapping[K, Iterable[int]]) -> dict[K, int]:
    """Sum per-pid figures over each group's pids (a VM = QEMU + its helpers)."""
    return {key: sum(values.get(pid, 0) for pid in pids) for key, pids in groups.items()}
