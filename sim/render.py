"""oned's XML for VMs, hosts, users and hooks (share/doc/xsd/*.xsd, element order included).

`vm_xml(vm, "extended")` is VirtualMachine::to_xml (one.vmpool.infoextended: the last HISTORY),
`vm_xml(vm, "full")` is to_xml_extended (one.vm.info and a hook's $TEMPLATE: every HISTORY),
`vm_xml(vm, "short")` is to_xml_short (one.vmpool.info):
TEMPLATE cut to CPU/MEMORY/VCPU/DISK/NIC/GRAPHICS without CONTEXT, USER_TEMPLATE cut to the
scheduler's and Sunstone's attributes, the last HISTORY record in its short form.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from . import states
from .model import GROUPS, ExecutionRecord, History, Hook, Host, User, Vm
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

# umask 177: owner use+manage, nobody else
_PERMISSIONS = (
    "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>"
    "<GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>"
    "<OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>"
)


def _el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def vm_xml(vm: Vm, form: str) -> str:
    """The VM's XML, `extended` (last history), `full` (all history) or `short`; cached."""
    cached = vm.cache.get(form)
    if cached is None:
        if form == "short":
            cached = _vm_short(vm)
        else:
            cached = _vm_extended(vm, all_history=form == "full")
        vm.cache[form] = cached
    return cached


def _vm_header(vm: Vm, extended: bool) -> list[str]:
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
        _el("LAST_POLL", vm.last_poll),
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


def _monitoring(vm: Vm) -> dict[str, str]:
    """What the monitor driver last reported: nothing unless the VM is on a host and running."""
    if not vm.running:
        return {}
    mem_kib = vm.memory_mib() * 1024
    return {
        "CPU": f"{vm.cpu_fraction * 100:.2f}",
        "DISKRDBYTES": str(vm.id * 4096 + 1_048_576),
        "DISKRDIOPS": str(vm.id + 100),
        "DISKWRBYTES": str(vm.id * 2048 + 524_288),
        "DISKWRIOPS": str(vm.id + 50),
        "ID": str(vm.id),
        "MEMORY": str(int(mem_kib * 0.8)),
        "NETRX": str(vm.id * 1000 + 10_000),
        "NETTX": str(vm.id * 700 + 7_000),
        "TIMESTAMP": str(vm.last_poll),
    }


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
                    ("PLAN_ID", -1),
                    ("ACTION_ID", -1),
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


def _vm_extended(vm: Vm, all_history: bool) -> str:
    monitoring = _monitoring(vm)
    mon = (
        "<MONITORING>" + "".join(render_attrs(monitoring.items())) + "</MONITORING>"
        if monitoring
        else "<MONITORING/>"
    )
    records = vm.history if all_history else vm.history[-1:]
    return (
        "<VM>"
        + "".join(_vm_header(vm, extended=True))
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


def _vm_short(vm: Vm) -> str:
    tmpl = vm.template
    disks = "".join(
        "<DISK>" + _short_vector(d, _SHORT_DISK) + "</DISK>" for d in tmpl.get_all("DISK")
    )
    nics = "".join(_short_nic(n) for n in tmpl.get_all("NIC"))
    graphics = tmpl.get("GRAPHICS")
    graphics_xml = "".join(render_attrs([("GRAPHICS", graphics)])) if graphics is not None else ""
    monitoring = _monitoring(vm)
    mon = (
        "<MONITORING>"
        + _el("CPU", monitoring.get("CPU", ""))
        + _el("MEMORY", monitoring.get("MEMORY", ""))
        + _el("STATE", "")
        + "</MONITORING>"
        if monitoring
        else "<MONITORING/>"
    )
    return (
        "<VM>"
        + "".join(_vm_header(vm, extended=False))
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


def host_xml(host: Host, vms: dict[int, Vm]) -> str:
    """Host::to_xml: HOST_SHARE figures follow the VMs holding capacity on the host; cached."""
    cached = host.cache.get("xml")
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
    monitoring = (
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
        + monitoring
        + "</HOST>"
    )
    host.cache["xml"] = xml
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
    """UserPool dump: USER elements, then one QUOTAS per user, then DEFAULT_USER_QUOTAS."""
    users = list(users)
    body = "".join("<USER>" + _user_core(u) + "</USER>" for u in users)
    quotas = "".join("<QUOTAS>" + _el("ID", u.id) + _QUOTAS + "</QUOTAS>" for u in users)
    return (
        "<USER_POOL>"
        + body
        + quotas
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


def execution_record_xml(rec: ExecutionRecord) -> str:
    """HOOK_EXECUTION_RECORD as HookLog::add stores it (STDOUT/STDERR base64, like onehem)."""
    return (
        "<HOOK_EXECUTION_RECORD>"
        + _el("HOOK_ID", rec.hook_id)
        + _el("EXECUTION_ID", rec.execution_id)
        + _el("TIMESTAMP", rec.timestamp)
        + _el("ARGUMENTS", rec.arguments)
        + "<EXECUTION_RESULT>"
        + _el("COMMAND", rec.command)
        + _el("STDOUT", base64.b64encode(rec.stdout.encode()).decode())
        + _el("STDERR", base64.b64encode(rec.stderr.encode()).decode())
        + _el("CODE", rec.code)
        + "</EXECUTION_RESULT>"
        + "</HOOK_EXECUTION_RECORD>"
    )


def hooklog_xml(records: Iterable[ExecutionRecord]) -> str:
    records = list(records)
    if not records:
        return "<HOOKLOG/>"
    return "<HOOKLOG>" + "".join(execution_record_xml(r) for r in records) + "</HOOKLOG>"


def state_names(vm: Vm) -> tuple[str, str]:
    """(STATE, LCM_STATE) names as the hook manager writes them."""
    return states.vm_state_name(vm.state), states.lcm_state_name(vm.lcm_state)
