"""Per-VM power from a real-format Scaphandre --qemu page (tests/fixtures/scaphandre)."""

from __future__ import annotations

import pytest

from services.vm_exporter.readings import SCAPHANDRE, ReadingError
from services.vm_exporter.scaphandre import parse_scaphandre, vm_id_of
from testkit import ROOT

PAGE = (ROOT / "tests" / "fixtures" / "scaphandre" / "metrics_qemu.txt").read_text()


def test_vm_power_is_qemu_plus_its_helper_threads():
    reading = parse_scaphandre(PAGE)
    assert reading.source == SCAPHANDRE
    assert reading.host_power_uw == 61_234_567
    powers = {vm_id: r.power_uw for vm_id, r in reading.vms.items()}
    # one-42: qemu + vhost (listed twice, counted once) + kvm-nx-lpage-recovery + kvm-pit
    assert powers[42] == 18_345_223 + 402_110 + 1_200 + 800
    # one-52: qemu + vhost + a kvm-pit line with a repeated label name
    assert powers[52] == 4_100_000 + 250_000 + 700
    # one-524 is not one-52: its own qemu and helpers only
    assert powers[524] == round(20_000_000.5 + 1_000_000 + 500)
    # a libvirt guest that is not an OpenNebula VM, and an orphan helper, are ignored
    assert set(powers) == {42, 52, 524}
    assert all(r.energy_uj is None for r in reading.vms.values())


@pytest.mark.parametrize(
    ("labels", "vm_id"),
    [
        ({"vmname": "one-42", "cmdline": ""}, 42),
        ({"cmdline": "/usr/bin/qemu-kvm-one-nameguest=one-524,debug-threads=on-S"}, 524),
        ({"cmdline": "qemu-nameguest=one-52,debug-threads=on"}, 52),
        ({"cmdline": "qemu-nameguest=one-52-S-machinepc"}, 52),
        ({"cmdline": "qemu-nameguest=one-5x"}, None),
        ({"cmdline": "qemu-nameguest=win-builder,debug-threads=on"}, None),
        ({"cmdline": "/usr/sbin/libvirtd--timeout120"}, None),
        ({"vmname": "one-42a", "cmdline": ""}, None),
        ({"vmname": "one-52-test", "cmdline": "qemu-nameguest=one-52-test,debug-threads=on"}, None),
        ({"vmname": "", "cmdline": "qemu-nameguest=one-52,debug-threads=on"}, 52),
        ({"vmname": "one-" + "9" * 5000, "cmdline": ""}, None),
        ({"cmdline": "qemu-nameguest=one-" + "9" * 5000 + ",debug-threads=on"}, None),
    ],
)
def test_vm_id_matches_guest_one_id_exactly(labels, vm_id):
    assert vm_id_of(labels) == vm_id


def test_a_page_without_scaphandre_metrics_is_an_error():
    with pytest.raises(ReadingError, match="not a Scaphandre page"):
        parse_scaphandre("# HELP node_load1 1m load average.\nnode_load1 0.5\n")
    with pytest.raises(ReadingError):
        parse_scaphandre("\x00\x01garbage{{{")


def test_running_host_without_vms_gives_host_power_and_no_vms():
    reading = parse_scaphandre("scaph_host_power_microwatts 42000000\n")
    assert reading.host_power_uw == 42_000_000 and dict(reading.vms) == {}


def test_negative_or_nan_values_are_not_power():
    line = 'scaph_process_power_consumption_microwatts{{pid="{0}",exe="q",vmname="one-{0}"}} {1}\n'
    reading = parse_scaphandre(line.format(1, "NaN") + line.format(2, -5) + line.format(3, 5))
    assert {k: v.power_uw for k, v in reading.vms.items()} == {3: 5}


def test_absurd_values_are_a_reading_error_or_ignored_never_a_crash():
    line = 'scaph_process_power_consumption_microwatts{{pid="{0}",exe="{1}",vmname="{2}"}} {3}\n'
    # Two finite powers whose sum overflows to infinity once crashed the refresh.
    with pytest.raises(ReadingError):
        parse_scaphandre(line.format(1, "q", "one-1", 1e308) + line.format(2, "q", "one-1", 1e308))
    page = line.format(3, "vhost-" + "9" * 5000, "", 5) + line.format(4, "q", "one-4", 7)
    page += line.format("9" * 5000, "q", "one-5", 9)
    assert {k: v.power_uw for k, v in parse_scaphandre(page).vms.items()} == {4: 7}
