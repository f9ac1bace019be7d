"""Fleets: what hosts and VMs the simulated cloud starts with, from flags or a YAML file.

`generate_fleet` makes a realistic, seed-deterministic fleet (`--hosts --vms-per-host --seed`);
`load_fleet` reads an explicit one (`--fleet FILE.yaml`) and names the exact field that is
wrong. `make_vm` / `make_host` turn a spec into the model objects with every TEMPLATE attribute
oned would carry (CONTEXT, DISK, NIC, PCI, GRAPHICS, OS...).
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .model import Host, User, Vm
from .states import HOST_STATES
from .template import Template

VM_STATES_ALLOWED = ("running", "poweroff", "suspended", "undeployed", "pending", "done")
DEFAULT_CPU_FRACTION = 0.1


class FleetError(ValueError):
    """A fleet that cannot be built; the message names the file and the field."""


@dataclass
class HostSpec:
    name: str
    hostname: str
    cpus: int = 32
    memory_mib: int = 131072
    state: str = "MONITORED"
    template: dict[str, Any] = field(default_factory=dict)


@dataclass
class NicSpec:
    ip: str = ""
    ip6: str = ""
    network: str = "public"
    network_id: int = 0
    parent: int = 0  # NIC_ALIAS only: the index of the NIC it is an alias of


@dataclass
class VmSpec:
    name: str
    host: str | None
    state: str = "running"
    id: int | None = None
    memory: int = 1024
    cpu: float = 1.0
    vcpu: int = 1
    cpu_fraction: float = DEFAULT_CPU_FRACTION
    disks: list[int] = field(default_factory=lambda: [2252])
    nics: list[NicSpec] = field(default_factory=list)
    pci_nics: list[NicSpec] = field(default_factory=list)
    nic_aliases: list[NicSpec] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    user_template: dict[str, Any] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)
    owner: str = ""


@dataclass
class UserSpec:
    name: str
    password: str
    driver: str = "core"
    group: str = "users"


@dataclass
class Fleet:
    hosts: list[HostSpec]
    vms: list[VmSpec]
    users: list[UserSpec] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Generated fleets
# ---------------------------------------------------------------------------------------------

_ROLES = ("frontend", "worker", "db")
_IMAGES = (("ubuntu2204", 2252), ("alma9", 10240), ("debian12", 2048))


# Public addresses the generated hosts carry as PUBLIC_IP (for one-geo and the carbon figures):
# well-known networks in several countries, by DB-IP City Lite 2023-04: Stockholm SE (Netnod),
# Warsaw PL (wp.pl), Madrid ES (RedIRIS), Amsterdam NL (RIPE NCC), Espoo FI (Funet), and an
# IPv6 one in Warsaw PL (NASK). Only looked up offline; nothing ever sends traffic to them.
DEMO_PUBLIC_IPS = (
    "192.36.148.17",
    "212.77.98.9",
    "130.206.1.1",
    "193.0.6.139",
    "193.166.3.2",
    "2001:6a0::1",
)


def host_address(base: str, index: int) -> str:
    """The index-th address from `--host-ip-base` (kvm-01 gets the base itself)."""
    return str(ipaddress.IPv4Address(base) + index)


def generate_fleet(
    hosts: int, vms_per_host: int, seed: int, host_ip_base: str, poweroff_fraction: float = 0.0
) -> Fleet:
    """A fleet whose every attribute follows from the seed (same seed, same fleet).

    Every VM runs, except about `poweroff_fraction` of them, left powered off.
    """
    rng = random.Random(seed)
    width = max(2, len(str(hosts)))
    host_specs = []
    for i in range(hosts):
        host_specs.append(
            HostSpec(
                name=f"kvm-{i + 1:0{width}d}",
                hostname=host_address(host_ip_base, i),
                cpus=rng.choice((16, 32, 48, 64)),
                memory_mib=rng.choice((64, 128, 256, 512)) * 1024,
                template={"PUBLIC_IP": DEMO_PUBLIC_IPS[i % len(DEMO_PUBLIC_IPS)]},
            )
        )
    vm_specs = []
    vm_id = 0
    for host in host_specs:
        for _ in range(vms_per_host):
            vm_specs.append(_generated_vm(rng, vm_id, host.name, poweroff_fraction))
            vm_id += 1
    return Fleet(host_specs, vm_specs)


def _generated_vm(rng: random.Random, vm_id: int, host: str, poweroff: float) -> VmSpec:
    state = "poweroff" if rng.random() < poweroff else "running"
    ip = str(ipaddress.IPv4Address("10.0.0.10") + vm_id)
    ip6 = f"fd00:1::{vm_id + 10:x}" if rng.random() < 0.4 else ""
    nics = [NicSpec(ip=ip, ip6=ip6)]
    if rng.random() < 0.2:
        nics.append(
            NicSpec(ip=str(ipaddress.IPv4Address("172.16.0.10") + vm_id), network="private")
        )
    pci = []
    if rng.random() < 0.05:
        pci.append(
            NicSpec(ip=str(ipaddress.IPv4Address("192.168.100.10") + vm_id), network="sriov")
        )
    user: dict[str, Any] = {"HYPERVISOR": "kvm", "LOGO": "images/logos/ubuntu.png"}
    flavour_draw = rng.random()
    if flavour_draw < 0.6:
        user["FLAVOURS"] = str(rng.choice((1, 2, 4, 8)))
    elif flavour_draw < 0.65:
        user["FLAVOURS"] = "gpu.large"
    if rng.random() < 0.3:
        user["PROMETHEUS_EXPORTER"] = str(rng.choice((9100, 9104, 9187)))
    role = ""
    if rng.random() < 0.25:
        role = rng.choice(_ROLES)
        user["SERVICE_ID"] = str(rng.randint(1, 20))
        user["ROLE_NAME"] = role
    if rng.random() < 0.1:
        user["LABELS"] = "sim/generated"
    image, image_size = rng.choice(_IMAGES)
    disks = [image_size] + ([rng.choice((10240, 20480, 51200))] if rng.random() < 0.4 else [])
    return VmSpec(
        id=vm_id,
        name=f"{role or 'vm'}-{vm_id}",
        host=host,
        state=state,
        memory=rng.choice((512, 1024, 2048, 4096, 8192)),
        cpu=rng.choice((0.25, 0.5, 1.0, 2.0, 4.0)),
        vcpu=rng.choice((1, 2, 4, 8)),
        cpu_fraction=round(rng.uniform(0.03, 0.12), 3),
        disks=disks,
        nics=nics,
        pci_nics=pci,
        user_template=user,
        template={"_IMAGE": image},
    )


# ---------------------------------------------------------------------------------------------
# YAML fleets
# ---------------------------------------------------------------------------------------------


def load_fleet(path: Path, host_ip_base: str) -> Fleet:
    """Read and validate a fleet file; FleetError names the file and the bad field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetError(f"cannot read fleet file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()
        raise FleetError(f"fleet file {path} is not valid YAML: {' '.join(first[:3])}") from None
    try:
        return parse_fleet(data, host_ip_base)
    except FleetError as exc:
        raise FleetError(f"fleet file {path}: {exc}") from None


def parse_fleet(data: Any, host_ip_base: str) -> Fleet:
    """Validate a fleet document (already parsed YAML)."""
    if not isinstance(data, Mapping):
        raise FleetError("must be a mapping with 'hosts' and 'vms' lists")
    unknown = sorted(set(data) - {"hosts", "vms", "users"})
    if unknown:
        raise FleetError(f"unknown top-level key(s): {', '.join(map(str, unknown))}")
    hosts_raw = _list(data.get("hosts", []), "hosts")
    hosts = [_host(h, i, host_ip_base) for i, h in enumerate(hosts_raw)]
    names = [h.name for h in hosts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FleetError(f"hosts: duplicate name(s): {', '.join(dup)}")
    vms = [_vm(v, i, set(names)) for i, v in enumerate(_list(data.get("vms", []), "vms"))]
    ids = [v.id for v in vms if v.id is not None]
    dup_ids = sorted({i for i in ids if ids.count(i) > 1})
    if dup_ids:
        raise FleetError(f"vms: duplicate id(s): {', '.join(map(str, dup_ids))}")
    users = [_user(u, i) for i, u in enumerate(_list(data.get("users", []), "users"))]
    return Fleet(hosts, vms, users)


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise FleetError(f"{where}: must be a list")
    return value


def _mapping(value: Any, where: str, allowed: set[str]) -> Mapping:
    if not isinstance(value, Mapping):
        raise FleetError(f"{where}: must be a mapping")
    unknown = sorted(set(map(str, value)) - allowed)
    if unknown:
        raise FleetError(f"{where}: unknown key(s): {', '.join(unknown)}")
    return value


def _get(data: Mapping, key: str, where: str, kind: type, default: Any) -> Any:
    if key not in data or data[key] is None:
        return default
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise FleetError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


# what oned's template parser takes ([[:alnum:]_]+) and can still write as an XML element
_ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _attrs(data: Mapping, key: str, where: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise FleetError(f"{where}.{key}: must be a mapping of attribute names to values")
    for name, item in value.items():
        items = item if isinstance(item, list) else [item]
        names = [name] + [k for i in items if isinstance(i, Mapping) for k in i]
        for bad in (n for n in names if not _ATTR_NAME.match(str(n))):
            raise FleetError(f"{where}.{key}: {str(bad)!r} is not an attribute name")
    return {str(k).upper(): v for k, v in value.items()}


_HOST_KEYS = {"name", "hostname", "cpus", "memory_mib", "state", "template"}


def _host(raw: Any, index: int, host_ip_base: str) -> HostSpec:
    where = f"hosts[{index}]"
    data = _mapping(raw, where, _HOST_KEYS)
    name = _get(data, "name", where, str, "")
    if not name:
        raise FleetError(f"{where}.name: required")
    cpus = _get(data, "cpus", where, int, 32)
    memory = _get(data, "memory_mib", where, int, 131072)
    if cpus <= 0 or memory <= 0:
        raise FleetError(f"{where}: cpus and memory_mib must be positive")
    state = _get(data, "state", where, str, "MONITORED").upper()
    if state not in HOST_STATES:
        raise FleetError(f"{where}.state: unknown host state {state!r}")
    return HostSpec(
        name=name,
        hostname=_get(data, "hostname", where, str, host_address(host_ip_base, index)),
        cpus=cpus,
        memory_mib=memory,
        state=state,
        template=_attrs(data, "template", where),
    )


_VM_KEYS = {
    "id",
    "name",
    "host",
    "state",
    "memory",
    "cpu",
    "vcpu",
    "cpu_fraction",
    "disks",
    "nics",
    "pci_nics",
    "nic_aliases",
    "context",
    "user_template",
    "template",
    "owner",
}


def vm_spec(raw: Any, where: str, host_names: set[str] | None = None) -> VmSpec:
    """One VM entry (of a fleet file or a control-API request), validated."""
    data = _mapping(raw, where, _VM_KEYS)
    vm_id = _get(data, "id", where, int, None)
    if vm_id is not None and vm_id < 0:
        raise FleetError(f"{where}.id: must be >= 0")
    host = _get(data, "host", where, str, None)
    if host is not None and host_names is not None and host not in host_names:
        raise FleetError(f"{where}.host: no host named {host!r}")
    state = _get(data, "state", where, str, "running" if host else "pending").lower()
    if state not in VM_STATES_ALLOWED:
        raise FleetError(f"{where}.state: must be one of {', '.join(VM_STATES_ALLOWED)}")
    if state not in ("pending", "done") and host is None:
        raise FleetError(f"{where}: state {state} needs a host")
    if state == "pending" and host is not None:
        raise FleetError(f"{where}: a pending VM has no host yet (drop host or state)")
    fraction = _get(data, "cpu_fraction", where, float, DEFAULT_CPU_FRACTION)
    if not 0 <= fraction <= 1:
        raise FleetError(f"{where}.cpu_fraction: must be between 0 and 1")
    memory = _get(data, "memory", where, int, 1024)
    cpu = _get(data, "cpu", where, float, 1.0)
    vcpu = _get(data, "vcpu", where, int, 1)
    if memory <= 0 or cpu <= 0 or vcpu <= 0:
        raise FleetError(f"{where}: memory, cpu and vcpu must be positive")
    disks = _list(data.get("disks", [2252]), f"{where}.disks")
    for i, size in enumerate(disks):
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise FleetError(f"{where}.disks[{i}]: a size in MiB, got {size!r}")
    name = _get(data, "name", where, str, "")
    nics = _nics(data, "nics", where)
    return VmSpec(
        id=vm_id,
        name=name,
        host=host,
        state=state,
        memory=memory,
        cpu=cpu,
        vcpu=vcpu,
        cpu_fraction=fraction,
        disks=list(disks),
        nics=nics,
        pci_nics=_nics(data, "pci_nics", where),
        nic_aliases=_aliases(data, where, len(nics)),
        context=_attrs(data, "context", where),
        user_template=_attrs(data, "user_template", where),
        template=_attrs(data, "template", where),
        owner=_get(data, "owner", where, str, ""),
    )


def _vm(raw: Any, index: int, host_names: set[str]) -> VmSpec:
    return vm_spec(raw, f"vms[{index}]", host_names)


def _aliases(data: Mapping, where: str, nic_count: int) -> list[NicSpec]:
    aliases = _nics(data, "nic_aliases", where, frozenset({"parent"}))
    for i, alias in enumerate(aliases):
        if not 0 <= alias.parent < nic_count:
            raise FleetError(f"{where}.nic_aliases[{i}].parent: no NIC {alias.parent} in nics")
    return aliases


def _nics(
    data: Mapping, key: str, where: str, extra: frozenset[str] = frozenset()
) -> list[NicSpec]:
    out = []
    for i, raw in enumerate(_list(data.get(key, []), f"{where}.{key}")):
        spot = f"{where}.{key}[{i}]"
        if isinstance(raw, str):
            raw = {"ip": raw}
        nic = _mapping(raw, spot, {"ip", "ip6", "network", "network_id", *extra})
        spec = NicSpec(
            ip=_get(nic, "ip", spot, str, ""),
            ip6=_get(nic, "ip6", spot, str, ""),
            network=_get(nic, "network", spot, str, "public"),
            network_id=_get(nic, "network_id", spot, int, 0),
            parent=_get(nic, "parent", spot, int, 0),
        )
        for label, text, version in (("ip", spec.ip, 4), ("ip6", spec.ip6, 6)):
            if text:
                try:
                    if ipaddress.ip_address(text).version != version:
                        raise ValueError
                except ValueError:
                    raise FleetError(f"{spot}.{label}: not an IPv{version} address") from None
        out.append(spec)
    return out


def _user(raw: Any, index: int) -> UserSpec:
    where = f"users[{index}]"
    data = _mapping(raw, where, {"name", "password", "driver", "group"})
    name = _get(data, "name", where, str, "")
    if not name:
        raise FleetError(f"{where}.name: required")
    group = _get(data, "group", where, str, "users")
    if group not in ("users", "oneadmin"):
        raise FleetError(f"{where}.group: must be users or oneadmin")
    return UserSpec(
        name=name,
        password=_get(data, "password", where, str, ""),
        driver=_get(data, "driver", where, str, "core"),
        group=group,
    )


# ---------------------------------------------------------------------------------------------
# Specs to model objects
# ---------------------------------------------------------------------------------------------

# What VirtualMachine::insert moves from the user's template into TEMPLATE (there and in the
# parse_* / get_* functions it calls, src/vm/VirtualMachine.cc and VirtualMachineParser.cc:
# parse_well_known_attributes, parse_os, parse_cpu_model, parse_pci, parse_defaults,
# parse_vrouter, get_network_leases, get_disk_images, parse_graphics, parse_video,
# get_vmgroup). Every other attribute stays in USER_TEMPLATE.
TEMPLATE_ATTRIBUTES = frozenset(
    {
        "CLONING_TEMPLATE_ID",
        "CONTEXT",
        "CPU",
        "CPU_COST",
        "CPU_MODEL",
        "DISK",
        "DISK_COST",
        "EMULATOR",
        "FEATURES",
        "GRAPHICS",
        "HYPERV_OPTIONS",
        "INPUT",
        "MEMORY",
        "MEMORY_COST",
        "MEMORY_MAX",
        "MEMORY_RESIZE_MODE",
        "MEMORY_SLOTS",
        "NIC",
        "NIC_ALIAS",
        "NIC_DEFAULT",
        "NUMA_NODE",
        "OS",
        "PCI",
        "RAW",
        "SPICE_OPTIONS",
        "SUBMIT_ON_HOLD",
        "TEMPLATE_ID",
        "TM_MAD_SYSTEM",
        "TOPOLOGY",
        "TPM",
        "VCPU",
        "VCPU_MAX",
        "VIDEO",
        "VMGROUP",
        "VROUTER_ID",
        "VROUTER_KEEPALIVED_ID",
        "VROUTER_KEEPALIVED_PASSWORD",
    }
)


def make_host(spec: HostSpec, host_id: int) -> Host:
    """A Host with the TEMPLATE the KVM monitor probes would report."""
    attrs: dict[str, Any] = {
        "ARCH": "x86_64",
        "CPUSPEED": "2400",
        "HOSTNAME": spec.hostname,
        "HYPERVISOR": "kvm",
        "IM_MAD": "kvm",
        "KVM_CPU_MODEL": "host-passthrough",
        "MODELNAME": "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz",
        "RESERVED_CPU": "",
        "RESERVED_MEM": "",
        "VERSION": "7.0.0",
        "VM_MAD": "kvm",
    }
    attrs.update(spec.template)
    if not attrs.get("HOSTNAME"):
        attrs.pop("HOSTNAME", None)
    return Host(
        id=host_id,
        name=spec.name,
        template=Template.from_mapping(attrs),
        cpus=spec.cpus,
        memory_kib=spec.memory_mib * 1024,
    )


def _mac(ip: str, vm_id: int, nic_id: int) -> str:
    """OpenNebula's MAC: prefix 02:00 followed by the IPv4 address (or a hash without one)."""
    if ip:
        octets = ipaddress.IPv4Address(ip).packed
    else:
        octets = hashlib.sha256(f"{vm_id}/{nic_id}".encode()).digest()[:4]
    return "02:00:" + ":".join(f"{b:02x}" for b in octets)


def make_vm(spec: VmSpec, vm_id: int, now: int, owner: User) -> Vm:
    """A PENDING Vm carrying the full TEMPLATE and USER_TEMPLATE of the spec."""
    tmpl = Template()
    image = str(spec.template.get("_IMAGE", "ubuntu2204"))
    tmpl.add(
        "AUTOMATIC_DS_REQUIREMENTS",
        '("CLUSTERS/ID" @> 0)',
    )
    tmpl.add("AUTOMATIC_NIC_REQUIREMENTS", '("CLUSTERS/ID" @> 0)')
    tmpl.add("AUTOMATIC_REQUIREMENTS", "(CLUSTER_ID = 0) & !(PUBLIC_CLOUD = YES)")
    tmpl.add("CPU", _num(spec.cpu))
    for disk_id, size in enumerate(spec.disks):
        tmpl.add(
            "DISK",
            {
                "ALLOW_ORPHANS": "FORMAT",
                "CLONE": "YES",
                "CLONE_TARGET": "SYSTEM",
                "DATASTORE": "default",
                "DATASTORE_ID": "1",
                "DEV_PREFIX": "vd",
                "DISK_ID": str(disk_id),
                "DISK_SNAPSHOT_TOTAL_SIZE": "0",
                "DISK_TYPE": "FILE",
                "DRIVER": "qcow2",
                "FORMAT": "qcow2",
                "IMAGE": image if disk_id == 0 else f"data-{vm_id}-{disk_id}",
                "IMAGE_ID": str(disk_id if disk_id == 0 else 100 + vm_id),
                "LN_TARGET": "NONE",
                "ORIGINAL_SIZE": str(size),
                "READONLY": "NO",
                "SAVE": "NO",
                "SIZE": str(size),
                "SOURCE": "/var/lib/one//datastores/1/"
                + hashlib.md5(f"{vm_id}/{disk_id}".encode()).hexdigest(),  # noqa: S324
                "TARGET": "vd" + "abcdefgh"[disk_id % 8],
                "TM_MAD": "ssh",
                "TYPE": "FILE",
            },
        )
    tmpl.add("GRAPHICS", {"LISTEN": "0.0.0.0", "PORT": str(5900 + vm_id), "TYPE": "VNC"})
    tmpl.add("MEMORY", str(spec.memory))
    context: dict[str, str] = {
        "DISK_ID": str(len(spec.disks)),
        "NETWORK": "YES",
        "SSH_PUBLIC_KEY": "",
        "TARGET": "hda",
    }
    for nic_id, nic in enumerate(spec.nics):
        mac = _mac(nic.ip, vm_id, nic_id)
        values = {
            "AR_ID": "0",
            "BRIDGE": "br0" if nic.network == "public" else f"br-{nic.network}",
            "BRIDGE_TYPE": "linux",
            "CLUSTER_ID": "0",
            "MAC": mac,
            "MODEL": "virtio",
            "NAME": f"NIC{nic_id}",
            "NETWORK": nic.network,
            "NETWORK_ID": str(nic.network_id),
            "NIC_ID": str(nic_id),
            "SECURITY_GROUPS": "0",
            "TARGET": f"one-{vm_id}-{nic_id}",
            "VN_MAD": "bridge",
        }
        if nic.ip:
            values["IP"] = nic.ip
            context[f"ETH{nic_id}_IP"] = nic.ip
            context[f"ETH{nic_id}_MASK"] = "255.255.255.0"
        if nic.ip6:
            values["IP6"] = nic.ip6
            context[f"ETH{nic_id}_IP6"] = nic.ip6
            context[f"ETH{nic_id}_IP6_PREFIX_LENGTH"] = "64"
        context[f"ETH{nic_id}_MAC"] = mac
        tmpl.add("NIC", values)
    _add_aliases(tmpl, context, spec, vm_id)
    context.update({k: _scalar(v) for k, v in spec.context.items()})
    tmpl.add("CONTEXT", context)
    seed_uuid = uuid.UUID(bytes=hashlib.sha256(f"vm/{vm_id}/{spec.name}".encode()).digest()[:16])
    tmpl.add("OS", {"ARCH": "x86_64", "UUID": str(seed_uuid)})
    for pci_id, nic in enumerate(spec.pci_nics):
        nic_id = len(spec.nics) + pci_id
        values = {
            "ADDRESS": f"0000:3b:02.{pci_id + 1}",
            "BUS": "3b",
            "CLASS": "0200",
            "DEVICE": "154c",
            "DOMAIN": "0000",
            "FUNCTION": str(pci_id + 1),
            "MAC": _mac(nic.ip, vm_id, nic_id),
            "NAME": f"PCI{pci_id}",
            "NETWORK": nic.network,
            "NETWORK_ID": str(nic.network_id or 1),
            "NIC_ID": str(nic_id),
            "PCI_ID": str(pci_id),
            "SECURITY_GROUPS": "0",
            "SHORT_ADDRESS": f"3b:02.{pci_id + 1}",
            "SLOT": "02",
            "TYPE": "NIC",
            "VENDOR": "8086",
        }
        if nic.ip:
            values["IP"] = nic.ip
        tmpl.add("PCI", values)
    tmpl.add("TEMPLATE_ID", "0")
    tmpl.add("TM_MAD_SYSTEM", "ssh")
    tmpl.add("VCPU", str(spec.vcpu))
    tmpl.add("VMID", str(vm_id))
    user_template = Template.from_mapping(spec.user_template)
    for name, value in spec.template.items():
        if name.startswith("_"):
            continue
        # attributes oned does not know stay in USER_TEMPLATE (VirtualMachine::insert)
        target = tmpl if name in TEMPLATE_ATTRIBUTES else user_template
        target.erase(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Mapping):
                target.add(name, {str(k).upper(): _scalar(v) for k, v in item.items()})
            else:
                target.add(name, _scalar(item))
    return Vm(
        id=vm_id,
        name=spec.name or f"vm-{vm_id}",
        template=tmpl,
        user_template=user_template,
        stime=now,
        uid=owner.id,
        gid=owner.gid,
        uname=owner.name,
        gname=owner.gname,
        cpu_fraction=spec.cpu_fraction,
    )


def _add_aliases(tmpl: Template, context: dict[str, str], spec: VmSpec, vm_id: int) -> None:
    """NIC_ALIAS as VirtualMachineNics::get_network_leases sets them up: NIC_IDs after the NICs
    and PCI NICs, PARENT/PARENT_ID naming the NIC, ALIAS_ID counting per parent, the parent's
    ALIAS_IDS, and the ETH<parent>_ALIAS<n>_* CONTEXT (parse_context_network)."""
    nics = tmpl.get_all("NIC")
    per_parent: dict[int, list[str]] = {}
    for i, alias in enumerate(spec.nic_aliases):
        nic_id = len(spec.nics) + len(spec.pci_nics) + i
        alias_id = len(per_parent.setdefault(alias.parent, []))
        per_parent[alias.parent].append(str(nic_id))
        mac = _mac(alias.ip, vm_id, nic_id)
        values = {
            "ALIAS_ID": str(alias_id),
            "AR_ID": "0",
            "BRIDGE": "br0" if alias.network == "public" else f"br-{alias.network}",
            "BRIDGE_TYPE": "linux",
            "CLUSTER_ID": "0",
            "MAC": mac,
            "NAME": f"NIC{alias.parent}_ALIAS{alias_id}",
            "NETWORK": alias.network,
            "NETWORK_ID": str(alias.network_id),
            "NIC_ID": str(nic_id),
            "PARENT": f"NIC{alias.parent}",
            "PARENT_ID": str(alias.parent),
            "SECURITY_GROUPS": "0",
            "VN_MAD": "bridge",
        }
        prefix = f"ETH{alias.parent}_ALIAS{alias_id}_"
        if alias.ip:
            values["IP"] = alias.ip
            context[prefix + "IP"] = alias.ip
            context[prefix + "MASK"] = "255.255.255.0"
        if alias.ip6:
            values["IP6"] = alias.ip6
            context[prefix + "IP6"] = alias.ip6
            context[prefix + "IP6_PREFIX_LENGTH"] = "64"
        context[prefix + "MAC"] = mac
        tmpl.add("NIC_ALIAS", values)
    for parent, ids in per_parent.items():
        nic = nics[parent]
        if isinstance(nic, dict):
            nic["ALIAS_IDS"] = ",".join(ids)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "YES" if value else "NO"
    return "" if value is None else str(value)
