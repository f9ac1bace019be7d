"""Fast readers of oned's pool and object XML (pure, no I/O).

pyone's generated bindings build a Python object for every element of every VM; on a 10,000-VM
pool that is seconds of CPU and hundreds of MB (SPEC section 9, measured in
`bench/bench_vm_exporter.py`). These readers stream the reply through lxml, keep only the fields
of `models.py`, and free each object as soon as it is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from lxml import etree

from .models import KIB, MIB, Disk, Hook, Host, Nic, Pool, Vm, to_float, to_int

# Feeding the parser in slices keeps lxml from copying a 100 MB reply in one piece.
_CHUNK = 1 << 20


class PoolFormatError(ValueError):
    """oned's reply is not the pool XML we asked for."""


def _scaled(text: str | None, factor: int) -> int | None:
    """An OpenNebula integer-or-decimal quantity times `factor` (MiB or KiB to bytes)."""
    value = to_int(text)
    if value is not None:
        return value * factor
    number = to_float(text)
    if number is None or not math.isfinite(number * factor):
        return None  # "1e308" MiB is no quantity in bytes (and int() of it would raise)
    return int(number * factor)


# Only these children are looked at; lxml filters the rest without making Python objects.
_VM_TAGS = ("ID", "NAME", "STATE", "LCM_STATE", "TEMPLATE", "USER_TEMPLATE", "HISTORY_RECORDS")
_TEMPLATE_TAGS = ("MEMORY", "CPU", "VCPU", "DISK", "NIC", "PCI", "CONTEXT")
_USER_TAGS = ("FLAVOURS", "PROMETHEUS_EXPORTER", "SERVICE_ID", "ROLE_NAME")
_NIC_TAGS = ("NIC_ID", "IP", "IP6", "IP6_GLOBAL", "IP6_ULA")


