"""VM detection from QEMU argv and helper-thread association."""

from __future__ import annotations

from services.rapl_agent.vms import VmIdentity, group_vms, helper_owner, vm_from_cmdline


def test_libvirt_argv_of_an_opennebula_vm():
    argv = ["/usr/bin/qemu-kvm-one", "-name", "guest=one-42,debug-threads=on", "-S"]
    assert vm_from_cmdline(argv) == VmIdentity("one-42", 42)


def test_other_qemu_binaries_and_names():
    assert vm_from_cmdline(["qemu-system-x86_64", "-name", "guest=one-7"]) == VmIdentity("one-7", 7)
    assert vm_from_cmdline(["/usr/libexec/qemu-kvm", "--name", "debug-threads=on,guest=web"]) == (
        VmIdentity("web", None)
    )
    assert vm_from_cmdline(["kvm", "-name", "guest=one-1x"]) == VmIdentity("one-1x", None)


def test_not_vms():
    assert vm_from_cmdline([]) is None
    assert vm_from_cmdline(["/usr/bin/python3", "x.py", "-name", "guest=one-9"]) is None
    assert vm_from_cmdline(["qemu-system-x86_64", "-name"]) is None
    assert vm_from_cmdline(["qemu-system-x86_64", "-name", "guest="]) is None
    assert vm_from_cmdline(["qemu-system-x86_64", "-m", "guest=one-3"]) is None


def test_helper_threads():
    assert helper_owner("vhost-2101") == 2101
    assert helper_owner("kvm-nx-lpage-recovery-2101") == 2101
    assert helper_owner("kvm-pit/2101") == 2101
    assert helper_owner("kvm-nx-lpage-re") is None  # comm cut at 15 characters: no owner
    assert helper_owner("vhost-") is None
    assert helper_owner("vhostx-12") is None


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
