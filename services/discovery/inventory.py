"""The targets discovery currently knows, per object, and their rendering per job (pure).

Hosts and VMs are kept by id, so an event replaces exactly one object and a reconcile
replaces them all; each job's target list is derived from them in id order, so the same
cloud always renders the same bytes (a file is only rewritten when its content changes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from services.common.oned.models import Host, Vm

from .targets import HOST_JOBS, SR_EXPORTER, VM_EXPORTER, Group, HostEntry, host_entry, vm_group

Problems = dict[tuple[str, int], tuple[str, ...]]


class Inventory:
    """Host and VM target entries by id; `version` grows with every change."""

    def __init__(self) -> None:
        self.hosts: dict[int, HostEntry] = {}
        self.vms: dict[int, Group] = {}
        self.version = 0

    def put(self, kind: str, oid: int, entry: HostEntry | Group | None) -> bool:
        """Set (or, with None, drop) one object's entry; True when something changed."""
        table: dict = self.hosts if kind == "host" else self.vms
        if table.get(oid) == entry:
            return False
        if entry is None:
            del table[oid]
        else:
            table[oid] = entry
        self.version += 1
        return True

    def get(self, kind: str, oid: int) -> HostEntry | Group | None:
        return (self.hosts if kind == "host" else self.vms).get(oid)

    def replace(
        self,
        hosts: Mapping[int, HostEntry],
        vms: Mapping[int, Group],
        keep: Iterable[tuple[str, int]] = (),
    ) -> bool:
        """Take a whole new view (a reconcile), except the objects in `keep`; True if changed."""
        hosts, vms = dict(hosts), dict(vms)
        for kind, oid in keep:
            current = self.get(kind, oid)
            table: dict = hosts if kind == "host" else vms
            table.pop(oid, None)
            if current is not None:
                table[oid] = current
        if hosts == self.hosts and vms == self.vms:
            return False
        self.hosts, self.vms = hosts, vms
        self.version += 1
        return True

    def groups(self, job: str, ports: Mapping[str, int], vm_exporter: str) -> list[Group]:
        """The target groups of one job, in id order."""
        if job in HOST_JOBS:
            port = ports[job]
            return [self.hosts[i].group(port) for i in sorted(self.hosts)]
        if job == SR_EXPORTER:
            return [self.vms[i] for i in sorted(self.vms)]
        if job == VM_EXPORTER:
            return [Group((vm_exporter,))]
        raise KeyError(job)

    def count(self, job: str, ports: Mapping[str, int], vm_exporter: str) -> int:
        """Targets in a job."""
        return sum(len(g.targets) for g in self.groups(job, ports, vm_exporter))


def entries_from(
    vms: Sequence[Vm], hosts: Sequence[Host]
) -> tuple[dict[int, HostEntry], dict[int, Group], Problems]:
    """Every object's entry from the two pools, and what was wrong with which object."""
    problems: Problems = {}
    host_entries: dict[int, HostEntry] = {}
    for host in hosts:
        entry, issues = host_entry(host)
        if entry is not None:
            host_entries[host.id] = entry
        if issues:
            problems[("host", host.id)] = issues
    vm_groups: dict[int, Group] = {}
    for vm in vms:
        group, issues = vm_group(vm)
        if group is not None:
            vm_groups[vm.id] = group
        if issues:
            problems[("vm", vm.id)] = issues
    return host_entries, vm_groups, problems


def group_line(group: Group) -> str:
    """One group as a line of JSON."""
    return json.dumps(group.as_json(), ensure_ascii=False)


def render_sd(groups: Sequence[Group], lines: dict[Group, str] | None = None) -> bytes:
    """A file_sd / http_sd document: a JSON list, one group per line (readable diffs).

    `lines` caches each group's line: an event changes one VM of thousands, so rendering the
    others again would be most of its cost.
    """
    if not groups:
        return b"[]\n"
    if lines is None:
        body = ",\n".join(group_line(g) for g in groups)
    else:
        out = []
        for g in groups:
            line = lines.get(g)
            if line is None:
                line = lines[g] = group_line(g)
            out.append(line)
        body = ",\n".join(out)
    return f"[\n{body}\n]\n".encode()
