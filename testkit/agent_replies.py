"""Host agent replies for vm_exporter's tests and benchmark: the legal ones, up to the limits.

`/api/v1/vms` JSON in SPEC section 5's shape and Scaphandre 1.0 `--qemu` pages, realistic or
as large as the exporter's limits allow (the hostile cases of issue 14 are built from these).
"""

from __future__ import annotations

import json
import re


def agent_json(
    vms: dict[int, tuple[int | None, int | None]],
    host_power_uw: int | None = 50_000_000,
    host_energy_uj: int = 123_000_000,
) -> bytes:
    """An /api/v1/vms reply: {vm id: (power_uw, energy_uj)}; each VM's pid is 10,000 + id."""
    return json.dumps(
        {
            "timestamp": 1718000000.0,
            "host": {"power_uw": host_power_uw, "energy_uj": host_energy_uj},
            "vms": [
                {
                    "name": f"one-{vm_id}",
                    "one_vm_id": vm_id,
                    "pid": 10_000 + vm_id,
                    "helper_pids": [20_000 + vm_id],
                    "power_uw": power,
                    "energy_uj": energy,
                }
                for vm_id, (power, energy) in sorted(vms.items())
            ],
        }
    ).encode()


def largest_agent_json(size: int, first_vm: int = 1_000_000) -> bytes:
    """A legal /api/v1/vms reply of just under `size` bytes: VM entries until it is full."""
    head = b'{"timestamp": 1718000000.0, "host": {"power_uw": 90000000, "energy_uj": 5}, "vms": ['
    entry = (
        '{{"name": "one-{0}", "one_vm_id": {0}, "pid": {1}, "helper_pids": [], '
        '"power_uw": {2}, "energy_uj": {3}}}'
    )
    parts, total, vm_id = [head], len(head) + 2, first_vm
    while True:
        text = entry.format(
            vm_id, 100_000 + vm_id % 1_000_000, 1_500_000 + vm_id % 1000, 9_000_000_000 + vm_id
        ).encode()
        if total + len(text) + 1 > size:
            break
        parts.append((b"," if vm_id > first_vm else b"") + text)
        total += len(text) + 1
        vm_id += 1
    parts.append(b"]}")
    return b"".join(parts)


def escape_label(value: str) -> str:
    """A label value as the text format writes it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def qemu_cmdline(vm_id: int) -> str:
    """A libvirt QEMU argv as Scaphandre prints it: joined with no separator."""
    args = [
        "/usr/bin/qemu-system-x86_64",
        "-name",
        f"guest=one-{vm_id},debug-threads=on",
        "-S",
        "-object",
        f"secret,id=masterKey0,format=raw,file=/var/lib/libvirt/qemu/domain-{vm_id}-one-{vm_id}/"
        "master-key.aes",
        "-machine",
        "pc-q35-6.2,usb=off,dump-guest-core=off,memory-backend=pc.ram",
        "-accel",
        "kvm",
        "-cpu",
        "host,migratable=on",
        "-m",
        "1024",
        "-smp",
        "1,sockets=1,cores=1,threads=1",
        "-uuid",
        f"2c4f0b7e-5a67-4a8e-9b0d-{vm_id:012d}",
        "-no-user-config",
        "-nodefaults",
        "-chardev",
        "socket,id=charmonitor,fd=33,server=on,wait=off",
        "-mon",
        "chardev=charmonitor,id=monitor,mode=control",
        "-rtc",
        "base=utc",
        "-no-shutdown",
        "-boot",
        "strict=on",
    ]
    return "".join(args)


PROCESS_FAMILIES = (
    (
        "scaph_process_power_consumption_microwatts",
        "Power consumption due to the process, measured on at the topology level, in microwatts",
    ),
    (
        "scaph_process_cpu_usage_percentage",
        "CPU time consumed by the process, as a percentage of the capacity of all the CPU Cores",
    ),
    ("scaph_process_memory_bytes", "Physical RAM usage by the process, in bytes"),
    ("scaph_process_memory_virtual_bytes", "Virtual RAM usage by the process, in bytes"),
)


def scaphandre_page(vm_ids: list[int], host_uw: int, vm_uw: dict[int, int]) -> str:
    """A Scaphandre 1.0 --qemu page: host families, 30 system processes, each VM + helper."""
    out = [
        "# HELP scaph_host_power_microwatts Power measurement on the whole host, in microwatts",
        "# TYPE scaph_host_power_microwatts gauge",
        f'scaph_host_power_microwatts{{value_source="powercap_rapl_pkg"}} {host_uw}',
    ]
    procs = [
        (100 + i, f"daemon{i}", f"/usr/sbin/daemon{i}--config/etc/d{i}.conf", 1000 + i)
        for i in range(30)
    ]
    for vm_id in vm_ids:
        procs.append((10_000 + vm_id, "qemu-system-x86", qemu_cmdline(vm_id), vm_uw[vm_id]))
        procs.append((20_000 + vm_id, f"vhost-{10_000 + vm_id}", "", vm_uw[vm_id] // 50))
    for name, doc in PROCESS_FAMILIES:
        out += [f"# HELP {name} {doc}", f"# TYPE {name} gauge"]
    for pid, exe, cmdline, uw in procs:
        vmname = re.search(r"guest=(one-\d+),", cmdline)
        extra = f',vmname="{vmname.group(1)}"' if vmname else ""
        labels = f'pid="{pid}",exe="{exe}",cmdline="{escape_label(cmdline)}"{extra}'
        for name, _ in PROCESS_FAMILIES:
            value = uw if name == PROCESS_FAMILIES[0][0] else 1843200
            out.append(f"{name}{{{labels}}} {value}")
    return "\n".join(out) + "\n"


def largest_scaphandre_page(
    size: int, line_max: int, label_max: int, first_vm: int = 2_000_000
) -> bytes:
    """A legal Scaphandre page of just under `size` bytes: VM lines whose cmdline label is as
    long as `label_max` allows (within `line_max`), full of escaped quotes and backslashes."""
    head = "scaph_host_power_microwatts 90000000\n"
    parts, total, n = [head.encode()], len(head), 0
    # An escaped `"` is 2 characters of label text; stay under both limits with a margin.
    pairs = min(label_max, line_max - 200) // 2 - 32
    while True:
        vm_id = first_vm + n
        cmdline = f"qemu-nameguest=one-{vm_id},debug-threads=on" + '"\\' * (pairs // 2)
        line = (
            f'scaph_process_power_consumption_microwatts{{pid="{300_000 + n}",'
            f'exe="qemu-system-x86",cmdline="{escape_label(cmdline)}",vmname="one-{vm_id}"}}'
            f" {1_000_000 + n}\n"
        ).encode()
        if total + len(line) > size:
            break
        parts.append(line)
        total += len(line)
        n += 1
    return b"".join(parts)
