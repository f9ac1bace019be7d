"""Fast readers of oned's `one.vmpool.infoextended` and `one.hostpool.info` XML (pure, no I/O).

pyone's generated bindings build a Python object for every element of every VM; on a 10,000-VM
pool that is seconds of CPU and hundreds of MB (SPEC section 9, measured in
`bench/bench_vm_exporter.py`). These readers stream the reply through lxml, keep only the fields
the exporter needs, and free each `<VM>` as soon as it is read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from lxml import etree

# Feeding the parser in slices keeps lxml from copying a 100 MB reply in one piece.
_CHUNK = 1 << 20
MIB = 1024 * 1024
KIB = 1024

# VM STATE values (include/VirtualMachine.h) the join needs.
VM_ACTIVE = 3
# LCM states in which the VM's QEMU process exists (or may exist) on its host, so its host's
# agent is the one to ask; in every other state the VM draws no power.
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


class PoolFormatError(ValueError):
    """oned's reply is not the pool XML we asked for."""


@dataclasses.dataclass(frozen=True, slots=True)
class Disk:
    """One TEMPLATE/DISK: its DISK_ID and SIZE in bytes (None when oned gave none)."""

    disk_id: str
    size_bytes: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Vm:
    """What the exporter needs of one VM; None marks a value oned did not give as a number."""

    id: int
    state: int
    lcm_state: int
    host_id: int  # last HISTORY's HID, -1 when the VM never had a host
    hostname: str  # last HISTORY's HOSTNAME, "" when none
    memory_bytes: int | None
    cpu: float | None
    vcpus: int | None
    disks: tuple[Disk, ...]
    nics: int
    flavours: float

    @property
    def on_host(self) -> bool:
        """True when the VM's QEMU process may run on its host (its power is the host's to say)."""
        return (
            self.state == VM_ACTIVE and self.lcm_state in ON_HOST_LCM_STATES and self.host_id >= 0
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Host:
    """What the exporter needs of one host; memory in bytes, CPU in OpenNebula's percent units."""

    id: int
    name: str
    hostname: str  # TEMPLATE/HOSTNAME, else NAME: where its agent listens
    state: int
    mem_total_bytes: int | None
    mem_max_bytes: int | None
    mem_usage_bytes: int | None
    cpu_total: float | None
    cpu_max: float | None
    cpu_usage: float | None
    vms: int


@dataclasses.dataclass(frozen=True, slots=True)
class Pool:
    """A parsed pool reply: the objects, and how many elements were unusable (no integer ID)."""

    items: tuple
    skipped: int = 0


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _scaled(text: str | None, factor: int) -> int | None:
    """An OpenNebula integer-or-decimal quantity times `factor` (MiB or KiB to bytes)."""
    value = _int(text)
    if value is not None:
        return value * factor
    number = _float(text)
    return None if number is None else int(number * factor)


def flavours_value(text: str | None) -> float:
    """USER_TEMPLATE/FLAVOURS as a number; -1 when absent, empty or not a number (as the seed)."""
    value = _float(text)
    return -1.0 if value is None else value


# Only these children are looked at; lxml filters the rest without making Python objects.
_VM_TAGS = ("ID", "STATE", "LCM_STATE", "TEMPLATE", "USER_TEMPLATE", "HISTORY_RECORDS")
_TEMPLATE_TAGS = ("MEMORY", "CPU", "VCPU", "DISK", "NIC", "PCI")


def _vm_from(el: etree._Element) -> Vm | None:
    vm_id = state = lcm = None
    tmpl = user = history = None
    for child in el.iterchildren(*_VM_TAGS):
        tag = child.tag
        if tag == "ID":
            vm_id = _int(child.text)
        elif tag == "STATE":
            state = _int(child.text)
        elif tag == "LCM_STATE":
            lcm = _int(child.text)
        elif tag == "TEMPLATE":
            tmpl = child
        elif tag == "USER_TEMPLATE":
            user = child
        else:
            history = child
    if vm_id is None or state is None or lcm is None:
        return None
    memory = cpu = vcpu = None
    vcpu_seen = False
    disks: list[Disk] = []
    nics = 0
    if tmpl is not None:
        for child in tmpl.iterchildren(*_TEMPLATE_TAGS):
            tag = child.tag
            if tag == "MEMORY":
                memory = child.text
            elif tag == "CPU":
                cpu = child.text
            elif tag == "VCPU":
                vcpu, vcpu_seen = child.text, True
            elif tag == "DISK":
                disk_id = size = None
                for field in child.iterchildren("DISK_ID", "SIZE"):
                    if field.tag == "DISK_ID":
                        disk_id = field.text
                    else:
                        size = field.text
                if disk_id is not None:
                    disks.append(Disk(disk_id.strip(), _scaled(size, MIB)))
            elif tag == "NIC":
                nics += 1
            elif next(child.iterchildren("NIC_ID"), None) is not None:
                nics += 1  # a PCI passthrough NIC counts as a NIC, as OpenNebula's exporter does
    vcpus = 1 if not vcpu_seen or not (vcpu or "").strip() else _int(vcpu)
    host_id, hostname = -1, ""
    if history is not None and len(history):
        hid = name = None
        for field in history[len(history) - 1].iterchildren("HID", "HOSTNAME"):
            if field.tag == "HID":
                hid = _int(field.text)
            else:
                name = field.text
        if hid is not None:
            host_id, hostname = hid, (name or "").strip()
    flavours = None
    if user is not None:
        flavours = next(user.iterchildren("FLAVOURS"), None)
    return Vm(
        id=vm_id,
        state=state,
        lcm_state=lcm,
        host_id=host_id,
        hostname=hostname,
        memory_bytes=_scaled(memory, MIB),
        cpu=_float(cpu),
        vcpus=vcpus,
        disks=tuple(disks),
        nics=nics,
        flavours=flavours_value(flavours.text if flavours is not None else None),
    )


def _host_from(el: etree._Element) -> Host | None:
    host_id = _int(el.findtext("ID"))
    state = _int(el.findtext("STATE"))
    if host_id is None or state is None:
        return None
    name = (el.findtext("NAME") or "").strip()
    share = el.find("HOST_SHARE")
    get = share.findtext if share is not None else (lambda _path: None)
    vms = el.find("VMS")
    hostname = (el.findtext("TEMPLATE/HOSTNAME") or "").strip()
    return Host(
        id=host_id,
        name=name,
        hostname=hostname or name,
        state=state,
        mem_total_bytes=_scaled(get("TOTAL_MEM"), KIB),
        mem_max_bytes=_scaled(get("MAX_MEM"), KIB),
        mem_usage_bytes=_scaled(get("MEM_USAGE"), KIB),
        cpu_total=_float(get("TOTAL_CPU")),
        cpu_max=_float(get("MAX_CPU")),
        cpu_usage=_float(get("CPU_USAGE")),
        vms=0 if vms is None else sum(1 for c in vms if c.tag == "ID"),
    )


class PoolReader:
    """Push parser of one pool reply: `feed()` text as it arrives, `close()` gives the Pool.

    Each top-level item is turned into a value and freed as soon as its end tag is read, so
    memory stays flat however large the pool is.
    """

    def __init__(self, root: str, item: str, build: Callable[[etree._Element], Any]) -> None:
        self._root, self._item, self._build = root, item, build
        self._parser = etree.XMLPullParser(
            events=("start", "end"), tag=(root, item), huge_tree=True, resolve_entities=False
        )
        self._items: list = []
        self._skipped = 0
        self._seen_root = False
        self._fed = False

    def feed(self, data: str | bytes) -> None:
        """Parse the next piece of the reply; PoolFormatError when it is not well-formed."""
        if not data:
            return
        if not self._fed:
            self._fed = True
            if isinstance(data, str) and data.lstrip().startswith("<?xml"):
                # lxml refuses text that declares an encoding; text is already decoded.
                data = data.lstrip()
                data = data[data.find("?>") + 2 :] if "?>" in data else data
        try:
            self._parser.feed(data)
        except etree.XMLSyntaxError as exc:
            raise PoolFormatError(f"malformed {self._root} XML: {exc}") from None
        self._drain()

    def _drain(self) -> None:
        for event, el in self._parser.read_events():
            parent = el.getparent()
            if parent is None:
                self._seen_root = self._seen_root or el.tag == self._root
            elif event == "end" and parent.getparent() is None:
                value = self._build(el)
                if value is None:
                    self._skipped += 1
                else:
                    self._items.append(value)
                # Free what was read: the element and every sibling before it.
                el.clear()
                while el.getprevious() is not None:
                    del parent[0]

    def close(self) -> Pool:
        """Finish the reply; PoolFormatError when it was empty, cut short or not this pool."""
        if not self._fed:
            raise PoolFormatError(f"empty reply; expected <{self._root}>")
        try:
            top = self._parser.close()
        except etree.XMLSyntaxError as exc:
            raise PoolFormatError(f"malformed {self._root} XML: {exc}") from None
        self._drain()
        if not self._seen_root:
            raise PoolFormatError(f"expected <{self._root}>, got <{top.tag}>")
        return Pool(tuple(self._items), self._skipped)


def vm_pool_reader() -> PoolReader:
    """A reader of a `one.vmpool.infoextended` body (`<VM_POOL>`)."""
    return PoolReader("VM_POOL", "VM", _vm_from)


def host_pool_reader() -> PoolReader:
    """A reader of a `one.hostpool.info` body (`<HOST_POOL>`)."""
    return PoolReader("HOST_POOL", "HOST", _host_from)


def _read_all(reader: PoolReader, xml: str | bytes) -> Pool:
    for start in range(0, len(xml), _CHUNK):
        reader.feed(xml[start : start + _CHUNK])
    return reader.close()


def parse_vm_pool(xml: str | bytes) -> Pool:
    """The VMs of a whole `one.vmpool.infoextended` body."""
    return _read_all(vm_pool_reader(), xml)


def parse_host_pool(xml: str | bytes) -> Pool:
    """The hosts of a whole `one.hostpool.info` body."""
    return _read_all(host_pool_reader(), xml)
