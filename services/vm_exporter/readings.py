"""What a host's power source said, and the reader of our agent's `/api/v1/vms` JSON (pure).

SPEC section 5 fixes the agent's reply: `{"timestamp", "host": {"power_uw", "energy_uj"},
"vms": [{"name", "one_vm_id", "pid", "helper_pids", "power_uw", "energy_uj"}]}`, with
`power_uw` null until the agent has two samples. A reply that breaks that shape anywhere is
rejected whole: the host is then reported down (unknown), never as zeros.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

AGENT = "agent"
SCAPHANDRE = "scaphandre"


class ReadingError(ValueError):
    """A power source answered something that is not its documented format."""


@dataclasses.dataclass(frozen=True, slots=True)
class VmReading:
    """One VM on a host: power in microwatts (None = not known yet), energy counter in uJ."""

    power_uw: int | None
    energy_uj: int | None = None
    # The agent's counter belongs to one QEMU process: a new pid is a new counter from 0.
    pid: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class HostReading:
    """One host's answer: its own power and its VMs by OpenNebula id."""

    source: str
    host_power_uw: int | None
    vms: Mapping[int, VmReading]
    host_energy_uj: int | None = None


def _number(value: Any, what: str, *, nullable: bool) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReadingError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ReadingError(f"{what} must be a finite non-negative number, got {value!r}")
    return int(value)


def _vm_id(entry: dict) -> int | None:
    vm_id = entry.get("one_vm_id")
    if vm_id is None:
        return None  # a QEMU guest that is not an OpenNebula VM
    if isinstance(vm_id, bool) or not isinstance(vm_id, int) or vm_id < 0:
        raise ReadingError(f"one_vm_id must be a non-negative integer, got {vm_id!r}")
    return vm_id


def parse_agent_vms(body: bytes | str) -> HostReading:
    """Our agent's `/api/v1/vms` reply as a HostReading, or ReadingError saying what is wrong."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReadingError(f"not JSON: {exc}") from None
    except RecursionError:
        # json's decoder recurses per nesting level: `[[[[...` from a broken agent.
        raise ReadingError("not JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ReadingError("expected a JSON object")
    host = doc.get("host")
    entries = doc.get("vms")
    if not isinstance(host, dict) or not isinstance(entries, list):
        raise ReadingError('expected "host" (object) and "vms" (list)')
    host_power = _number(host.get("power_uw"), "host.power_uw", nullable=True)
    host_energy = _number(host.get("energy_uj"), "host.energy_uj", nullable=True)
    vms: dict[int, VmReading] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ReadingError("every item of vms must be an object")
        vm_id = _vm_id(entry)
        if vm_id is None:
            continue
        power = _number(entry.get("power_uw"), f"vms[{vm_id}].power_uw", nullable=True)
        energy = _number(entry.get("energy_uj"), f"vms[{vm_id}].energy_uj", nullable=True)
        pid = entry.get("pid")
        pid = pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
        seen = vms.get(vm_id)
        if seen is not None:
            # Two QEMU processes claiming one VM both draw power: count both.
            power = None if power is None or seen.power_uw is None else power + seen.power_uw
            if energy is not None and seen.energy_uj is not None:
                energy += seen.energy_uj
            pid = None  # no single process owns the summed counter
        vms[vm_id] = VmReading(power, energy, pid)
    return HostReading(AGENT, host_power, MappingProxyType(vms), host_energy)
