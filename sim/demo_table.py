"""The demo's live table: per-VM power and energy joined from what the services report.

Pure functions: inputs are the simulator's VM list, the agents' `/api/v1/vms` payloads or the
exporter's `/metrics` text; output is the text the terminal shows (grams of CO2e only from the
exporter, which knows where each host is). Power follows SPEC 6: a VM
that is not running draws 0 W, a running VM whose host's agent did not answer is unknown (not
zero), a running VM its agent does not list draws 0 W.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

UNKNOWN = "?"


@dataclass(frozen=True)
class Reading:
    """One VM's power (None until the source has two samples) and energy."""

    power_w: float | None
    energy_j: float
    carbon_g: float | None = None  # vm_exporter's CO2e counter (the agents know no carbon)


@dataclass(frozen=True)
class VmRow:
    id: int
    name: str
    host: str
    state: str
    power: str
    energy: str
    carbon: str = "-"


def vm_state_label(vm: Mapping[str, Any]) -> str:
    """RUNNING, MIGRATE... for ACTIVE VMs (oned's LCM_STATE), else the VM STATE."""
    return vm["lcm_state"] if vm["state"] == "ACTIVE" else vm["state"]


def readings_from_agents(payloads: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """Per host name: None when its agent did not answer, else {vm id: Reading} and host W."""
    out: dict[str, Any] = {}
    for host, payload in payloads.items():
        if payload is None:
            out[host] = None
            continue
        vms = {}
        for vm in payload.get("vms", []):
            if vm.get("one_vm_id") is None:
                continue
            power = vm.get("power_uw")
            vms[int(vm["one_vm_id"])] = Reading(
                None if power is None else power / 1e6, vm.get("energy_uj", 0) / 1e6
            )
        host_power = (payload.get("host") or {}).get("power_uw")
        out[host] = {"vms": vms, "host_w": None if host_power is None else host_power / 1e6}
    return out


def readings_from_exporter(text: str) -> dict[int, Reading]:
    """Per VM id, from vm_exporter's `/metrics` (power in uW, energy counter in J)."""
    power: dict[int, float] = {}
    energy: dict[int, float] = {}
    carbon: dict[int, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            vm_id = sample.labels.get("one_vm_id")
            if vm_id is None or not vm_id.lstrip("-").isdigit():
                continue
            if sample.name == "opennebula_vm_power_consumption_uW":
                power[int(vm_id)] = sample.value / 1e6
            elif sample.name == "opennebula_vm_energy_joules_total":
                energy[int(vm_id)] = sample.value
            elif sample.name == "opennebula_vm_carbon_grams_total":
                carbon[int(vm_id)] = sample.value
    return {
        vm_id: Reading(power.get(vm_id), energy.get(vm_id, 0.0), carbon.get(vm_id))
        for vm_id in sorted(set(power) | set(energy))
    }


def _fmt(value: float | None, digits: int) -> str:
    return UNKNOWN if value is None else f"{value:.{digits}f}"


def vm_rows(
    vms: Sequence[Mapping[str, Any]],
    agents: Mapping[str, Any] | None = None,
    exporter: Mapping[int, Reading] | None = None,
) -> list[VmRow]:
    """Join the VMs with the readings of the exporter (preferred) or the agents."""
    rows = []
    for vm in sorted(vms, key=lambda v: v["id"]):
        if vm["state"] == "DONE":
            continue
        running = vm["state"] == "ACTIVE" and vm["lcm_state"] == "RUNNING"
        host = vm.get("host") or "-"
        power: float | None
        energy: float | None
        carbon: float | None = None
        if exporter is not None:
            reading = exporter.get(vm["id"])
            power = reading.power_w if reading else (0.0 if not running else None)
            energy = reading.energy_j if reading else None
            carbon = reading.carbon_g if reading else None
        else:
            answered = (agents or {}).get(host) if running else None
            if not running:
                power, energy = 0.0, None
            elif answered is None:
                power, energy = None, None
            else:
                reading = answered["vms"].get(vm["id"])
                power = reading.power_w if reading else 0.0
                energy = reading.energy_j if reading else 0.0
        rows.append(
            VmRow(
                vm["id"],
                vm["name"],
                host,
                vm_state_label(vm),
                _fmt(power, 2),
                "-" if energy is None else _fmt(energy, 1),
                "-" if carbon is None else _fmt(carbon, 4),
            )
        )
    return rows


def render(
    rows: Sequence[VmRow],
    hosts: Sequence[Mapping[str, Any]],
    source: str,
    header: Sequence[str] = (),
) -> str:
    """The frame the terminal shows: URLs, the VM table and one line per host."""
    lines = list(header)
    widths = (4, max([4, *(len(r.name) for r in rows)]), max([4, *(len(r.host) for r in rows)]))
    title = (
        f"{'VM':>{widths[0]}}  {'NAME':<{widths[1]}}  {'HOST':<{widths[2]}}  "
        f"{'STATE':<17}  {'POWER W':>8}  {'ENERGY J':>10}  {'CO2e g':>9}"
    )
    lines += [title, "-" * len(title)]
    for r in rows:
        lines.append(
            f"{r.id:>{widths[0]}}  {r.name:<{widths[1]}}  {r.host:<{widths[2]}}  "
            f"{r.state:<17}  {r.power:>8}  {r.energy:>10}  {r.carbon:>9}"
        )
    lines.append("")
    for h in hosts:
        measured = h.get("measured_w")
        lines.append(
            f"host {h['name']} ({h['address']}): {h['vms']} VM(s) running, "
            f"agent {_fmt(measured, 1)} W, simulated model {_fmt(h.get('model_w'), 1)} W"
        )
        if "geolocation" in h:  # geo runs: where the host is, as geo wrote it into oned
            country = f" ({h['country']})" if h.get("country") else ""
            lines.append(
                f"  PUBLIC_IP {h.get('public_ip') or '-'} -> "
                f"GEOLOCATION {h['geolocation'] or UNKNOWN}{country}"
            )
    lines.append(f"power source: {source}; {UNKNOWN} = no reading yet or agent unreachable")
    return "\n".join(lines)
