"""A host's VMs: QEMU processes grouped with their helper threads."""

from __future__ import annotations

from services.common.vm_identity import VmIdentity
from services.rapl_agent.vms import group_vms


def test_group_vms_attaches_helpers_to_their_qemu_only():
    one42 = VmIdentity("one-42", 42)
    one7 = VmIdentity("one-7", 7)
    rows = [
        (2101, "qemu-kvm-one", one42),
        (2105, "vhost-2101", None),
        (2106, "kvm-pit/2101", None),
        (2201, "qemu-system-x86", one7),
        (2205, "vhost-2201", None),
        (9999, "vhost-5555", None),  # helper of a process that is no VM here
        (1, "systemd", None),
    ]
    vms = group_vms(rows)
    assert [(v.identity.name, v.pid, v.helper_pids) for v in vms] == [
        ("one-42", 2101, (2105, 2106)),
        ("one-7", 2201, (2205,)),
    ]
    assert vms[0].pids == (2101, 2105, 2106)
