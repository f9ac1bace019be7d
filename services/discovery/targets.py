"""Which OpenNebula objects become which Prometheus targets, with which labels (pure).

One target group per object: a host gives `HOSTNAME:<job port>` in each host job, a VM whose
guest is up gives its PROMETHEUS_EXPORTER addresses in `sr_exporter`. Label names are fixed
here; label values come from templates and are checked (Prometheus takes any UTF-8, but a
control character or a 100 KB value is a user's mistake, not a label).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Iterable, Mapping

from services.common.oned.models import HOST_OFFLINE, Host, Vm

from .addresses import default_address, exporter_targets, host_part

SCAPHANDRE = "scaphandre"
SR_EXPORTER = "sr_exporter"
VM_EXPORTER = "one_vm_exporter"
NODE_EXPORTER = "node_exporter"
LIBVIRT_EXPORTER = "libvirt_exporter"

ALL_JOBS = (SCAPHANDRE, SR_EXPORTER, VM_EXPORTER, NODE_EXPORTER, LIBVIRT_EXPORTER)
DEFAULT_JOBS = (SCAPHANDRE, SR_EXPORTER, VM_EXPORTER)
HOST_JOBS = frozenset({SCAPHANDRE, NODE_EXPORTER, LIBVIRT_EXPORTER})
VM_JOBS = frozenset({SR_EXPORTER})

# Labels discovery sets; a static group carrying one of them in an owned job is discovery's.
# `host_id` and `vm_id` are the COGNIT seed's labels for the same jobs: its groups are replaced.
HOST_LABELS = ("one_host_id", "one_host_name", "one_cluster_id")
VM_LABELS = ("one_vm_id", "one_vm_name", "one_host_id", "service_id", "role_name", "flavour")
OWN_LABELS = frozenset(HOST_LABELS + VM_LABELS + ("host_id", "vm_id"))

MAX_LABEL_VALUE = 1024

Labels = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    """One Prometheus target group: addresses and the labels they share."""

    targets: tuple[str, ...]
    labels: Labels = ()

    def as_json(self) -> dict[str, object]:
        """The file_sd / http_sd shape: `{"targets": [...], "labels": {...}}`."""
        return {"targets": list(self.targets), "labels": dict(self.labels)}


@dataclasses.dataclass(frozen=True, slots=True)
class HostEntry:
    """A host that gets targets: its address and labels; each host job adds its port."""

    address: str
    labels: Labels

    def group(self, port: int) -> Group:
        return Group((f"{self.address}:{port}",), self.labels)


def _bad_value(value: str) -> str | None:
    if len(value) > MAX_LABEL_VALUE:
        return f"over {MAX_LABEL_VALUE} characters"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        return "a control character"
    return None


def clean_labels(pairs: Iterable[tuple[str, str | None]]) -> tuple[Labels, tuple[str, ...]]:
    """(labels, problems): empty and absent values dropped, unfit values dropped and named."""
    labels: list[tuple[str, str]] = []
    problems: list[str] = []
    for name, value in pairs:
        if value is None:
            continue
        value = value.strip()
        if not value:
            continue
        why = _bad_value(value)
        if why:
            problems.append(f"label {name} left out: its value has {why}")
        else:
            labels.append((name, value))
    return tuple(labels), tuple(problems)


def host_entry(host: Host) -> tuple[HostEntry | None, tuple[str, ...]]:
    """(entry, problems): None for an OFFLINE host or one whose HOSTNAME is no address.

    ERROR and DISABLED hosts keep their targets: they still run VMs, and Prometheus' `up`
    is how an outage shows.
    """
    if host.state == HOST_OFFLINE:
        return None, ()
    address = host_part(host.hostname)
    if address is None:
        shown = host.hostname if len(host.hostname) <= 80 else host.hostname[:80] + "..."
        return None, (f"HOSTNAME {shown!r} is not a host name or IP address",)
    labels, problems = clean_labels(
        (
            ("one_host_id", str(host.id)),
            ("one_host_name", host.name),
            ("one_cluster_id", str(host.cluster_id)),
        )
    )
    return HostEntry(address, labels), problems


def vm_group(vm: Vm) -> tuple[Group | None, tuple[str, ...]]:
    """(group, problems) of a VM's exporters; None when its guest is not up or it has none."""
    if not vm.guest_up or vm.prometheus_exporter is None or not vm.prometheus_exporter.strip():
        return None, ()
    default = default_address(vm.context_ip, vm.context_ip6, vm.nics)
    targets, problems = exporter_targets(vm.prometheus_exporter, default)
    if not targets:
        return None, problems
    labels, label_problems = clean_labels(
        (
            ("one_vm_id", str(vm.id)),
            ("one_vm_name", vm.name),
            ("one_host_id", str(vm.host_id) if vm.host_id >= 0 else None),
            ("service_id", vm.service_id),
            ("role_name", vm.role_name),
            ("flavour", vm.flavours_text),
        )
    )
    return Group(targets, labels), problems + label_problems


def frontend_group(address: str) -> Group:
    """The `one_vm_exporter` job: the frontend's vm_exporter, one target."""
    return Group((address,))


def host_ports(agent_port: int, node_port: int, libvirt_port: int) -> Mapping[str, int]:
    """The port each host job scrapes."""
    return {SCAPHANDRE: agent_port, NODE_EXPORTER: node_port, LIBVIRT_EXPORTER: libvirt_port}
