"""The one rule of which process is a VM and which threads are its helpers."""

from __future__ import annotations

import pytest

from services.common.vm_identity import (
    VmIdentity,
    helper_owner,
    one_vm_id,
    vm_from_argv,
    vm_id_from_joined_cmdline,
)


def test_libvirt_argv_of_an_opennebula_vm():
    argv = ["/usr/bin/qemu-kvm-one", "-name", "guest=one-42,debug-threads=on", "-S"]
    assert vm_from_argv(argv) == VmIdentity("one-42", 42)


def test_other_qemu_binaries_and_names():
    assert vm_from_argv(["qemu-system-x86_64", "-name", "guest=one-7"]) == VmIdentity("one-7", 7)
    assert vm_from_argv(["/usr/libexec/qemu-kvm", "--name", "debug-threads=on,guest=web"]) == (
        VmIdentity("web", None)
    )
    assert vm_from_argv(["kvm", "-name", "guest=one-1x"]) == VmIdentity("one-1x", None)


def test_not_vms():
    assert vm_from_argv([]) is None
    assert vm_from_argv(["/usr/bin/python3", "x.py", "-name", "guest=one-9"]) is None
    assert vm_from_argv(["qemu-system-x86_64", "-name"]) is None
    assert vm_from_argv(["qemu-system-x86_64", "-name", "guest="]) is None
    assert vm_from_argv(["qemu-system-x86_64", "-m", "guest=one-3"]) is None


def test_helper_threads():
    assert helper_owner("vhost-2101") == 2101
    assert helper_owner("kvm-nx-lpage-recovery-2101") == 2101
    assert helper_owner("kvm-pit/2101") == 2101
    assert helper_owner("kvm-nx-lpage-re") is None  # comm cut at 15 characters: no owner
    assert helper_owner("vhost-") is None
    assert helper_owner("vhostx-12") is None


@pytest.mark.parametrize(
    ("exe", "owner"),
    [
        ("vhost-4242", 4242),
        ("kvm-nx-lpage-recovery-4242", 4242),
        ("kvm-pit/4242", 4242),
        ("vhost-", None),
        ("kvm-pit/42x", None),
        ("qemu-system-x86", None),
    ],
)
def test_helper_thread_owner(exe, owner):
    assert helper_owner(exe) == owner


@pytest.mark.parametrize(
    ("name", "vm_id"),
    [
        ("one-42", 42),
        ("one-42a", None),
        ("one-", None),
        ("one-52-test", None),
        ("web", None),
        ("one-" + "9" * 19, None),
        ("one-42\n", None),
    ],
)
def test_one_vm_id_is_exactly_one_dash_digits(name, vm_id):
    assert one_vm_id(name) == vm_id


@pytest.mark.parametrize(
    ("cmdline", "vm_id"),
    [
        ("/usr/bin/qemu-kvm-one-nameguest=one-524,debug-threads=on-S", 524),
        ("qemu-nameguest=one-52-S-machinepc", 52),
        ("qemu-nameguest=one-52", 52),
        ("qemu-nameguest=one-5x", None),
        ("qemu-nameguest=one-" + "9" * 5000 + ",debug-threads=on", None),
    ],
)
def test_vm_id_from_a_cmdline_joined_without_separators(cmdline, vm_id):
    assert vm_id_from_joined_cmdline(cmdline) == vm_id
