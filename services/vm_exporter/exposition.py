"""The `/metrics` product text of one snapshot: OpenNebula's exporter's names, labels and HELP.

10,000 VMs make ~135,000 samples. prometheus-client's `generate_latest` needs ~7 us a sample
(about 1 s of event-loop time per scrape at that size), so the text is rendered once per
refresh from one table of families, in the format prometheus-client writes, and every scrape
serves the same bytes. `tests/vm_exporter/test_exposition.py` checks that the text parses to
the same samples as prometheus-client's own rendering of the same families.

Names come from OpenNebula's exporter (`src/oneprometheus/opennebula-exporter`) and the COGNIT
seed collector (SPEC section 6); the power and energy families are ours.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator

from services.common.oned import Host, Vm
from services.common.textformat import Number, escape_label, header, number

from .snapshot import Snapshot


@dataclasses.dataclass(frozen=True, slots=True)
class Family:
    """One metric family: exposed name, type, HELP, and its value getter (None = no sample)."""

    name: str
    type: str
    help: str
    value: Callable[..., Number | None]


VM_FAMILIES: tuple[Family, ...] = (
    Family(
        "opennebula_vm_host_id", "gauge", "Host ID where the VM is allocated", lambda vm: vm.host_id
    ),
    Family(
        "opennebula_vm_state",
        "gauge",
        "VM state 0:init 1:pending 2:hold 3:active 4:stopped 5:suspended 6:done 8:poweroff "
        "9:undeployed 10:clonning",
        lambda vm: vm.state,
    ),
    Family(
        "opennebula_vm_lcm_state",
        "gauge",
        "VM LCM state, only relevant for state 3 (active)",
        lambda vm: vm.lcm_state,
    ),
    Family(
        "opennebula_vm_mem_total_bytes",
        "gauge",
        "Total memory capacity",
        lambda vm: vm.memory_bytes,
    ),
    Family(
        "opennebula_vm_cpu_ratio",
        "gauge",
        "Total CPU capacity requested by the VM",
        lambda vm: vm.cpu,
    ),
    Family("opennebula_vm_cpu_vcpus", "gauge", "Total number of virtual CPUs", lambda vm: vm.vcpus),
    Family("opennebula_vm_disks", "gauge", "Total number of disks", lambda vm: len(vm.disks)),
    Family(
        "opennebula_vm_nics", "gauge", "Total number of network interfaces", lambda vm: len(vm.nics)
    ),
    Family(
        "opennebula_vm_ut_flavours",
        "gauge",
        "Flavours used to create the Serverless Runtime in the Provisioning Engine",
        lambda vm: vm.flavours,
    ),
)
DISK_SIZE = Family("opennebula_vm_disk_size_bytes", "gauge", "Size of the VM disk", lambda d: d)
VM_POWER = Family(
    "opennebula_vm_power_consumption_uW",
    "gauge",
    "Scaphandre power usage by the VM in uW",
    lambda power: power,
)
VM_ENERGY = Family(
    "opennebula_vm_energy_joules_total",
    "counter",
    "Energy used by the VM while this exporter ran, from its host's power agent, in joules",
    lambda energy: energy.joules(),
)
HOST_FAMILIES: tuple[Family, ...] = (
    Family(
        "opennebula_host_state",
        "gauge",
        "Host state 0:init 2:monitored 3:error 4:disabled 8:offline",
        lambda h: h.state,
    ),
    Family(
        "opennebula_host_mem_total_bytes",
        "gauge",
        "Total memory capacity",
        lambda h: h.mem_total_bytes,
    ),
    Family(
        "opennebula_host_mem_maximum_bytes",
        "gauge",
        "Total memory capacity considering overcommitment",
        lambda h: h.mem_max_bytes,
    ),
    Family(
        "opennebula_host_mem_usage_bytes",
        "gauge",
        "Total memory capacity allocated to VMs",
        lambda h: h.mem_usage_bytes,
    ),
    Family("opennebula_host_cpu_total_ratio", "gauge", "Total CPU capacity", lambda h: h.cpu_total),
    Family(
        "opennebula_host_cpu_maximum_ratio",
        "gauge",
        "Total CPU capacity considering overcommitment",
        lambda h: h.cpu_max,
    ),
    Family(
        "opennebula_host_cpu_usage_ratio",
        "gauge",
        "Total CPU capacity allocated to VMs",
        lambda h: h.cpu_usage,
    ),
    Family("opennebula_host_vms", "gauge", "Number of VMs allocated to the host", lambda h: h.vms),
)
HOST_POWER = Family(
    "opennebula_host_power_consumption_uW",
    "gauge",
    "Power usage of the host in uW, as its power agent measured it",
    lambda power: power,
)
HOST_SOURCE_UP = Family(
    "opennebula_host_power_source_up",
    "gauge",
    "1 when the host's power agent answered in the last refresh, 0 when it did not",
    lambda up: up,
)
VM_TOTAL_HELP = "Total number of VMs defined in OpenNebula"
HOST_TOTAL_HELP = "Total number of hosts defined in OpenNebula"


# Prometheus reads a sample value as a float64: an integer past this (oned writes numbers as
# text, so a template can hold a 400-digit MEMORY) would fail the whole scrape, every series
# with it. Such a value is left out, as a value that is not a number is.
_MAX_INT = int(sys.float_info.max)


def _series(family: Family, pairs: Iterator[tuple[str, object]]) -> Iterator[str]:
    """`name{labels} value` lines of `(label block, item)` pairs whose value is not None."""
    get, name = family.value, family.name
    for labels, item in pairs:
        value = get(item)
        if value is None or (isinstance(value, int) and not -_MAX_INT <= value <= _MAX_INT):
            continue
        yield f"{name}{labels} {number(value)}\n"


def _vm_parts(snap: Snapshot) -> Iterator[str]:
    vms: tuple[Vm, ...] = snap.vms
    yield header("opennebula_vm_total", "gauge", VM_TOTAL_HELP)
    yield f"opennebula_vm_total {len(vms)}\n"
    blocks = [f'{{one_vm_id="{vm.id}"}}' for vm in vms]
    for family in VM_FAMILIES:
        yield header(family.name, family.type, family.help)
        yield from _series(family, zip(blocks, vms, strict=True))
    yield header(DISK_SIZE.name, DISK_SIZE.type, DISK_SIZE.help)
    yield from _series(
        DISK_SIZE,
        (
            (f'{{one_vm_id="{vm.id}",disk_id="{escape_label(d.disk_id)}"}}', d.size_bytes)
            for vm in vms
            for d in vm.disks
        ),
    )
    power = snap.vm_power_uw
    yield header(VM_POWER.name, VM_POWER.type, VM_POWER.help)
    yield from _series(
        VM_POWER, ((b, power[vm.id]) for b, vm in zip(blocks, vms, strict=True) if vm.id in power)
    )
    energy = snap.energy
    yield header(VM_ENERGY.name, VM_ENERGY.type, VM_ENERGY.help)
    yield from _series(
        VM_ENERGY,
        ((b, energy[vm.id]) for b, vm in zip(blocks, vms, strict=True) if vm.id in energy),
    )


def _host_parts(snap: Snapshot) -> Iterator[str]:
    hosts: tuple[Host, ...] = snap.hosts
    yield header("opennebula_host_total", "gauge", HOST_TOTAL_HELP)
    yield f"opennebula_host_total {len(hosts)}\n"
    blocks = [f'{{one_host_id="{h.id}"}}' for h in hosts]
    for family in HOST_FAMILIES:
        yield header(family.name, family.type, family.help)
        yield from _series(family, zip(blocks, hosts, strict=True))
    for family, values in (
        (HOST_POWER, snap.host_power_uw),
        (HOST_SOURCE_UP, snap.host_source_up),
    ):
        yield header(family.name, family.type, family.help)
        yield from _series(family, ((f'{{one_host_id="{i}"}}', values[i]) for i in sorted(values)))


def render(snap: Snapshot | None) -> bytes:
    """The product text of a snapshot (empty before the first complete refresh)."""
    if snap is None:
        return b""
    return "".join([*_vm_parts(snap), *_host_parts(snap)]).encode()
