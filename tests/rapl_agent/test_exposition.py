"""/metrics text: Scaphandre's names, labels and HELP; the fast process path equals the library."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.rapl_agent.disks import Disk
from services.rapl_agent.exposition import (
    PROCESS_POWER,
    PROCESS_POWER_HELP,
    process_labels,
    render,
    render_processes,
    scaphandre_version,
)
from tests.rapl_agent.test_attribution import two_samples

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rapl"
# Scaphandre's families whose values are whole numbers of micro-units, bytes or things.
WHOLE = re.compile(r"_(microwatts|microjoules|bytes|total|nb|current)$")


def families(text: bytes | str) -> dict:
    if isinstance(text, bytes):
        text = text.decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_process_family_equals_prometheus_client_rendering():
    _, second = two_samples()
    snap = second.snapshot
    reference = GaugeMetricFamily(PROCESS_POWER, PROCESS_POWER_HELP)
    for pid, uw in snap.processes.power_uw.items():
        info = snap.processes.infos[pid]
        labels = {"pid": str(info.pid), "exe": info.comm, "cmdline": info.cmdline}
        if info.vm is not None:
            labels["vmname"] = info.vm.name
        reference.add_sample(PROCESS_POWER, labels, uw)

    class One:
        def collect(self):
            yield reference

    ours = families(render_processes(snap))[PROCESS_POWER]
    theirs = families(generate_latest(One()))[PROCESS_POWER]
    assert ours.documentation == theirs.documentation
    assert ours.type == theirs.type == "gauge"

    def key(sample):
        return (sample.name, sorted(sample.labels.items()), sample.value)

    assert sorted(map(key, ours.samples)) == sorted(map(key, theirs.samples))
    assert len(ours.samples) == len(snap.processes.power_uw) == 12


def test_label_escaping():
    block = process_labels(7, 'a"b', "x\\y\nz", None)
    assert block == b'{cmdline="x\\\\y\\nz",exe="a\\"b",pid="7"}'
    text = f"# TYPE m gauge\nm{block.decode()} 1\n"
    (sample,) = families(text)["m"].samples
    assert sample.labels == {"cmdline": "x\\y\nz", "exe": 'a"b', "pid": "7"}


def test_scaphandre_names_labels_and_help():
    _, second = two_samples()
    fams = families(render(second.snapshot, "0.1.0"))
    expected_help = {
        "scaph_host_power_microwatts": "Power measurement on the whole host, in microwatts",
        "scaph_host_energy_microjoules": "Energy measurement for the whole host, as extracted "
        "from the sensor, in microjoules.",
        "scaph_socket_power_microwatts": "Power measurement relative to a CPU socket, in "
        "microwatts",
        "scaph_domain_power_microwatts": "Power measurement relative to a RAPL Domain, in "
        "microwatts",
        "scaph_host_load_avg_one": "Load average on 1 minute.",
        "scaph_host_load_avg_five": "Load average on 5 minutes.",
        "scaph_host_load_avg_fifteen": "Load average on 15 minutes.",
        "scaph_self_version": "Version number of scaphandre represented as a float.",
        PROCESS_POWER: PROCESS_POWER_HELP,
    }
    for name, help_text in expected_help.items():
        assert fams[name].documentation == help_text, name
    (host,) = fams["scaph_host_power_microwatts"].samples
    assert host.labels == {"value_source": "powercap_rapl_pkg"} and host.value == 60_000_000
    (energy,) = fams["scaph_host_energy_microjoules"].samples
    assert energy.name == "scaph_host_energy_microjoules"  # no _total appended
    assert {tuple(sorted(s.labels)) for s in fams["scaph_domain_power_microwatts"].samples} == {
        ("domain_id", "domain_name", "socket_id")
    }
    assert [s.labels["socket_id"] for s in fams["scaph_socket_power_microwatts"].samples] == [
        "0",
        "1",
    ]
    load = [fams[f"scaph_host_load_avg_{p}"].samples[0].value for p in ("one", "five", "fifteen")]
    assert load == [1.25, 0.80, 0.50]
    assert fams["scaph_forks_since_boot"].samples[0].name == "scaph_forks_since_boot_total"
    by_pid = {s.labels["pid"]: s for s in fams[PROCESS_POWER].samples}
    qemu = by_pid["2101"]
    assert qemu.labels["exe"] == "qemu-kvm-one"
    assert qemu.labels["vmname"] == "one-42"
    assert qemu.labels["cmdline"].startswith("/usr/bin/qemu-kvm-one-nameguest=one-42,debug")
    assert "vmname" not in by_pid["2105"].labels  # helpers are not QEMU processes
    assert by_pid["2105"].labels["exe"] == "vhost-2101"
    assert "vmname" not in by_pid["4000"].labels


def test_first_snapshot_has_no_power_lines():
    first, _ = two_samples()
    text = render(first.snapshot, "0.1.0").decode()
    assert "scaph_host_energy_microjoules{" in text
    assert "scaph_host_power_microwatts" not in text
    assert PROCESS_POWER not in text
    assert "scaph_socket_power_microwatts" not in text


def test_version_as_scaphandre_prints_it():
    assert scaphandre_version("1.0.3") == 1.03
    assert scaphandre_version("0.1.0") == 0.1
    assert scaphandre_version("2.5") == 2.5


def test_text_parses_as_prometheus_clients_rendering_of_the_same_families():
    _, second = two_samples()
    ours = families(render(second.snapshot, "0.1.0"))
    theirs = families((FIXTURES / "prometheus_client_rendering.txt").read_bytes())
    for name, family in theirs.items():
        assert name in ours, name
        assert (ours[name].type, ours[name].documentation) == (family.type, family.documentation)

        def key(sample):
            return (sample.name, sorted(sample.labels.items()), sample.value)

        assert sorted(map(key, ours[name].samples)) == sorted(map(key, family.samples)), name


def test_micro_units_bytes_and_counts_print_as_integers():
    # Scaphandre prints them as integers; scripts read them with a regex and int().
    first, second = two_samples()
    for snap in (first.snapshot, second.snapshot):
        text = render(snap, "0.1.0").decode()
        whole = [line for line in text.splitlines() if line.startswith("scaph_")]
        whole = [line for line in whole if WHOLE.search(re.split(r"[{ ]", line, maxsplit=1)[0])]
        assert len(whole) > 20
        for line in whole:
            assert re.fullmatch(r"\d+", line.rsplit(" ", 1)[1]), line
    text = render(second.snapshot, "0.1.0").decode()
    assert 'scaph_host_power_microwatts{value_source="powercap_rapl_pkg"} 60000000\n' in text
    assert 'scaph_host_energy_microjoules{value_source="powercap_rapl_pkg"} 124600000\n' in text
    assert 'scaph_socket_power_microwatts{socket_id="0"} 25000000\n' in text
    assert "scaph_host_memory_total_bytes 16694693888\n" in text


def test_per_process_cpu_and_memory_families_as_scaphandre_labels_them():
    first, second = two_samples()
    page = second.snapshot.processes.page_size
    fams = families(render(second.snapshot, "0.1.0"))
    cpu = fams["scaph_process_cpu_usage_percentage"]
    memory = fams["scaph_process_memory_bytes"]
    virtual = fams["scaph_process_memory_virtual_bytes"]
    assert cpu.documentation == (
        "CPU time consumed by the process, as a percentage of the capacity of all the CPU Cores"
    )
    assert memory.documentation == "Physical RAM usage by the process, in bytes"
    assert virtual.documentation == "Virtual RAM usage by the process, in bytes"
    assert cpu.type == memory.type == virtual.type == "gauge"
    power_labels = {s.labels["pid"]: s.labels for s in fams[PROCESS_POWER].samples}
    for family in (cpu, memory, virtual):
        # The same label sets as the power family (pid, exe, cmdline, vmname on QEMU).
        assert {s.labels["pid"]: s.labels for s in family.samples} == power_labels
    by_pid = {
        family.name: {s.labels["pid"]: s.value for s in family.samples}
        for family in (cpu, memory, virtual)
    }
    # QEMU 2101 burned 300 of the 920 jiffies all CPUs had between t0 and t1.
    assert by_pid["scaph_process_cpu_usage_percentage"]["2101"] == round(300 / 920 * 100, 4)
    assert sum(by_pid["scaph_process_cpu_usage_percentage"].values()) <= 100
    assert by_pid["scaph_process_memory_bytes"]["2101"] == 2345 * page
    assert by_pid["scaph_process_memory_virtual_bytes"]["2101"] == 123456789
    # Before a baseline, memory is known and CPU is not.
    text = render(first.snapshot, "0.1.0").decode()
    assert (
        "scaph_process_memory_bytes{" in text and "scaph_process_cpu_usage_percentage" not in text
    )


def test_disk_families_with_scaphandres_labels():
    _, second = two_samples()
    disks = (
        Disk("/dev/vda", "/", "ext4", "SSD", False, 10_737_418_240, 4_294_967_296),
        Disk("/dev/sdb1", '/srv/a "b"', "vfat", "Unknown", True, 8_000_000_000, 7),
    )
    text = render(replace(second.snapshot, disks=disks), "0.1.0").decode()
    fams = families(text)
    total, available = fams["scaph_host_disk_total_bytes"], fams["scaph_host_disk_available_bytes"]
    assert total.documentation == "Total disk size, in bytes."
    assert available.documentation == "Available disk space, in bytes."
    assert [s.labels for s in total.samples] == [
        {
            "disk_file_system": "ext4",
            "disk_is_removable": "false",
            "disk_mount_point": "/",
            "disk_name": "/dev/vda",
            "disk_type": "SSD",
        },
        {
            "disk_file_system": "vfat",
            "disk_is_removable": "true",
            "disk_mount_point": '/srv/a "b"',
            "disk_name": "/dev/sdb1",
            "disk_type": "Unknown",
        },
    ]
    assert [s.value for s in total.samples] == [10_737_418_240, 8_000_000_000]
    assert [s.value for s in available.samples] == [4_294_967_296, 7]
    assert 'disk_type="SSD"} 10737418240\n' in text


def test_vm_energy_counter_in_joules_as_prometheus_client_renders_it():
    _, second = two_samples()
    reference = CounterMetricFamily(
        "one_cognit_rapl_agent_vm_energy_joules",
        "Energy attributed to each VM (QEMU and its helper threads) since the agent saw it",
        labels=["vmname", "one_vm_id"],
    )
    for vm in second.snapshot.vms:
        vm_id = "" if vm.one_vm_id is None else str(vm.one_vm_id)
        reference.add_metric([vm.name, vm_id], vm.energy_uj / 1e6)

    class One:
        def collect(self):
            yield reference

    ours = families(render(second.snapshot, "0.1.0"))["one_cognit_rapl_agent_vm_energy_joules"]
    theirs = families(generate_latest(One()))["one_cognit_rapl_agent_vm_energy_joules"]
    assert (
        (ours.type, ours.documentation)
        == (theirs.type, theirs.documentation)
        == (
            "counter",
            reference.documentation,
        )
    )
    assert ours.samples == theirs.samples
    assert {s.labels["vmname"]: s.value for s in ours.samples}["one-42"] == 68.2
