"""Per-VM power from a real-format Scaphandre --qemu page (tests/fixtures/scaphandre), and
from hostile ones: every page costs one pass, bounded per line and per label."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.vm_exporter.readings import MAX_POWER_UW, SCAPHANDRE, ReadingError
from services.vm_exporter.scaphandre import (
    MAX_LABEL_VALUE,
    MAX_LINE,
    ScaphandreReader,
    parse_sample,
    parse_scaphandre,
    vm_id_of,
)
from testkit import ROOT
from testkit.agent_replies import escape_label, largest_scaphandre_page, scaphandre_page

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


LINE = (
    "scaph_process_power_consumption_microwatts"
    '{{pid="{0}",exe="q",cmdline="{1}",vmname="one-{0}"}} {2}\n'
)


def test_sample_lines_read_as_prometheus_client_reads_them():
    # Every sample line of the real-format pages but the one with a repeated label name.
    text = PAGE + scaphandre_page([7, 8], 90_000_000, {7: 3, 8: 4})
    text += 'scaph_x{a="q\\\\\\"\\n\\\\",b="}{,=",} 1e3 1718000000000\n'
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    lines = [ln for ln in lines if ln.count('exe="') < 2]
    for line in lines:
        (family,) = text_string_to_metric_families(line + "\n")
        (sample,) = family.samples
        assert parse_sample(line) == (sample.name, sample.labels, sample.value), line


@pytest.mark.parametrize("size", [1, 3, 100, 1 << 16])
def test_fed_in_any_pieces_gives_the_same_reading(size):
    data = PAGE.encode()
    reader = ScaphandreReader()
    for start in range(0, len(data), size):
        reader.feed(data[start : start + size])
    assert reader.close() == parse_scaphandre(PAGE)


def test_long_escaped_label_values_cost_one_pass_and_read_right():
    # prometheus-client's parser copies the label text once per escaped quote: a page of such
    # values held the event loop for minutes. Values at the limit read fast and exactly.
    page = largest_scaphandre_page(2_000_000, MAX_LINE, MAX_LABEL_VALUE)
    reading = parse_scaphandre(page)
    assert len(reading.vms) > 50 and reading.vms[2_000_000].power_uw == 1_000_000
    value = 'guest=one-5,"\\' * 100
    labels = parse_sample(LINE.format(5, escape_label(value), 1).strip())[1]
    assert labels["cmdline"] == value


def test_a_label_value_over_the_limit_is_a_reading_error():
    escaped = '\\"' * (MAX_LABEL_VALUE // 2 + 1)
    with pytest.raises(ReadingError, match="label cmdline is over"):
        parse_scaphandre(LINE.format(5, escaped, 1))
    # A whole megabyte of escapes in one label: refused at the line limit, as it streams in.
    reader = ScaphandreReader()
    with pytest.raises(ReadingError, match="line is over"):
        reader.feed(LINE.format(5, '\\"' * 500_000, 1).encode()[: MAX_LINE + 2])


def test_a_line_over_the_limit_is_a_reading_error_even_unwanted_or_trickled():
    with pytest.raises(ReadingError, match="line is over"):
        parse_scaphandre("scaph_other " + "1" * MAX_LINE + "\n" + LINE.format(1, "", 5))
    reader = ScaphandreReader()
    with pytest.raises(ReadingError, match="line is over"):
        for _ in range(MAX_LINE + 1):
            reader.feed(b"x")


@pytest.mark.parametrize(
    "value",
    ["1" + "0" * 308, "1e308", "+Inf", str(MAX_POWER_UW + 1), "1" * 65],
)
def test_implausible_or_unreadable_power_is_a_reading_error(value):
    with pytest.raises(ReadingError):
        parse_scaphandre(LINE.format(1, "", value))
    with pytest.raises(ReadingError):
        parse_scaphandre(f"scaph_host_power_microwatts {value}\n")


def test_a_vm_whose_processes_add_up_past_the_bound_is_a_reading_error():
    half = MAX_POWER_UW // 2 + 1
    page = (
        LINE.format(1, "", half)
        + f'scaph_process_power_consumption_microwatts{{pid="2",exe="vhost-1"}} {half}\n'
    )
    with pytest.raises(ReadingError, match="power"):
        parse_scaphandre(page)


@pytest.mark.parametrize(
    "line",
    [
        'scaph_process_power_consumption_microwatts{pid="1" 5',
        'scaph_process_power_consumption_microwatts{pid="1\\"} 5',
        "scaph_process_power_consumption_microwatts{pid=1} 5",
        'scaph_process_power_consumption_microwatts{pid="1"} five',
        'scaph_process_power_consumption_microwatts{pid="1"}',
        'scaph_process_power_consumption_microwatts{pid="1"} 5 6 7',
    ],
)
def test_a_broken_sample_line_of_a_family_read_is_a_reading_error(line):
    with pytest.raises(ReadingError):
        parse_scaphandre(line + "\n")
