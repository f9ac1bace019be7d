"""Per-VM power out of a real Scaphandre `/metrics` page (started with `--qemu`), pure.

The fallback for hosts that run Scaphandre instead of our agent (SPEC section 6). Scaphandre's
exposition has quirks this reader absorbs:
- `cmdline` is argv joined with no separator (`...-nameguest=one-42,debug-threads=on...`) and
  `vmname` is only set for `qemu-system*` processes, so the OpenNebula id is matched on
  `guest=one-<id>` exactly (one-52 is not one-524);
- the families of each process are interleaved with HELP/TYPE printed once, and the same
  series or the same label name may appear twice: a pid is counted once, a line that the
  text parser rejects for a repeated label name is read with its first value of each label;
- the QEMU process's helper kernel threads (`vhost-<pid>`, `kvm-nx-lpage-recovery-<pid>`,
  `kvm-pit/<pid>`) are listed as their own processes and belong to the VM of that pid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from types import MappingProxyType

from prometheus_client.parser import text_string_to_metric_families

from services.common.vm_identity import helper_owner, one_vm_id, vm_id_from_joined_cmdline

from .readings import SCAPHANDRE, HostReading, ReadingError, VmReading

PROCESS_POWER = "scaph_process_power_consumption_microwatts"
HOST_POWER = "scaph_host_power_microwatts"
_WANTED = (PROCESS_POWER, HOST_POWER)

_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


def vm_id_of(labels: dict[str, str]) -> int | None:
    """The OpenNebula VM id of a QEMU process's labels, None for any other process."""
    vmname = labels.get("vmname", "")
    if vmname:
        # Scaphandre cut the name out of `guest=` already: it decides, so a libvirt guest
        # named `one-52-test` is not read from the cmdline as `one-52`.
        return one_vm_id(vmname)
    return vm_id_from_joined_cmdline(labels.get("cmdline", ""))


def _samples(lines: list[str]) -> Iterator[tuple[str, dict[str, str], float]]:
    try:
        for family in text_string_to_metric_families("\n".join(lines) + "\n"):
            for sample in family.samples:
                yield sample.name, sample.labels, sample.value
        return
    except ValueError:
        pass
    # The page holds a line the text parser refuses (a repeated label name): go line by line.
    for line in lines:
        try:
            families = list(text_string_to_metric_families(line + "\n"))
        except ValueError:
            families = None
        if families is not None:
            for family in families:
                for sample in family.samples:
                    yield sample.name, sample.labels, sample.value
            continue
        repaired = _first_labels(line)
        if repaired is not None:
            yield repaired


def _first_labels(line: str) -> tuple[str, dict[str, str], float] | None:
    """A sample line read with the first value of each label name, or None when unreadable."""
    name, brace, rest = line.partition("{")
    labels_text, close, value_text = rest.rpartition("}")
    if not brace or not close:
        return None
    labels: dict[str, str] = {}
    for key, value in _LABEL.findall(labels_text):
        labels.setdefault(key, value.replace('\\"', '"').replace("\\\\", "\\"))
    try:
        value = float(value_text.split()[0])
    except (IndexError, ValueError):
        return None
    return name.strip(), labels, value


def _wanted(line: str) -> bool:
    for name in _WANTED:
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            return True
    return False


def parse_scaphandre(text: str) -> HostReading:
    """Host power and per-VM power (QEMU + helpers) of a Scaphandre page, or ReadingError."""
    # Only the two families used are parsed: a host lists hundreds of processes x 5 families.
    lines = [line for line in text.splitlines() if _wanted(line)]
    host_power: int | None = None
    per_pid: dict[int, float] = {}
    vm_of_pid: dict[int, int] = {}
    helpers: dict[int, int] = {}  # helper pid -> qemu pid
    seen_any = False
    for name, labels, value in _samples(lines):
        if value != value or value < 0 or value == float("inf"):
            continue  # NaN, negative or infinite: not a power
        if name == HOST_POWER:
            seen_any = True
            if host_power is None:
                host_power = int(value)
            continue
        if name != PROCESS_POWER:
            continue
        seen_any = True
        try:
            pid = int(labels.get("pid", ""))
        except ValueError:
            continue
        per_pid[pid] = value  # a repeated series counts once
        vm_id = vm_id_of(labels)
        if vm_id is not None:
            vm_of_pid[pid] = vm_id
            continue
        owner = helper_owner(labels.get("exe", ""))
        if owner is not None:
            helpers[pid] = owner
    if not seen_any:
        raise ReadingError(f"no {HOST_POWER} or {PROCESS_POWER} samples: not a Scaphandre page")
    totals: dict[int, float] = {}
    for pid, vm_id in vm_of_pid.items():
        totals[vm_id] = totals.get(vm_id, 0.0) + per_pid[pid]
    for pid, owner in helpers.items():
        vm_id = vm_of_pid.get(owner)
        if vm_id is not None:
            totals[vm_id] += per_pid[pid]
    if not all(math.isfinite(power) for power in totals.values()):
        raise ReadingError("a VM's power adds up to more than a float holds: not a power")
    vms = {vm_id: VmReading(int(round(power))) for vm_id, power in totals.items()}
    return HostReading(SCAPHANDRE, host_power, MappingProxyType(vms))
