"""The seed's collector, ported faithfully to Python: the baseline of bench_vm_exporter.

Source: SovereignEdgeEU-COGNIT/opennebula-extensions, `prometheus/vm_collector.rb`, the class
the COGNIT seed added to OpenNebula's exporter. Its algorithm, kept here as it was:
- one `one.vmpool.info(-2, -1, -1, -1)` (`info_all`), then for EVERY VM and EVERY one of the
  8 valued VM metrics a fresh `one.vm.info(id)` (its TODO: the pool lacks USER_TEMPLATE);
- for the power metric, a GET of `http://<last HISTORY HOSTNAME>:8080/metrics` (the host's
  whole Scaphandre page) once per VM, serially, 2 s timeout, the first line containing
  `one-<id>,`, its last field as an integer, 0 when anything fails;
- disks and NICs from the pool's VM element; `TEMPLATE/MEMORY * 1024` (its unit slip kept).
The Ruby OCA becomes pyone (OpenNebula's Python OCA) and Net::HTTP becomes urllib.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

LABELS = ["one_vm_id"]


def _last_history(vm: Any) -> Any | None:
    records = vm.HISTORY_RECORDS.HISTORY if vm.HISTORY_RECORDS is not None else []
    return records[-1] if records else None


def _host_id(vm: Any) -> int:
    last = _last_history(vm)
    return -1 if last is None or last.HID is None else int(last.HID)


def _vcpus(vm: Any) -> int:
    vcpu = vm.TEMPLATE.get("VCPU")
    return 1 if not vcpu else int(vcpu)


def _flavours(vm: Any) -> int:
    flavours = (vm.USER_TEMPLATE or {}).get("FLAVOURS")
    return -1 if not flavours else int(flavours)  # Ruby's Integer(): raises on a non-number


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class SeedCollector:
    """The seed's collect(), metric by metric, call by call."""

    def __init__(
        self, one: Any, registry: CollectorRegistry, *, port: int = 8080, timeout: float = 2.0
    ) -> None:
        self.one = one
        self.port = port
        self.timeout = timeout
        g = lambda name, doc, labels=LABELS: Gauge(  # noqa: E731
            f"opennebula_{name}", doc, labels, registry=registry
        )
        self.vm_total = g("vm_total", "Total number of VMs defined in OpenNebula", [])
        self.metrics: list[tuple[Gauge, Callable[[Any], float]]] = [
            (g("vm_host_id", "Host ID where the VM is allocated"), _host_id),
            (g("vm_state", "VM state"), lambda v: int(v.STATE)),
            (g("vm_lcm_state", "VM LCM state"), lambda v: int(v.LCM_STATE)),
            (
                g("vm_mem_total_bytes", "Total memory capacity"),
                lambda v: int(v.TEMPLATE["MEMORY"]) * 1024,
            ),
            (g("vm_cpu_ratio", "Total CPU capacity requested"), lambda v: float(v.TEMPLATE["CPU"])),
            (g("vm_cpu_vcpus", "Total number of virtual CPUs"), _vcpus),
            (g("vm_ut_flavours", "Flavours"), _flavours),
            (g("vm_power_consumption_uW", "Scaphandre power usage by the VM in uW"), self._power),
        ]
        self.disks = g("vm_disks", "Total number of disks")
        self.disk_size = g("vm_disk_size_bytes", "Size of the VM disk", LABELS + ["disk_id"])
        self.nics = g("vm_nics", "Total number of network interfaces")
        self.http_gets = 0
        self.oned_calls = 0

    def _power(self, vm: Any) -> int:
        last = _last_history(vm)
        url = f"http://{last.HOSTNAME if last else ''}:{self.port}/metrics"
        self.http_gets += 1
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                body = resp.read().decode()
        except (OSError, ValueError):
            return 0
        needle = f"one-{vm.ID},"
        line = next((ln for ln in body.split("\n") if needle in ln), None)
        return int(float(line.split()[-1])) if line else 0

    def collect(self) -> None:
        pool = self.one.vmpool.info(-2, -1, -1, -1)
        self.oned_calls += 1
        vms = pool.VM
        self.vm_total.set(len(vms))
        for vm in vms:
            labels = {"one_vm_id": int(vm.ID)}
            for gauge, value in self.metrics:
                # The seed's TODO: the pool lacks USER_TEMPLATE, so each metric re-reads the VM.
                vm_full = self.one.vm.info(vm.ID)
                self.oned_calls += 1
                gauge.labels(**labels).set(value(vm_full))
            disks = _as_list(vm.TEMPLATE.get("DISK"))
            self.disks.labels(**labels).set(len(disks))
            for disk in disks:
                self.disk_size.labels(one_vm_id=labels["one_vm_id"], disk_id=disk["DISK_ID"]).set(
                    int(disk["SIZE"]) * 1024 * 1024
                )
            nics = [n for n in _as_list(vm.TEMPLATE.get("NIC")) if "NIC_ID" in n]
            pnics = [p for p in _as_list(vm.TEMPLATE.get("PCI")) if "NIC_ID" in p]
            self.nics.labels(**labels).set(len(nics) + len(pnics))
