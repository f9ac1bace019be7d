"""The `/metrics` product text of one snapshot: OpenNebula's exporter's names, labels and HELP.

10,000 VMs make ~135,000 samples. prometheus-client's `generate_latest` needs ~7 us a sample
(about 1 s of event-loop time per scrape at that size), so the text is rendered once per
refresh from one table of families, in the format prometheus-client writes, and every scrape
serves the same bytes. `tests/vm_exporter/test_exposition.py` checks that the text parses to
the same samples as prometheus-client's own rendering of the same families.

Names come from OpenNebula's exporter (`src/oneprometheus/opennebula-exporter`) and the COGNIT
seed collector (SPEC section 6); the power, energy and carbon families are ours.
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
VM_CARBON = Family(
    "opennebula_vm_carbon_grams_total",
    "counter",
    "CO2e of the energy the VM used while this exporter ran, at the grid intensity of the host "
    "where it used it, in grams",
    lambda grams: grams,
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
HOST_ENERGY = Family(
    "opennebula_host_energy_joules_total",
    "counter",
    "Energy used by the host while this exporter ran, from its power agent (asked while the "
    "host runs VMs), in joules",
    lambda energy: energy.joules(),
)
HOST_INTENSITY = Family(
    "opennebula_host_carbon_intensity_gco2e_per_kwh",
    "gauge",
    "Carbon intensity of the host's electricity in gCO2e/kWh; where it comes from: "
    "opennebula_host_carbon_intensity_info",
    lambda intensity: intensity.gco2e_per_kwh,
)
HOST_INTENSITY_INFO = Family(
    "opennebula_host_carbon_intensity_info",
    "gauge",
    "Source of the host's carbon intensity (template, data_file, country or world), the "
    "host's country and the year of the figure",
    lambda _: 1,
)
HOST_CARBON = Family(
    "opennebula_host_carbon_grams_total",
    "counter",
    "CO2e of the energy the host used while this exporter ran, at its grid intensity, in grams",
    lambda grams: grams,
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
    carbon = snap.vm_carbon_g
    yield header(VM_CARBON.name, VM_CARBON.type, VM_CARBON.help)
    yield from _series(
        VM_CARBON,
        ((b, carbon[vm.id]) for b, vm in zip(blocks, vms, strict=True) if vm.id in carbon),
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
        (HOST_ENERGY, snap.host_energy),
        (HOST_INTENSITY, snap.intensity),
        (HOST_CARBON, snap.host_carbon_g),
    ):
        yield header(family.name, family.type, family.help)
        yield from _series(family, ((f'{{one_host_id="{i}"}}', values[i]) for i in sorted(values)))
    intensity = snap.intensity
    yield header(HOST_INTENSITY_INFO.name, HOST_INTENSITY_INFO.type, HOST_INTENSITY_INFO.help)
    yield from _series(
        HOST_INTENSITY_INFO,
        (
            (
                f'{{one_host_id="{i}",source="{intensity[i].source}",'
                f'country="{escape_label(intensity[i].country)}",'
                f'year="{escape_label(intensity[i].year)}"}}',
                intensity[i],
            )
            for i in sorted(intensity)
        ),
    )


def render(snap: Snapshot | None) -> bytes:
    """The product text of a snapshot (empty before the first complete refresh)."""
    if snap is None:
        return b""
    return "".join([*_vm_parts(snap), *_host_parts(snap)]).encode()
