"""A host's VMs: each QEMU process grouped with its helpers (the rule: common.vm_identity)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.common.vm_identity import VmIdentity, helper_owner


@dataclass(frozen=True)
class VmProcesses:
    """A VM's QEMU process and the helper threads that work for it."""

    identity: VmIdentity
    pid: int
    helper_pids: tuple[int, ...]

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.pid, *self.helper_pids)


def group_vms(
    processes: Iterable[tuple[int, str, VmIdentity | None]],
) -> list[VmProcesses]:
    """VMs from (pid, comm, identity) rows: each QEMU process with its helpers, by name."""
    qemus: dict[int, VmIdentity] = {}
    helpers: dict[int, list[int]] = {}
    for pid, comm, identity in processes:
        if identity is not None:
            qemus[pid] = identity
            continue
        owner = helper_owner(comm)
        if owner is not None:
            helpers.setdefault(owner, []).append(pid)
    vms = [
        VmProcesses(identity, pid, tuple(sorted(helpers.get(pid, ()))))
        for pid, identity in qemus.items()
    ]
    return sorted(vms, key=lambda vm: (vm.identity.name, vm.pid))
