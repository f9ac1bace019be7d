"""oned's XML for VMs, hosts, users and hooks (share/doc/xsd/*.xsd, element order included).

`vm_xml(vm, "extended")` is VirtualMachine::to_xml (one.vmpool.infoextended: the last HISTORY),
`vm_xml(vm, "full")` is to_xml_extended after load_monitoring (one.vm.info: every HISTORY and
the last monitoring record), `vm_xml(vm, "hook")` to_xml_extended of the VM being written (a
hook's $TEMPLATE: every HISTORY, the stored body's MONITORING), `vm_xml(vm, "short")` is
to_xml_short (one.vmpool.info): TEMPLATE cut to CPU/MEMORY/VCPU/DISK/NIC/GRAPHICS without
CONTEXT, USER_TEMPLATE cut to the scheduler's and Sunstone's attributes, the last HISTORY record
in its short form. Pool replies are the bodies oned stored (MONITORING as described in
`sim.model.Vm`), so only one.vm.info and one.host.info show current monitoring.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from . import states
from .model import GROUPS, ExecutionRecord, History, Hook, Host, Monitoring, User, Vm
from .template import Template, escape, render_attrs

# VirtualMachineDisk::to_xml_short and VirtualMachineNic::to_xml_short
_SHORT_DISK = (
    "DISK_ID",
    "DATASTORE",
    "DATASTORE_ID",
    "IMAGE",
    "IMAGE_ID",
    "SIZE",
    "TYPE",
    "CLONE",
    "CLONE_TARGET",
    "LN_TARGET",
    "DISK_SNAPSHOT_TOTAL_SIZE",
)
_SHORT_NIC_OPTIONAL = (
    "IP",
    "EXTERNAL_IP",
    "IP6",
    "IP6_ULA",
    "IP6_LINK",
    "IP6_GLOBAL",
    "NETWORK_MODE",
    "SCHED_REQUIREMENTS",
    "SCHED_RANK",
)
_SHORT_NIC = ("MAC", "NETWORK", "NETWORK_ID", "NIC_ID", "SECURITY_GROUPS")
# VirtualMachineTemplate::to_xml_short keeps these USER_TEMPLATE attributes only
_SHORT_USER = (
    "LABELS",
    "ERROR",
    "SCHED_MESSAGE",
    "SCHED_RANK",
    "SCHED_DS_RANK",
    "SCHED_REQUIREMENTS",
    "SCHED_DS_REQUIREMENTS",
    "USER_PRIORITY",
)
_NON_EMPTY_SHORT_USER = {"LABELS", "ERROR", "SCHED_MESSAGE"}

# VirtualMachine::add_history and cp_history: records are created with plan_id -2, action_id -1
PLAN_ID = -2
ACTION_ID = -1

# umask 177: owner use+manage, nobody else
_PERMISSIONS = (
    "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>"
    "<GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>"
    "<OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>"
)


def _el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def vm_xml(vm: Vm, form: str) -> str:
    """The VM's XML: `short`, `extended`, `full` or `hook` (see the module docstring); cached."""
    cached = vm.cache.get(form)
    if cached is None:
        if form == "short":
            cached = _vm_short(vm)
        elif form == "full":
            cached = _vm_extended(vm, vm.history, vm.monitoring)
        elif form == "hook":
            cached = _vm_extended(vm, vm.history, vm.body_monitoring)
        else:
            cached = _vm_extended(vm, vm.history[-1:], vm.body_monitoring)
        vm.cache[form] = cached
    return cached


def _vm_header(vm: Vm, extended: bool, monitoring: Monitoring | None) -> list[str]:
    parts = [
        _el("ID", vm.id),
        _el("UID", vm.uid),
        _el("GID", vm.gid),
        _el("UNAME", vm.uname),
        _el("GNAME", vm.gname),
        _el("NAME", vm.name),
    ]
    if extended:
        parts.append(_PERMISSIONS)
    parts += [
        # monitoring.timestamp(): 0 when the object was written without its monitoring
        _el("LAST_POLL", monitoring.timestamp if monitoring else 0),
        _el("STATE", vm.state),
        _el("LCM_STATE", vm.lcm_state),
    ]
    if extended:
        parts += [_el("PREV_STATE", vm.prev_state), _el("PREV_LCM_STATE", vm.prev_lcm_state)]
    parts += [
        _el("RESCHED", 0),
        _el("STIME", vm.stime),
        _el("ETIME", vm.etime),
        _el("DEPLOY_ID", vm.deploy_id),
    ]
    return parts


