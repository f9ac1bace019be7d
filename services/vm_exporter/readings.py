"""What a host's power source said, checked for plausibility where it enters (pure).

Both readers (`agent_vms.py` for our agent's JSON, `scaphandre.py` for a Scaphandre page)
hand every value to a `ReadingBuilder`, which refuses what no machine can draw: a host or VM
over `MAX_POWER_UW`, an energy counter over `MAX_ENERGY_UJ`, NaN, infinities, negatives. A
refused value is a `ReadingError`, which makes that host's reply a `bad_reply`: the host is
reported down (unknown), never as zeros, and no other host is affected. With every value
bounded, the sums, the energy integration and the rendered text cannot overflow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Protocol

AGENT = "agent"
SCAPHANDRE = "scaphandre"

# 100 kW: more than any server draws (a full 42U rack is 10-40 kW), so more than any VM.
MAX_POWER_UW = 100_000 * 1_000_000
# 100 kW for 20 years: more than any counter that started on a running host can hold.
MAX_ENERGY_UJ = MAX_POWER_UW * 20 * 366 * 86_400


class ReadingError(ValueError):
    """A power source answered something that is not its documented format, or implausible."""


@dataclasses.dataclass(frozen=True, slots=True)
class VmReading:
    """One VM on a host: power in microwatts (None = not known yet), energy counter in uJ."""

    power_uw: int | None
    energy_uj: int | None = None
    # The agent's counter belongs to one QEMU process: a new pid is a new counter from 0.
    pid: int | None = None


class VmReadings(Mapping[int, VmReading]):
    """A host's VMs by OpenNebula id, kept as plain tuples until one is looked up.

    A legal 16 MiB reply lists ~120,000 VMs, nearly all of them unknown to oned; as objects
    they would be tracked by the cyclic garbage collector, whose full passes then stall the
    event loop for ~0.1 s each, while tuples of numbers are untracked after one pass.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[int, tuple[int | None, int | None, int | None]]) -> None:
        self._raw = raw

    def __getitem__(self, vm_id: int) -> VmReading:
        return VmReading(*self._raw[vm_id])

    def __iter__(self) -> Iterator[int]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"VmReadings({len(self._raw)} VMs)"


@dataclasses.dataclass(frozen=True, slots=True)
class HostReading:
    """One host's answer: its own power and its VMs by OpenNebula id."""

    source: str
    host_power_uw: int | None
    vms: Mapping[int, VmReading]
    host_energy_uj: int | None = None


def _bounded(value: object, what: str, bound: int) -> int:
    # bool is an int to Python, never a figure to an agent.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReadingError(f"{what} must be a number, got {value!r:.80}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ReadingError(f"{what} must be finite, got {value!r}")
    if value < 0:
        raise ReadingError(f"{what} must not be negative, got {value!r:.80}")
    if value > bound:
        # Compared before any arithmetic: a 309-digit integer stops here.
        raise ReadingError(f"{what} is over the plausible bound {bound}: {str(value)[:40]}...")
    return int(value)


def power_uw(value: object, what: str = "power_uw") -> int:
    """A power figure in microwatts, or ReadingError when no machine draws that."""
    return _bounded(value, what, MAX_POWER_UW)


def energy_uj(value: object, what: str = "energy_uj") -> int:
    """An energy counter in microjoules, or ReadingError when no counter can hold that."""
    return _bounded(value, what, MAX_ENERGY_UJ)


class ReadingBuilder:
    """Collects one host's figures as a reader finds them; `build()` gives the HostReading."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.host_power_uw: int | None = None
        self.host_energy_uj: int | None = None
        self._vms: dict[int, tuple[int | None, int | None, int | None]] = {}

    def add_vm(self, vm_id: int, power: int | None, energy: int | None, pid: int | None) -> None:
        """One process's figures for a VM; a VM listed twice is the sum of both, checked."""
        seen = self._vms.get(vm_id)
        if seen is not None:
            # Two QEMU processes claiming one VM both draw power: count both. The sum is a
            # VM's figure and meets the same bound (two plausible halves can make an absurd whole).
            seen_power, seen_energy, _ = seen
            power = None if power is None or seen_power is None else power + seen_power
            if energy is not None and seen_energy is not None:
                energy = energy_uj(energy + seen_energy, f"VM {vm_id}'s energy (listed twice)")
            if power is not None:
                power = power_uw(power, f"VM {vm_id}'s power (listed twice)")
            pid = None  # no single process owns the summed counter
        self._vms[vm_id] = (power, energy, pid)

    def build(self) -> HostReading:
        return HostReading(
            self.source, self.host_power_uw, VmReadings(self._vms), self.host_energy_uj
        )


class StreamReader(Protocol):
    """A reply parser fed as the body arrives (`agent_vms`, `scaphandre`)."""

    def feed(self, data: bytes) -> None: ...
    def close(self) -> HostReading: ...


def read_whole(reader: StreamReader, body: bytes | str, step: int) -> HostReading:
    """A whole reply fed to a streaming reader `step` bytes at a time (tests, tools)."""
    data = body.encode() if isinstance(body, str) else body
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])
    return reader.close()
