"""What the services read of oned's objects: one model per object, parsed once (pure).

Each model keeps only the fields some service uses (vm_exporter, discovery, geo, the
installer), already converted: numbers that oned wrote as text, MiB and KiB as bytes, `None`
where oned gave no usable value. State numbers are compared as integers: pyone's enums stop
at LCM state 68 and oned goes to 71 (SPEC section 9).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType

MIB = 1024 * 1024
KIB = 1024

# VM STATE values (include/VirtualMachine.h).
VM_ACTIVE = 3
# LCM states in which the VM's QEMU process exists (or may exist) on its host, so its host's
# agent is the one to ask about its power; in every other state the VM draws no power.
ON_HOST_LCM_STATES = frozenset(
    {
        2,  # BOOT
        3,  # RUNNING
        4,  # MIGRATE
        5,  # SAVE_STOP
        6,  # SAVE_SUSPEND
        7,  # SAVE_MIGRATE
        12,  # SHUTDOWN
        16,  # UNKNOWN
        17,  # HOTPLUG
        18,  # SHUTDOWN_POWEROFF
        19,  # BOOT_UNKNOWN
        20,  # BOOT_POWEROFF
        21,  # BOOT_SUSPENDED
        22,  # BOOT_STOPPED
        24,  # HOTPLUG_SNAPSHOT
        25,  # HOTPLUG_NIC
        26,  # HOTPLUG_SAVEAS
        29,  # SHUTDOWN_UNDEPLOY
        32,  # BOOT_UNDEPLOY
        35,  # BOOT_MIGRATE
        57,  # DISK_SNAPSHOT
        59,  # DISK_SNAPSHOT_DELETE
        62,  # DISK_RESIZE
        66,  # HOTPLUG_RESIZE
        69,  # BACKUP
    }
)

# LCM states (include/VirtualMachine.h, OpenNebula 6.10/7.x) in which the guest OS is up and
# reachable, so an exporter inside it can be scraped (discovery's sr_exporter job). BOOT* are
# not yet up, SHUTDOWN*/SAVE_* are going down, PROLOG*/EPILOG* have no running guest, UNKNOWN
# means oned lost track of it (the "failure" a hook reports); the HOTPLUG and snapshot states
# listed are operations on a running guest.
GUEST_UP_LCM_STATES = frozenset(
    {
        3,  # RUNNING
        4,  # MIGRATE (live migration: the guest keeps running)
        17,  # HOTPLUG (disk attach/detach on a running VM)
        24,  # HOTPLUG_SNAPSHOT (system snapshot of a running VM)
        25,  # HOTPLUG_NIC (NIC attach/detach on a running VM)
        26,  # HOTPLUG_SAVEAS (disk save-as on a running VM)
        57,  # DISK_SNAPSHOT (disk snapshot of a running VM)
        59,  # DISK_SNAPSHOT_DELETE (on a running VM)
        62,  # DISK_RESIZE (on a running VM)
        66,  # HOTPLUG_RESIZE (CPU/memory resize of a running VM)
        69,  # BACKUP (backup of a running VM)
    }
)


def guest_up(state: int, lcm_state: int) -> bool:
    """True when a VM in STATE/LCM_STATE has its guest OS up (ACTIVE and a state above)."""
    return state == VM_ACTIVE and lcm_state in GUEST_UP_LCM_STATES


# Host STATE values (include/Host.h).
HOST_MONITORED = 2
HOST_ERROR = 3
HOST_DISABLED = 4
HOST_OFFLINE = 8


def _no_attributes() -> Mapping[str, str]:
    return MappingProxyType({})


def to_int(text: str | None) -> int | None:
    """An integer oned wrote as text, None when it is not one."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def to_float(text: str | None) -> float | None:
    """A finite number oned wrote as text, None when it is not one."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def flavours_value(text: str | None) -> float:
    """USER_TEMPLATE/FLAVOURS as a number; -1 when absent, empty or not a number (as the seed)."""
    value = to_float(text)
    return -1.0 if value is None else value


@dataclasses.dataclass(frozen=True, slots=True)
class Disk:
    """One TEMPLATE/DISK: its DISK_ID and SIZE in bytes (None when oned gave none)."""

    disk_id: str
    size_bytes: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Nic:
    """One NIC of a VM (TEMPLATE/NIC, or a PCI passthrough NIC): its addresses, "" when none."""

    nic_id: int | None
    ip: str = ""
    ip6: str = ""  # IP6, else IP6_GLOBAL, else IP6_ULA (oned writes the ones the network has)


@dataclasses.dataclass(frozen=True, slots=True)
class Vm:
    """What the services need of one VM; None marks a value oned did not give as a number."""

    id: int
    state: int
    lcm_state: int
    host_id: int  # last HISTORY's HID, -1 when the VM never had a host
    hostname: str  # last HISTORY's HOSTNAME, "" when none
    memory_bytes: int | None
    cpu: float | None
    vcpus: int | None
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...]
    name: str = ""
    context_ip: str = ""  # TEMPLATE/CONTEXT/ETH0_IP
    context_ip6: str = ""  # TEMPLATE/CONTEXT/ETH0_IP6
    # USER_TEMPLATE values as oned stores them (None when absent); see `flavours`.
    flavours_text: str | None = None
    prometheus_exporter: str | None = None
    service_id: str | None = None
    role_name: str | None = None

    @property
    def flavours(self) -> float:
        """USER_TEMPLATE/FLAVOURS as a number, -1 when absent or not a number."""
        return flavours_value(self.flavours_text)

    @property
    def guest_up(self) -> bool:
        """True when the guest OS is up (an exporter inside it can be scraped)."""
        return guest_up(self.state, self.lcm_state)

    @property
    def on_host(self) -> bool:
        """True when the VM's QEMU process may run on its host (its power is the host's to say)."""
        return (
            self.state == VM_ACTIVE and self.lcm_state in ON_HOST_LCM_STATES and self.host_id >= 0
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Host:
    """What the services need of one host; memory in bytes, CPU in OpenNebula's percent units."""

    id: int
    name: str
    hostname: str  # TEMPLATE/HOSTNAME, else NAME: where its agents listen
    state: int
    mem_total_bytes: int | None
    mem_max_bytes: int | None
    mem_usage_bytes: int | None
    cpu_total: float | None
    cpu_max: float | None
    cpu_usage: float | None
    vms: int
    cluster_id: int = -1
    # The host template's single (non-vector) attributes, as text: PUBLIC_IP, GEOLOCATION,
    # GEOLOCATION_SOURCE, CARBON_INTENSITY... read by geo and the exporter.
    template: Mapping[str, str] = dataclasses.field(default_factory=_no_attributes)

    def attr(self, name: str) -> str | None:
        """A single attribute of the host template, None when absent."""
        return self.template.get(name)


@dataclasses.dataclass(frozen=True, slots=True)
class Hook:
    """A hook of `one.hookpool.info` / `one.hook.info`: its single template attributes."""

    id: int
    name: str
    type: str
    template: Mapping[str, str] = dataclasses.field(default_factory=_no_attributes)


@dataclasses.dataclass(frozen=True, slots=True)
class Pool:
    """A parsed pool reply: the objects, and how many elements were unusable (no integer ID)."""

    items: tuple
    skipped: int = 0