def _history(vm: Vm, records: Iterable[History], short: bool) -> str:
    items = []
    for h in records:
        if short:
            items.append(
                "<HISTORY>"
                + _el("OID", vm.id)
                + _el("SEQ", h.seq)
                + _el("HOSTNAME", h.hostname)
                + _el("HID", h.hid)
                + _el("CID", h.cid)
                + _el("DS_ID", h.ds_id)
                + _el("VM_MAD", h.vm_mad)
                + _el("TM_MAD", h.tm_mad)
                + _el("ACTION", h.action)
                + "</HISTORY>"
            )
            continue
        items.append(
            "<HISTORY>"
            + "".join(
                _el(name, value)
                for name, value in (
                    ("OID", vm.id),
                    ("SEQ", h.seq),
                    ("HOSTNAME", h.hostname),
                    ("HID", h.hid),
                    ("CID", h.cid),
                    ("STIME", h.stime),
                    ("ETIME", h.etime),
                    ("VM_MAD", h.vm_mad),
                    ("TM_MAD", h.tm_mad),
                    ("DS_ID", h.ds_id),
                    ("PLAN_ID", PLAN_ID),
                    ("ACTION_ID", ACTION_ID),
                    ("PSTIME", h.pstime),
                    ("PETIME", h.petime),
                    ("RSTIME", h.rstime),
                    ("RETIME", h.retime),
                    ("ESTIME", h.estime),
                    ("EETIME", h.eetime),
                    ("ACTION", h.action),
                    ("UID", h.uid),
                    ("GID", h.gid),
                    ("REQUEST_ID", -1),
                )
            )
            + "</HISTORY>"
        )
    if not items:
        return "<HISTORY_RECORDS/>"
    return "<HISTORY_RECORDS>" + "".join(items) + "</HISTORY_RECORDS>"


def _vm_extended(vm: Vm, records: list[History], monitoring: Monitoring | None) -> str:
    mon = (
        "<MONITORING>" + "".join(render_attrs(monitoring.values)) + "</MONITORING>"
        if monitoring
        else "<MONITORING/>"
    )
    return (
        "<VM>"
        + "".join(_vm_header(vm, extended=True, monitoring=monitoring))
        + mon
        + "<SCHED_ACTIONS/>"
        + vm.template.to_xml("TEMPLATE")
        + vm.user_template.to_xml("USER_TEMPLATE")
        + _history(vm, records, short=False)
        + "<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS>"
        + "</VM>"
    )


def _short_vector(value: object, names: Iterable[str]) -> str:
    values = value if isinstance(value, dict) else {}
    return "".join(_el(name, values.get(name, "")) for name in names)


def _short_nic(value: object) -> str:
    values = value if isinstance(value, dict) else {}
    optional = "".join(_el(n, values[n]) for n in _SHORT_NIC_OPTIONAL if values.get(n))
    return "<NIC>" + optional + _short_vector(values, _SHORT_NIC) + "</NIC>"


def _short_user_template(tmpl: Template) -> str:
    if not len(tmpl):
        return "<USER_TEMPLATE/>"
    parts = []
    for name in _SHORT_USER:
        value = tmpl.get(name)
        if not isinstance(value, str):
            continue
        if name in _NON_EMPTY_SHORT_USER and not value:
            continue
        parts.append(_el(name, value))
    parts += render_attrs(("SCHED_ACTION", v) for v in tmpl.get_all("SCHED_ACTION"))
    return "<USER_TEMPLATE>" + "".join(parts) + "</USER_TEMPLATE>"


def _by_id(values: Iterable[object], id_name: str) -> list[dict[str, str]]:
    """ExtendedAttributeSet::init_attribute_map with ids: vectors keyed by `id_name` in a
    std::map, so sorted by it, the first of a repeated id kept, one without an id left out."""
    kept: dict[int, dict[str, str]] = {}
    for value in values:
        if not isinstance(value, dict):
            continue
        try:
            key = int(value.get(id_name, ""))
        except ValueError:
            continue
        kept.setdefault(key, value)
    return [kept[key] for key in sorted(kept)]


def vm_nics(tmpl: Template) -> list[dict[str, str]]:
    """VirtualMachine::from_xml's NIC set: NIC, PCI with TYPE=NIC and NIC_ALIAS, by NIC_ID."""
    pci_nics = [v for v in tmpl.get_all("PCI") if isinstance(v, dict) and v.get("TYPE") == "NIC"]
    return _by_id([*tmpl.get_all("NIC"), *pci_nics, *tmpl.get_all("NIC_ALIAS")], "NIC_ID")