def _text(el: etree._Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _nic_from(el: etree._Element) -> Nic:
    fields = {child.tag: (child.text or "").strip() for child in el.iterchildren(*_NIC_TAGS)}
    ip6 = fields.get("IP6") or fields.get("IP6_GLOBAL") or fields.get("IP6_ULA") or ""
    return Nic(to_int(fields.get("NIC_ID")), fields.get("IP", ""), ip6)


def _vm_from(el: etree._Element) -> Vm | None:
    vm_id = state = lcm = None
    name = ""
    tmpl = user = history = None
    for child in el.iterchildren(*_VM_TAGS):
        tag = child.tag
        if tag == "ID":
            vm_id = to_int(child.text)
        elif tag == "NAME":
            name = (child.text or "").strip()
        elif tag == "STATE":
            state = to_int(child.text)
        elif tag == "LCM_STATE":
            lcm = to_int(child.text)
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
    nics: list[Nic] = []
    context_ip = context_ip6 = ""
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
                nics.append(_nic_from(child))
            elif tag == "CONTEXT":
                for field in child.iterchildren("ETH0_IP", "ETH0_IP6"):
                    if field.tag == "ETH0_IP":
                        context_ip = _text(field)
                    else:
                        context_ip6 = _text(field)
            elif next(child.iterchildren("NIC_ID"), None) is not None:
                # A PCI passthrough NIC is a NIC, as OpenNebula's exporter and oned's NIC set
                # (VirtualMachineNics) count it.
                nics.append(_nic_from(child))
    vcpus = 1 if not vcpu_seen or not (vcpu or "").strip() else to_int(vcpu)
    host_id, hostname = -1, ""
    if history is not None and len(history):
        hid = host = None
        for field in history[len(history) - 1].iterchildren("HID", "HOSTNAME"):
            if field.tag == "HID":
                hid = to_int(field.text)
            else:
                host = field.text
        if hid is not None:
            host_id, hostname = hid, (host or "").strip()
    user_values: dict[str, str] = {}
    if user is not None:
        for child in user.iterchildren(*_USER_TAGS):
            user_values.setdefault(child.tag, child.text or "")
    return Vm(
        id=vm_id,
        state=state,
        lcm_state=lcm,
        host_id=host_id,
        hostname=hostname,
        memory_bytes=_scaled(memory, MIB),
        cpu=to_float(cpu),
        vcpus=vcpus,
        disks=tuple(disks),
        nics=tuple(nics),
        name=name,
        context_ip=context_ip,
        context_ip6=context_ip6,
        flavours_text=user_values.get("FLAVOURS"),
        prometheus_exporter=user_values.get("PROMETHEUS_EXPORTER"),
        service_id=user_values.get("SERVICE_ID"),
        role_name=user_values.get("ROLE_NAME"),
    )


def _single_attributes(tmpl: etree._Element | None) -> MappingProxyType[str, str]:
    """A template's single attributes (no vector ones), first value of each name."""
    if tmpl is None:
        return MappingProxyType({})
    values: dict[str, str] = {}
    for child in tmpl:
        if isinstance(child.tag, str) and len(child) == 0:
            values.setdefault(child.tag, child.text or "")
    return MappingProxyType(values)


def _host_from(el: etree._Element) -> Host | None:
    host_id = to_int(el.findtext("ID"))
    state = to_int(el.findtext("STATE"))
    if host_id is None or state is None:
        return None
    name = (el.findtext("NAME") or "").strip()
    share = el.find("HOST_SHARE")
    get = share.findtext if share is not None else (lambda _path: None)
    vms = el.find("VMS")
    template = _single_attributes(el.find("TEMPLATE"))
    hostname = template.get("HOSTNAME", "").strip()
    cluster_id = to_int(el.findtext("CLUSTER_ID"))
    return Host(
        id=host_id,
        name=name,
        hostname=hostname or name,
        state=state,
        mem_total_bytes=_scaled(get("TOTAL_MEM"), KIB),
        mem_max_bytes=_scaled(get("MAX_MEM"), KIB),
        mem_usage_bytes=_scaled(get("MEM_USAGE"), KIB),
        cpu_total=to_float(get("TOTAL_CPU")),
        cpu_max=to_float(get("MAX_CPU")),
        cpu_usage=to_float(get("CPU_USAGE")),
        vms=0 if vms is None else sum(1 for c in vms if c.tag == "ID"),
        cluster_id=-1 if cluster_id is None else cluster_id,
        template=template,
    )


def _hook_from(el: etree._Element) -> Hook | None:
    hook_id = to_int(el.findtext("ID"))
    if hook_id is None:
        return None
    return Hook(
        id=hook_id,
        name=(el.findtext("NAME") or "").strip(),
        type=(el.findtext("TYPE") or "").strip(),
        template=_single_attributes(el.find("TEMPLATE")),
    )


class PoolReader:
    """Push parser of one pool reply: `feed()` text as it arrives, `close()` gives the Pool.

    Each top-level item is turned into a value and freed as soon as its end tag is read, so
    memory stays flat however large the pool is. With `root == item` it reads one object
    (`one.vm.info`, `one.host.info`): the Pool then holds that object alone.
    """

    def __init__(self, root: str, item: str, build: Callable[[etree._Element], Any]) -> None:
        self._root, self._item, self._build = root, item, build
        self._single = root == item
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
                if self._single and event == "end" and el.tag == self._root:
                    self._keep(self._build(el))
            elif event == "end" and parent.getparent() is None and not self._single:
                self._keep(self._build(el))
                # Free what was read: the element and every sibling before it.
                el.clear()
                while el.getprevious() is not None:
                    del parent[0]

    def _keep(self, value: Any) -> None:
        if value is None:
            self._skipped += 1
        else:
            self._items.append(value)

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


def hook_pool_reader() -> PoolReader:
    """A reader of a `one.hookpool.info` body (`<HOOK_POOL>`)."""
    return PoolReader("HOOK_POOL", "HOOK", _hook_from)


def vm_reader() -> PoolReader:
    """A reader of a `one.vm.info` body (`<VM>`)."""
    return PoolReader("VM", "VM", _vm_from)


def host_reader() -> PoolReader:
    """A reader of a `one.host.info` body (`<HOST>`)."""
    return PoolReader("HOST", "HOST", _host_from)


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


def parse_hook_pool(xml: str | bytes) -> Pool:
    """The hooks of a whole `one.hookpool.info` body."""
    return _read_all(hook_pool_reader(), xml)


def parse_vm(xml: str | bytes) -> Vm | None:
    """The VM of a `one.vm.info` body (None when it has no integer ID)."""
    items = _read_all(vm_reader(), xml).items
    return items[0] if items else None


def parse_host(xml: str | bytes) -> Host | None:
    """The host of a `one.host.info` body (None when it has no integer ID)."""
    items = _read_all(host_reader(), xml).items
    return items[0] if items else None
