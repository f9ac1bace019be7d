"""Simulated KVM hypervisors: powercap trees, a power model and QEMU-like burner processes."""

from __future__ import annotations

from .hypervisor import QemuProcess, SimHypervisor

__all__ = ["QemuProcess", "SimHypervisor"]