def _vm_short(vm: Vm) -> str:
    """VirtualMachine::to_xml_short; every member of the NIC set prints as <NIC>."""
    tmpl = vm.template
    disks = "".join(
        "<DISK>" + _short_vector(d, _SHORT_DISK) + "</DISK>"
        for d in _by_id(tmpl.get_all("DISK"), "DISK_ID")
    )
    nics = "".join(_short_nic(n) for n in vm_nics(tmpl))
    graphics = tmpl.get("GRAPHICS")
    graphics_xml = "".join(render_attrs([("GRAPHICS", graphics)])) if graphics is not None else ""
    monitoring = vm.body_monitoring
    values = dict(monitoring.values) if monitoring else {}
    # VirtualMachineMonitorInfo::to_xml_short
    mon = (
        "<MONITORING>"
        + _el("CPU", values.get("CPU", ""))
        + _el("MEMORY", values.get("MEMORY", ""))
        + _el("STATE", values.get("STATE", ""))
        + "</MONITORING>"
        if values
        else "<MONITORING/>"
    )
    return (
        "<VM>"
        + "".join(_vm_header(vm, extended=False, monitoring=monitoring))
        + "<TEMPLATE>"
        + _el("CPU", tmpl.get_str("CPU"))
        + _el("MEMORY", tmpl.get_str("MEMORY"))
        + _el("VCPU", tmpl.get_str("VCPU"))
        + disks
        + nics
        + graphics_xml
        + "</TEMPLATE>"
        + mon
        + _short_user_template(vm.user_template)
        + _history(vm, vm.history[-1:], short=True)
        + "</VM>"
    )


def host_xml(host: Host, vms: dict[int, Vm], monitoring: bool) -> str:
    """Host::to_xml; HOST_SHARE figures follow the VMs holding capacity on the host; cached.

    With `monitoring` the host's last monitoring record is loaded, as one.host.info does
    (HostInfo::load_extended_data); otherwise it is the stored body one.hostpool.info and
    host hooks show, whose MONITORING is empty: oned writes hosts without loading it.
    """
    key = "info" if monitoring else "body"
    cached = host.cache.get(key)
    if cached is not None:
        return cached
    on_host = [vms[i] for i in host.vms if i in vms]
    mem_usage = sum(vm.memory_mib() * 1024 for vm in on_host)
    cpu_usage = int(round(sum(vm.cpu() * 100 for vm in on_host)))
    max_cpu = host.cpus * 100
    busy = sum(vm.cpu_fraction for vm in on_host if vm.running)
    used_cpu = min(max_cpu, int(round(busy * 100)) + 5 * host.cpus)
    used_mem = min(host.memory_kib, int(sum(vm.memory_mib() * 1024 * 0.8 for vm in on_host)))
    used_mem += host.memory_kib // 50
    disk_max = 1_800_000
    disk_used = 2252 * len(on_host)
    share = (
        "<HOST_SHARE>"
        + _el("MEM_USAGE", mem_usage)
        + _el("CPU_USAGE", cpu_usage)
        + _el("TOTAL_MEM", host.memory_kib)
        + _el("TOTAL_CPU", max_cpu)
        + _el("MAX_MEM", host.memory_kib)
        + _el("MAX_CPU", max_cpu)
        + _el("RUNNING_VMS", len(on_host))
        + _el("VMS_THREAD", 1)
        + "<DATASTORES>"
        + _el("DISK_USAGE", disk_used)
        + _el("FREE_DISK", disk_max - disk_used)
        + _el("MAX_DISK", disk_max)
        + _el("USED_DISK", disk_used)
        + "</DATASTORES>"
        + "<PCI_DEVICES/><NUMA_NODES/>"
        + "</HOST_SHARE>"
    )
    vm_ids = "".join(_el("ID", i) for i in host.vms)
    # HostMonitoringTemplate::to_xml
    monitoring_xml = (
        "<MONITORING>"
        + _el("TIMESTAMP", host.last_monitored)
        + _el("ID", host.id)
        + "<CAPACITY>"
        + _el("FREE_CPU", max_cpu - used_cpu)
        + _el("FREE_MEMORY", host.memory_kib - used_mem)
        + _el("USED_CPU", used_cpu)
        + _el("USED_MEMORY", used_mem)
        + "</CAPACITY>"
        + "<SYSTEM>"
        + _el("NETRX", host.id * 100_000)
        + _el("NETTX", host.id * 80_000)
        + "</SYSTEM>"
        + "</MONITORING>"
        if monitoring
        else "<MONITORING/>"
    )
    xml = (
        "<HOST>"
        + _el("ID", host.id)
        + _el("NAME", host.name)
        + _el("STATE", host.state)
        + _el("PREV_STATE", host.prev_state)
        + _el("IM_MAD", host.im_mad)
        + _el("VM_MAD", host.vm_mad)
        + _el("CLUSTER_ID", host.cluster_id)
        + _el("CLUSTER", host.cluster)
        + share
        + (f"<VMS>{vm_ids}</VMS>" if vm_ids else "<VMS/>")
        + host.template.to_xml("TEMPLATE")
        + monitoring_xml
        + "</HOST>"
    )
    host.cache[key] = xml
    return xml


