"""The hypervisor side: one `sim.hypervisor.SimHypervisor` per simulated host.

Each host gets a powercap tree and a /proc view under DIR/<host name>/, and each RUNNING VM a
QEMU-like burner on its host. `reconcile` makes the burners match the cloud after every change:
deploy/resume start one, poweroff/suspend/undeploy/terminate stop it, migrate moves it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cloud import Cloud

log = logging.getLogger(__name__)


class HypervisorUnavailable(RuntimeError):
    """sim.hypervisor cannot be imported or started."""


@dataclass(frozen=True)
class PowerModel:
    idle_w: float
    w_per_cpu: float
    max_energy_range_uj: int


def _hypervisor_class() -> Any:
    try:
        from sim.hypervisor import SimHypervisor
    except ImportError as exc:
        raise HypervisorUnavailable(
            f"sim.hypervisor.SimHypervisor is not available: {exc}"
        ) from None
    return SimHypervisor


class Hypervisors:
    """Simulated hypervisors keyed by host ID, kept in step with the cloud's VMs."""

    def __init__(self, root: Path, cloud: Cloud, model: PowerModel) -> None:
        self.root = root
        self.cloud = cloud
        self.model = model
        self.by_host: dict[int, Any] = {}
        self._lock = asyncio.Lock()

    def start(self) -> None:
        """Create every host's trees and start its ticker (blocking; call from a thread)."""
        cls = _hypervisor_class()
        self.root.mkdir(parents=True, exist_ok=True)
        for host in sorted(self.cloud.hosts.values(), key=lambda h: h.id):
            hv = cls(
                self.root / host.name,
                name=host.name,
                idle_w=self.model.idle_w,
                w_per_cpu=self.model.w_per_cpu,
                max_energy_range_uj=self.model.max_energy_range_uj,
            )
            try:
                hv.start()
            except Exception:
                self.stop()
                raise
            self.by_host[host.id] = hv

    def desired(self) -> dict[int, tuple[int, float]]:
        """VM id -> (host id, CPU fraction) of every RUNNING VM (read on the event loop)."""
        return {
            vm.id: (vm.host_id, vm.cpu_fraction)
            for vm in self.cloud.vms.values()
            if vm.running and vm.host_id in self.by_host
        }

    def apply(self, desired: dict[int, tuple[int, float]]) -> None:
        """Stop burners that should not run where they are, start the missing ones."""
        for host_id, hv in self.by_host.items():
            for vm_id in list(hv.vms):
                if desired.get(vm_id, (None, 0.0))[0] != host_id:
                    hv.stop_vm(vm_id)
        for vm_id, (host_id, fraction) in sorted(desired.items()):
            hv = self.by_host[host_id]
            if vm_id not in hv.vms:
                hv.start_vm(vm_id, cpu_fraction=fraction)

    async def reconcile(self) -> None:
        """Bring burners in line with the cloud without blocking the event loop."""
        async with self._lock:
            desired = self.desired()
            await asyncio.to_thread(self.apply, desired)

    def stop(self) -> None:
        """Stop every burner and ticker (idempotent)."""
        for hv in self.by_host.values():
            try:
                hv.stop()
            except Exception:
                log.exception("stopping hypervisor %s", getattr(hv, "name", "?"))

    def describe(self) -> list[dict[str, Any]]:
        """What the control API and the demo need: roots, addresses, power, processes."""
        out = []
        for host_id, hv in sorted(self.by_host.items()):
            host = self.cloud.hosts[host_id]
            vms = {}
            for vm_id, qp in sorted(hv.vms.items()):
                vms[str(vm_id)] = {"pid": qp.pid, "helper_pids": list(qp.helper_pids)}
            out.append(
                {
                    "host_id": host_id,
                    "host": host.name,
                    "hostname": host.hostname,
                    "powercap_root": str(hv.powercap_root),
                    "proc_root": str(hv.proc_root),
                    "power_w": round(float(hv.host_power_w()), 3),
                    "vms": vms,
                }
            )
        return out
