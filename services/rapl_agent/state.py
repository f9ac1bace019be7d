"""What the running agent holds between samples: the published snapshot and sample counts.

Health (which zone or /proc failed, and why) lives in the app's `Health` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .figures import Snapshot

OUTCOMES = ("ok", "no_power", "merged", "kept_last")


@dataclass(frozen=True)
class Published:
    """A snapshot and its rendered scaph_* text, swapped in as one object."""

    snapshot: Snapshot
    text: bytes


@dataclass
class AgentState:
    """Mutated only by the sampling task, read by handlers and collectors on the same loop."""

    published: Published | None = None
    # Samples by outcome: ok (published), no_power (published without power: counters or
    # /proc unreadable), merged (too soon after the last: the next one covers it), kept_last
    # (nothing new to publish).
    samples: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    last_duration_s: float = 0.0
    sources: dict[str, bool] = field(default_factory=dict)  # zone key or "proc" -> read well