def _user_core(user: User) -> str:
    return (
        _el("ID", user.id)
        + _el("GID", user.gid)
        + "<GROUPS>"
        + "".join(_el("ID", g) for g in user.groups)
        + "</GROUPS>"
        + _el("GNAME", GROUPS.get(user.gid, str(user.gid)))
        + _el("NAME", user.name)
        + _el("PASSWORD", user.password)
        + _el("AUTH_DRIVER", user.auth_driver)
        + _el("ENABLED", 1 if user.enabled else 0)
        + user.template.to_xml("TEMPLATE")
    )


_QUOTAS = "<DATASTORE_QUOTA/><NETWORK_QUOTA/><VM_QUOTA/><IMAGE_QUOTA/>"


def user_xml(user: User) -> str:
    """User::to_xml as one.user.info returns it, quotas empty (the simulator enforces none)."""
    return (
        "<USER>"
        + _user_core(user)
        + _QUOTAS
        + "<DEFAULT_USER_QUOTAS>"
        + _QUOTAS
        + "</DEFAULT_USER_QUOTAS></USER>"
    )


def user_pool_xml(users: Iterable[User]) -> str:
    """UserPool::dump: each USER body followed by its QUOTAS row (the LEFT JOIN's two columns
    appended per row), then DEFAULT_USER_QUOTAS."""
    body = "".join(
        "<USER>" + _user_core(u) + "</USER><QUOTAS>" + _el("ID", u.id) + _QUOTAS + "</QUOTAS>"
        for u in users
    )
    return (
        "<USER_POOL>"
        + body
        + "<DEFAULT_USER_QUOTAS>"
        + _QUOTAS
        + "</DEFAULT_USER_QUOTAS></USER_POOL>"
    )


def hook_xml(hook: Hook, with_log: bool) -> str:
    """Hook::to_xml; one.hook.info adds the HOOKLOG, one.hookpool.info does not."""
    log = hooklog_xml(hook.log) if with_log else ""
    return (
        "<HOOK>"
        + _el("ID", hook.id)
        + _el("NAME", hook.name)
        + _el("TYPE", hook.type)
        + hook.template.to_xml("TEMPLATE")
        + log
        + "</HOOK>"
    )


def ruby_base64(data: bytes) -> str:
    """Ruby's Base64.encode64 (pack("m")): a newline after every 60 characters and at the end."""
    return "".join(
        base64.b64encode(data[i : i + 45]).decode() + "\n" for i in range(0, len(data), 45)
    )


def execution_record_xml(rec: ExecutionRecord) -> str:
    """HOOK_EXECUTION_RECORD as HookLog::add stores what onehem sent: STDOUT and STDERR from
    GenericCommand#to_xml in src/mad/ruby/CommandManager.rb (Base64.encode64)."""
    return (
        "<HOOK_EXECUTION_RECORD>"
        + _el("HOOK_ID", rec.hook_id)
        + _el("EXECUTION_ID", rec.execution_id)
        + _el("TIMESTAMP", rec.timestamp)
        + _el("ARGUMENTS", rec.arguments)
        + "<EXECUTION_RESULT>"
        + _el("COMMAND", rec.command)
        + _el("STDOUT", ruby_base64(rec.stdout.encode()))
        + _el("STDERR", ruby_base64(rec.stderr.encode()))
        + _el("CODE", rec.code)
        + "</EXECUTION_RESULT>"
        + "</HOOK_EXECUTION_RECORD>"
    )


def hooklog_xml(records: Iterable[ExecutionRecord]) -> str:
    """HookLog::dump_log always writes both tags, even around no record."""
    return "<HOOKLOG>" + "".join(execution_record_xml(r) for r in records) + "</HOOKLOG>"


def state_names(vm: Vm) -> tuple[str, str]:
    """(STATE, LCM_STATE) names as the hook manager writes them."""
    return states.vm_state_name(vm.state), states.lcm_state_name(vm.lcm_state)
