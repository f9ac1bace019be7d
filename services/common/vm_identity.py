"""Which process is an OpenNebula VM's QEMU, and which kernel threads work for it (pure).

One rule for rapl_agent (reading `/proc`) and vm_exporter (reading a Scaphandre page): a VM
is a QEMU process whose argv holds `-name guest=<name>` (libvirt writes
`guest=one-42,debug-threads=on`); OpenNebula names its VMs `one-<id>`. The kernel threads
`vhost-<pid>`, `kvm-nx-lpage-recovery-<pid>` and `kvm-pit/<pid>` work for QEMU `<pid>`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Ids and pids have at most 18 digits: a longer run is not one (and int() refuses > 4300).
_ONE_NAME = re.compile(r"one-(\d{1,18})")
_HELPER = re.compile(r"(?:vhost-|kvm-nx-lpage-recovery-|kvm-pit/)(\d{1,18})")
# Scaphandre joins argv with no separator (`...-nameguest=one-42,debug-threads=on-S...`): the
# name ends at a ",", the next argument's "-" or the end.
_JOINED_GUEST = re.compile(r"guest=one-(\d{1,18})(?=,|-|$)")


@dataclass(frozen=True)
class VmIdentity:
    """A VM's libvirt name and, for OpenNebula's `one-<N>`, its VM id."""

    name: str
    one_vm_id: int | None


def one_vm_id(name: str) -> int | None:
    """The OpenNebula VM id of a libvirt guest name (`one-42` -> 42), None for other names."""
    match = _ONE_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def _is_qemu(argv0: str) -> bool:
    base = argv0.rsplit("/", 1)[-1].lower()
    return "qemu" in base or base == "kvm"


def vm_from_argv(argv: Sequence[str]) -> VmIdentity | None:
    """The VM a QEMU argv runs (`-name guest=one-42,debug-threads=on`), None for others."""
    if not argv or not _is_qemu(argv[0]):
        return None
    for i, arg in enumerate(argv[:-1]):
        if arg not in ("-name", "--name"):
            continue
        for option in argv[i + 1].split(","):
            if option.startswith("guest=") and len(option) > 6:
                name = option[6:]
                return VmIdentity(name, one_vm_id(name))
    return None


def vm_id_from_joined_cmdline(cmdline: str) -> int | None:
    """The VM id in a cmdline joined without separators, as Scaphandre prints it."""
    match = _JOINED_GUEST.search(cmdline)
    return int(match.group(1)) if match else None


def helper_owner(comm: str) -> int | None:
    """The QEMU pid a helper kernel thread works for, from its comm (`vhost-1234`)."""
    match = _HELPER.fullmatch(comm)
    return int(match.group(1)) if match else None
