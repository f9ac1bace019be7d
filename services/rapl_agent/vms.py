"""Which processes are VMs: QEMU with `-name guest=<name>`, plus their kernel helper threads."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_ONE_ID = re.compile(r"^one-(\d+)$")
# vhost workers, the NX huge page recovery thread and the PIT timer thread of QEMU <pid>.
_HELPER = re.compile(r"^(?:vhost-|kvm-nx-lpage-recovery-|kvm-pit/)(\d+)$")


@dataclass(frozen=True)
class VmIdentity:
    """A VM's libvirt name and, for OpenNebula's `one-<N>`, its VM id."""

    name: str
    one_vm_id: int | None


@dataclass(frozen=True)
class VmProcesses:
    """A VM's QEMU process and the helper threads that work for it."""

    identity: VmIdentity
    pid: int
    helper_pids: tuple[int, ...]

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.pid, *self.helper_pids)


def _is_qemu(argv0: str) -> bool:
    base = argv0.rsplit("/", 1)[-1].lower()
    return "qemu" in base or base == "kvm"


def vm_from_cmdline(argv: Sequence[str]) -> VmIdentity | None:
    """The VM a QEMU argv runs (`-name guest=one-42,debug-threads=on`), None for others."""
    if not argv or not _is_qemu(argv[0]):
        return None
    for i, arg in enumerate(argv[:-1]):
        if arg not in ("-name", "--name"):
            continue
        for option in argv[i + 1].split(","):
            if option.startswith("guest=") and len(option) > 6:
                name = option[6:]
                match = _ONE_ID.match(name)
                return VmIdentity(name, int(match.group(1)) if match else None)
    return None


def helper_owner(comm: str) -> int | None:
    """The QEMU pid a helper thread works for, from its comm (`vhost-1234`)."""
    match = _HELPER.match(comm)
    return int(match.group(1)) if match else None


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
