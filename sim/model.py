"""The simulated cloud's objects: VMs, hosts, users, hooks, and their cached XML.

Objects are plain data; `sim.cloud.Cloud` changes them and calls `invalidate()` so the next
reply re-renders only what changed (a 10,000-VM pool is assembled from cached pieces).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from . import states
from .template import Template

# oned.conf HOOK_LOG_CONF/LOG_RETENTION default
HOOK_LOG_RETENTION = 20

GROUPS = {0: "oneadmin", 1: "users"}


@dataclass
class History:
    """One HISTORY record: a stay of a VM on a host.

    UID/GID name who performed ACTION; History's constructor leaves them -1 and
    VirtualMachine::clear_action puts them back to -1 when the VM runs again.
    """

    seq: int
    hostname: str
    hid: int
    stime: int
    uid: int = -1
    gid: int = -1
    etime: int = 0
    action: int = 0
    cid: int = 0
    ds_id: int = 0
    vm_mad: str = "kvm"
    tm_mad: str = "ssh"
    pstime: int = 0
    petime: int = 0
    rstime: int = 0
    retime: int = 0
    estime: int = 0
    eetime: int = 0


@dataclass(frozen=True)
class Monitoring:
    """One row of oned's vm_monitoring table: what the monitor last reported for a VM."""

    timestamp: int
    values: tuple[tuple[str, str], ...]


@dataclass(eq=False)
class Vm:
    """A virtual machine; TEMPLATE and USER_TEMPLATE hold every attribute oned would.

    `monitoring` is the VM's last monitoring record (what one.vm.info loads);
    `body_monitoring` what the VM's stored body carries, which pool calls and hooks show:
    oned writes a VM with its monitoring loaded only on a few transitions, and with none
    (LAST_POLL 0) on every other.
    """

    id: int
    name: str
    template: Template
    user_template: Template
    stime: int
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    state: int = states.PENDING
    lcm_state: int = states.LCM_INIT
    prev_state: int = states.PENDING
    prev_lcm_state: int = states.LCM_INIT
    etime: int = 0
    deploy_id: str = ""
    history: list[History] = field(default_factory=list)
    cpu_fraction: float = 0.1
    monitoring: Monitoring | None = None
    body_monitoring: Monitoring | None = None
    cache: dict[str, str] = field(default_factory=dict, repr=False)
    rpc_cache: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def host_id(self) -> int:
        """HID of the last history record, -1 when never deployed."""
        return self.history[-1].hid if self.history else -1

    @property
    def hostname(self) -> str:
        return self.history[-1].hostname if self.history else ""

    @property
    def running(self) -> bool:
        return self.state == states.ACTIVE and self.lcm_state == states.RUNNING

    def memory_mib(self) -> int:
        return _int(self.template.get_str("MEMORY"))

    def cpu(self) -> float:
        return _float(self.template.get_str("CPU"))

    def invalidate(self) -> None:
        self.cache.clear()
        self.rpc_cache.clear()


@dataclass(eq=False)
class Host:
    """A hypervisor host; VMS lists the VMs holding capacity on it."""

    id: int
    name: str
    template: Template
    cpus: int = 32
    memory_kib: int = 128 * 1024 * 1024
    state: int = states.MONITORED
    prev_state: int = states.MONITORED
    im_mad: str = "kvm"
    vm_mad: str = "kvm"
    cluster_id: int = 0
    cluster: str = "default"
    last_monitored: int = 0
    vms: list[int] = field(default_factory=list)
    cache: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def hostname(self) -> str:
        """What agents are reached at: TEMPLATE/HOSTNAME, else the host NAME (SPEC 6)."""
        return self.template.get_str("HOSTNAME") or self.name

    def invalidate(self) -> None:
        self.cache.clear()


@dataclass(eq=False)
class User:
    """An OpenNebula user; PASSWORD holds the sha256 hex of a core password, as oned stores it."""

    id: int
    name: str
    password: str
    auth_driver: str = "core"
    gid: int = 1
    groups: list[int] = field(default_factory=lambda: [1])
    enabled: bool = True
    template: Template = field(default_factory=Template)

    @property
    def gname(self) -> str:
        return GROUPS.get(self.gid, str(self.gid))

    @property
    def is_admin(self) -> bool:
        """Members of the oneadmin group may do anything, as oned's default ACLs allow."""
        return self.id == 0 or 0 in self.groups


@dataclass(frozen=True)
class ExecutionRecord:
    """One HOOK_EXECUTION_RECORD: what the hook manager ran and what came back."""

    hook_id: int
    execution_id: int
    timestamp: int
    arguments: str
    command: str
    stdout: str
    stderr: str
    code: int
    remote_host: str
    resource: str
    resource_id: int
    state: str
    lcm_state: str
    timed_out: bool = False

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(eq=False)
class Hook:
    """A state hook registered with one.hook.allocate."""

    id: int
    name: str
    type: str
    template: Template
    log: collections.deque[ExecutionRecord] = field(
        default_factory=lambda: collections.deque(maxlen=HOOK_LOG_RETENTION)
    )
    next_execution_id: int = 0

    @property
    def resource(self) -> str:
        return self.template.get_str("RESOURCE").upper()

    @property
    def state(self) -> str:
        return self.template.get_str("STATE").upper()

    @property
    def lcm_state(self) -> str:
        return self.template.get_str("LCM_STATE").upper()


@dataclass(frozen=True)
class StateEvent:
    """A state change, as oned's hook manager publishes it (the object's XML at that moment)."""

    resource: str
    id: int
    state: str
    lcm_state: str
    xml: str
    remote_host: str


def _int(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        return 0


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
