"""The simulated cloud: oned's objects and the state machine that moves them.

Every operation walks the VM or host through the intermediate states oned goes through
(deploy = PROLOG, BOOT, RUNNING; terminate = SHUTDOWN, EPILOG, DONE...), and each state change
is offered to the hooks registered for it, with the object's XML at that moment, exactly as
oned's hook manager publishes it. No I/O here: the hook runner and the hypervisors listen.
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import secrets
import time
from collections.abc import Callable

from . import states as st
from .fleet import Fleet, VmSpec, make_host, make_vm
from .model import ExecutionRecord, History, Hook, Host, Monitoring, StateEvent, User, Vm
from .render import host_xml, vm_xml
from .template import Template, TemplateError, parse_template


class CloudError(Exception):
    """An operation oned would refuse; subclasses carry oned's error class."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoSuchObject(CloudError):
    def __init__(self, kind: str, oid: int | str) -> None:
        super().__init__(f"Error getting {kind} [{oid}].")
        self.kind = kind
        self.oid = oid


class ActionRefused(CloudError):
    """The object's state does not allow the action (oned's ACTION error)."""


class AllocateError(CloudError):
    """A new object cannot be created (oned's ALLOCATE error)."""


class TemplateRejected(CloudError):
    """An update template that does not parse."""


Listener = Callable[[StateEvent, list[Hook]], None]

VM_HOOK_ON = {
    "PROLOG": ("ACTIVE", "PROLOG"),
    "RUNNING": ("ACTIVE", "RUNNING"),
    "SHUTDOWN": ("ACTIVE", "EPILOG"),
    "STOP": ("STOPPED", "LCM_INIT"),
    "DONE": ("DONE", "LCM_INIT"),
    "UNKNOWN": ("ACTIVE", "UNKNOWN"),
}


# PoolObjectSQL::INVALID_NAME_CHARS, what PoolObjectSQL::name_is_valid refuses in a NAME
INVALID_NAME_CHARS = set("&|:\\\";/'#{}$<>\t\n\v\f\r")

# LifeCycleManager::trigger_deploy: the PROLOG (and, on prolog success, BOOT) state of a
# deploy depends on what the previous HISTORY record was closed by
_DEPLOY_STATES = {
    st.HISTORY_ACTIONS["undeploy"]: ("PROLOG_UNDEPLOY", "BOOT_UNDEPLOY"),
    st.HISTORY_ACTIONS["undeploy-hard"]: ("PROLOG_UNDEPLOY", "BOOT_UNDEPLOY"),
    st.HISTORY_ACTIONS["stop"]: ("PROLOG_RESUME", "BOOT_STOPPED"),
}


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_user(
    user_id: int, name: str, password: str, driver: str, gid: int, groups: list[int]
) -> User:
    """UserPool::allocate: every user gets TEMPLATE/TOKEN_PASSWORD, one_util::random_password()
    (the sha256 hex of a random int), the key OneGate signs the user's VM tokens with."""
    template = Template()
    template.add("TOKEN_PASSWORD", sha256_hex(str(secrets.randbelow(2**31))))
    return User(user_id, name, password, driver, gid, list(groups), template=template)


class Cloud:
    """All objects of the simulated oned, and the operations on them."""

    def __init__(self, admin_session: str, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.vms: dict[int, Vm] = {}
        self.hosts: dict[int, Host] = {}
        self.users: dict[int, User] = {}
        self.hooks: dict[int, Hook] = {}
        self.executions: collections.deque[ExecutionRecord] = collections.deque(maxlen=1000)
        self._listeners: list[Listener] = []
        self._next_vm = 0
        self._next_hook = 0
        # bumped on every VM/host state or placement change (the hypervisors follow it)
        self.changes = 0
        name, _, password = admin_session.partition(":")
        # UserPool::UserPool allocates both at bootstrap, like any user
        self.users[0] = new_user(0, name, sha256_hex(password), "core", 0, [0])
        self.users[1] = new_user(1, "serveradmin", sha256_hex(password), "server_cipher", 0, [0])

    def now(self) -> int:
        return int(self._clock())

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(event, hooks)` on every state change some hook waits for."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ building

    def load_fleet(self, fleet: Fleet) -> None:
        """Create the fleet's users, hosts and VMs and walk each VM to its state."""
        for spec in fleet.users:
            self.allocate_user(
                spec.name, spec.password, spec.driver, [0 if spec.group == "oneadmin" else 1]
            )
        for i, host_spec in enumerate(fleet.hosts):
            host = make_host(host_spec, i)
            host.state = host.prev_state = st.HOST_STATES[host_spec.state]
            host.last_monitored = self.now()
            self.hosts[host.id] = host
        for spec in fleet.vms:
            self.create_vm(spec)

    def create_vm(self, spec: VmSpec) -> Vm:
        """one.vm.allocate + the scheduler: a PENDING VM, deployed when the spec names a host."""
        vm_id = self._next_vm if spec.id is None else spec.id
        if vm_id in self.vms:
            raise AllocateError(f"VM id {vm_id} is already taken")
        owner = self.user_by_name(spec.owner) if spec.owner else self.users[0]
        if owner is None:
            raise AllocateError(f"no user named {spec.owner!r}")
        host = self.host(spec.host) if spec.host is not None else None
        vm = make_vm(spec, vm_id, self.now(), owner)
        self.vms[vm_id] = vm
        self._next_vm = max(self._next_vm, vm_id + 1)
        self._emit_vm(vm)
        if host is None:
            if spec.state == "done":
                self.terminate(vm_id)
            return vm
        self.deploy(vm_id, host.id)
        follow = {
            "poweroff": self.poweroff,
            "suspended": self.suspend,
            "undeployed": self.undeploy,
            "done": self.terminate,
        }.get(spec.state)
        if follow is not None:
            follow(vm_id)
        return vm

    # ------------------------------------------------------------------ lookups

    def vm(self, vm_id: int) -> Vm:
        try:
            return self.vms[vm_id]
        except KeyError:
            raise NoSuchObject("virtual machine", vm_id) from None

    def host(self, ref: int | str) -> Host:
        """A host by ID, or by NAME when `ref` is a string that is not a number."""
        if isinstance(ref, str) and not ref.lstrip("-").isdigit():
            for host in self.hosts.values():
                if host.name == ref:
                    return host
            raise NoSuchObject("host", ref)
        try:
            return self.hosts[int(ref)]
        except KeyError:
            raise NoSuchObject("host", ref) from None

    def user(self, user_id: int) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise NoSuchObject("user", user_id) from None

    def user_by_name(self, name: str) -> User | None:
        return next((u for u in self.users.values() if u.name == name), None)

    def hook(self, hook_id: int) -> Hook:
        try:
            return self.hooks[hook_id]
        except KeyError:
            raise NoSuchObject("hook", hook_id) from None

    def vm_xml(self, vm: Vm, form: str) -> str:
        return vm_xml(vm, form)

    def host_xml(self, host: Host, monitoring: bool = False) -> str:
        """The stored body (pools, hooks), or with `monitoring` what one.host.info shows."""
        return host_xml(host, self.vms, monitoring)

    def _actor(self, by: User | None) -> User:
        """Who asked: the XML-RPC caller, or oneadmin for the control API and fleet files."""
        return by if by is not None else self.users[0]

    # ------------------------------------------------------------------ VM state machine

    def _set_state(self, vm: Vm, state: int, lcm_state: int, load_monitoring: bool = False) -> None:
        """One write of the VM (VirtualMachinePool::update): hooks see it, pools then show it.

        The body is written with the monitoring the VM object holds: its last record where
        oned calls set_vm_info() before the write (`load_monitoring`), none anywhere else,
        as the object was just read from the DB, whose bodies keep no MONITORING.
        """
        if (vm.state, vm.lcm_state) == (state, lcm_state):
            return
        vm.prev_state, vm.prev_lcm_state = vm.state, vm.lcm_state
        vm.state, vm.lcm_state = state, lcm_state
        vm.body_monitoring = vm.monitoring if load_monitoring else None
        self.changes += 1
        vm.invalidate()
        if vm.history:
            self._touch_host(vm.host_id)
        self._emit_vm(vm)
        if vm.running:
            # the monitor reports a running VM; only one.vm.info loads the new record
            vm.monitoring = self._probe(vm)
            vm.invalidate()

    def _probe(self, vm: Vm) -> Monitoring:
        """What the KVM probes report for a running VM (sorted, as oned's Template keeps it)."""
        now = self.now()
        values = {
            "CPU": f"{vm.cpu_fraction * 100:.2f}",
            "DISKRDBYTES": str(vm.id * 4096 + 1_048_576),
            "DISKRDIOPS": str(vm.id + 100),
            "DISKWRBYTES": str(vm.id * 2048 + 524_288),
            "DISKWRIOPS": str(vm.id + 50),
            "ID": str(vm.id),
            "MEMORY": str(int(vm.memory_mib() * 1024 * 0.8)),
            "NETRX": str(vm.id * 1000 + 10_000),
            "NETTX": str(vm.id * 700 + 7_000),
            "TIMESTAMP": str(now),
        }
        return Monitoring(now, tuple(sorted(values.items())))

    def _walk(self, vm: Vm, *steps: tuple[str, str]) -> None:
        for state, lcm in steps:
            self._set_state(vm, st.VM_STATES[state], st.LCM_STATES[lcm])

    def _walk_loaded(self, vm: Vm, state: str, lcm: str) -> None:
        """A write after set_vm_info(): the body carries the VM's last monitoring record."""
        self._set_state(vm, st.VM_STATES[state], st.LCM_STATES[lcm], load_monitoring=True)

    def _touch_host(self, host_id: int) -> None:
        host = self.hosts.get(host_id)
        if host is not None:
            host.invalidate()

    def _emit_vm(self, vm: Vm) -> None:
        state, lcm = st.vm_state_name(vm.state), st.lcm_state_name(vm.lcm_state)
        hooks = self.matching_hooks("VM", state, lcm)
        if hooks and self._listeners:
            # HookStateVM::format_message uses to_xml_extended(xml): every history record, so
            # a hook fired on RUNNING after a migration sees the source host too
            event = StateEvent("VM", vm.id, state, lcm, vm_xml(vm, "hook"), vm.hostname)
            for listener in self._listeners:
                listener(event, hooks)

    def _refuse(self, vm: Vm, action: str) -> ActionRefused:
        """DispatchManager's refusal, wrapped by VirtualMachineAction::request_execute."""
        return ActionRefused(
            f'Error performing action "{action}": '
            f"This action is not available for state {self.state_str(vm)}"
        )

    @staticmethod
    def state_str(vm: Vm) -> str:
        """VirtualMachine::state_str: the LCM state of an ACTIVE VM, else the VM state."""
        if vm.state == st.ACTIVE:
            return st.lcm_state_name(vm.lcm_state)
        return st.vm_state_name(vm.state)

    def _open_history(self, vm: Vm, host: Host) -> History:
        """VirtualMachine::add_history (or cp_history): a record with no ACTION, UID/GID -1."""
        now = self.now()
        record = History(
            seq=len(vm.history),
            hostname=host.name,
            hid=host.id,
            stime=now,
            pstime=now,
            petime=now,
            rstime=now,
        )
        vm.history.append(record)
        if vm.id not in host.vms:
            # oned keeps a host's VMS as a std::set: sorted, no duplicates
            bisect.insort(host.vms, vm.id)
        host.invalidate()
        return record

    @staticmethod
    def _set_action(record: History, action: str, by: User) -> None:
        """VirtualMachine::set_action: the record names the action and who asked for it."""
        record.action = st.HISTORY_ACTIONS[action]
        record.uid, record.gid = by.id, by.gid

    @staticmethod
    def _clear_action(vm: Vm) -> None:
        """VirtualMachine::clear_action, on deploy success: no action, UID/GID -1 again."""
        if vm.history:
            record = vm.history[-1]
            record.action, record.uid, record.gid = 0, -1, -1

    def _end_stay(self, vm: Vm, record: History) -> None:
        """The record's stay on its host ends (ETIME) and the host lets the VM go."""
        now = self.now()
        if not record.etime:
            record.etime, record.retime = now, record.retime or now
            record.estime = record.eetime = now
        host = self.hosts.get(record.hid)
        if host is not None and vm.id in host.vms:
            host.vms.remove(vm.id)
            host.invalidate()

    def usable_host(self, ref: int | str) -> Host:
        """RequestManagerVirtualMachine::get_host_information: the host exists, is not OFFLINE.

        ERROR hosts are refused as well: the simulator places no VM on a failed host.
        """
        host = self.host(ref)
        if host.state == st.HOST_STATES["OFFLINE"]:
            raise ActionRefused("Host is offline, cannot use it to deploy VM")
        if host.state == st.HOST_STATES["ERROR"]:
            raise ActionRefused(
                f"Host {host.name} [{host.id}] is ERROR; the simulator places no VM on it"
            )
        return host

    def deploy(self, vm_id: int, host_ref: int | str) -> Vm:
        """PENDING/HOLD/STOPPED/UNDEPLOYED -> ACTIVE -> PROLOG -> BOOT -> RUNNING on the host.

        VirtualMachineDeploy checks the host before the VM; DispatchManager::deploy writes the
        VM ACTIVE first, LifeCycleManager::trigger_deploy picks PROLOG_UNDEPLOY/PROLOG_RESUME
        after an undeploy/stop, with the VM's monitoring loaded (set_vm_info).
        """
        host = self.usable_host(host_ref)
        vm = self.vm(vm_id)
        if vm.state not in (st.PENDING, st.HOLD, st.STOPPED, st.UNDEPLOYED):
            raise ActionRefused(f"Deploy action is not available for state {self.state_str(vm)}")
        previous = vm.history[-1].action if vm.history else 0
        prolog, boot = _DEPLOY_STATES.get(previous, ("PROLOG", "BOOT"))
        self._open_history(vm, host)
        self._walk(vm, ("ACTIVE", "LCM_INIT"))
        self._walk_loaded(vm, "ACTIVE", prolog)
        self._walk(vm, ("ACTIVE", boot))
        vm.deploy_id = f"one-{vm.id}"
        self._clear_action(vm)
        self._walk(vm, ("ACTIVE", "RUNNING"))
        return vm

    def migrate(
        self, vm_id: int, host_ref: int | str, live: bool = True, by: User | None = None
    ) -> Vm:
        """A RUNNING (live, or save/restore), POWEROFF or SUSPENDED (cold) VM moves hosts.

        VirtualMachineMigrate::request_execute: host, then VM, then its state; add_history
        opens the new record before the LCM moves the VM, and the old one ends on success.
        """
        actor = self._actor(by)
        host = self.usable_host(host_ref)
        vm = self.vm(vm_id)
        movable = vm.state in (st.POWEROFF, st.SUSPENDED) or (
            vm.state == st.ACTIVE and vm.lcm_state in (st.RUNNING, st.LCM_STATES["UNKNOWN"])
        )
        if not movable:
            raise ActionRefused(f"Migrate action is not available for state {self.state_str(vm)}")
        if host.id == vm.host_id:
            raise ActionRefused(f"VM is already running on host [{host.id}] and datastore [0]")
        if vm.lcm_state == st.LCM_STATES["UNKNOWN"]:
            raise ActionRefused("the simulator does not migrate VMs in UNKNOWN")
        old = vm.history[-1]
        new = self._open_history(vm, host)
        if vm.state in (st.POWEROFF, st.SUSPENDED):
            # trigger_migrate: PROLOG_MIGRATE_POWEROFF/SUSPEND, action MIGRATE on the new record
            resting = st.vm_state_name(vm.state)
            prolog = (
                "PROLOG_MIGRATE_POWEROFF" if vm.state == st.POWEROFF else ("PROLOG_MIGRATE_SUSPEND")
            )
            self._set_action(new, "migrate", actor)
            self._end_stay(vm, old)
            self._walk_loaded(vm, "ACTIVE", prolog)
            self._walk(vm, (resting, "LCM_INIT"))
            return vm
        if live:
            # trigger_live_migrate: set_previous_action(LIVE_MIGRATE_ACTION) on the old record
            self._set_action(old, "live-migrate", actor)
            self._walk_loaded(vm, "ACTIVE", "MIGRATE")
            self._end_stay(vm, old)
        else:
            # trigger_migrate from RUNNING: SAVE_MIGRATE with the action on both records
            self._set_action(new, "migrate", actor)
            self._set_action(old, "migrate", actor)
            self._walk_loaded(vm, "ACTIVE", "SAVE_MIGRATE")
            self._end_stay(vm, old)
            self._walk(vm, ("ACTIVE", "PROLOG_MIGRATE"), ("ACTIVE", "BOOT_MIGRATE"))
            self._clear_action(vm)
        self._walk(vm, ("ACTIVE", "RUNNING"))
        return vm

    def poweroff(self, vm_id: int, hard: bool = False, by: User | None = None) -> Vm:
        """RUNNING -> SHUTDOWN_POWEROFF -> POWEROFF; the VM keeps its place on the host."""
        vm = self.vm(vm_id)
        action = "poweroff-hard" if hard else "poweroff"
        if not (vm.state == st.ACTIVE and vm.lcm_state in (st.RUNNING, st.LCM_STATES["UNKNOWN"])):
            raise self._refuse(vm, action)
        record = vm.history[-1]
        self._set_action(record, action, self._actor(by))
        self._walk(vm, ("ACTIVE", "SHUTDOWN_POWEROFF"))
        # only the running period ends (set_running_etime); ETIME is set when the VM boots
        # again or leaves the host (LifeCycleManager::trigger_restart)
        record.retime = record.retime or self.now()
        self._walk(vm, ("POWEROFF", "LCM_INIT"))
        return vm

    def suspend(self, vm_id: int, by: User | None = None) -> Vm:
        """RUNNING -> SAVE_SUSPEND -> SUSPENDED; the VM keeps its place on the host."""
        vm = self.vm(vm_id)
        if not vm.running:
            raise self._refuse(vm, "suspend")
        record = vm.history[-1]
        self._set_action(record, "suspend", self._actor(by))
        self._walk(vm, ("ACTIVE", "SAVE_SUSPEND"))
        record.retime = record.retime or self.now()
        self._walk(vm, ("SUSPENDED", "LCM_INIT"))
        return vm

    def resume(self, vm_id: int, by: User | None = None) -> Vm:
        """POWEROFF/SUSPENDED boot again on their host; STOPPED/UNDEPLOYED go back to PENDING.

        LifeCycleManager::trigger_restart / trigger_restore: the old record ends, cp_history
        opens a new one with set_action(RESUME_ACTION), cleared once the VM runs.
        """
        vm = self.vm(vm_id)
        if vm.state in (st.POWEROFF, st.SUSPENDED):
            host = self.host(vm.host_id)
            boot = "BOOT_POWEROFF" if vm.state == st.POWEROFF else "BOOT_SUSPENDED"
            if not vm.history[-1].etime:
                vm.history[-1].etime = self.now()
            record = self._open_history(vm, host)
            self._set_action(record, "resume", self._actor(by))
            self._walk(vm, ("ACTIVE", boot))
            self._clear_action(vm)
            self._walk(vm, ("ACTIVE", "RUNNING"))
        elif vm.state in (st.UNDEPLOYED, st.STOPPED):
            self._walk(vm, ("PENDING", "LCM_INIT"))
        else:
            raise self._refuse(vm, "resume")
        return vm

    def undeploy(self, vm_id: int, hard: bool = False, by: User | None = None) -> Vm:
        """RUNNING/POWEROFF -> EPILOG_UNDEPLOY -> UNDEPLOYED; the host's capacity is freed."""
        vm = self.vm(vm_id)
        action = "undeploy-hard" if hard else "undeploy"
        if not (vm.running or vm.state == st.POWEROFF):
            raise self._refuse(vm, action)
        record = vm.history[-1]
        self._set_action(record, action, self._actor(by))
        if vm.running:
            self._walk(vm, ("ACTIVE", "SHUTDOWN_UNDEPLOY"))
        self._end_stay(vm, record)
        self._walk(vm, ("ACTIVE", "EPILOG_UNDEPLOY"), ("UNDEPLOYED", "LCM_INIT"))
        return vm

    def terminate(self, vm_id: int, hard: bool = False, by: User | None = None) -> Vm:
        """Any live VM -> (SHUTDOWN) -> EPILOG -> DONE; DONE VMs stay in the pool (state -2)."""
        vm = self.vm(vm_id)
        action = "terminate-hard" if hard else "terminate"
        if vm.state == st.DONE:
            raise self._refuse(vm, action)
        if vm.history and vm.host_id in self.hosts and vm.id in self.hosts[vm.host_id].vms:
            self._set_action(vm.history[-1], action, self._actor(by))
        if vm.running and not hard:
            self._walk(vm, ("ACTIVE", "SHUTDOWN"))
        if vm.state == st.ACTIVE or vm.state in (st.POWEROFF, st.SUSPENDED):
            self._walk(vm, ("ACTIVE", "EPILOG"))
        if vm.history:
            self._end_stay(vm, vm.history[-1])
        vm.etime = self.now()
        self._walk(vm, ("DONE", "LCM_INIT"))
        return vm

    def vm_action(self, action: str, vm_id: int, by: User | None = None) -> Vm:
        """one.vm.action's actions that the simulator models."""
        table: dict[str, Callable[[int], Vm]] = {
            "terminate": lambda i: self.terminate(i, by=by),
            "terminate-hard": lambda i: self.terminate(i, hard=True, by=by),
            "poweroff": lambda i: self.poweroff(i, by=by),
            "poweroff-hard": lambda i: self.poweroff(i, hard=True, by=by),
            "suspend": lambda i: self.suspend(i, by=by),
            "resume": lambda i: self.resume(i, by=by),
            "undeploy": lambda i: self.undeploy(i, by=by),
            "undeploy-hard": lambda i: self.undeploy(i, hard=True, by=by),
        }
        try:
            operation = table[action]
        except KeyError:
            self.vm(vm_id)
            raise ActionRefused(
                f'Error performing action "{action}": the simulator models '
                f"{', '.join(sorted(table))}"
            ) from None
        return operation(vm_id)

    # ------------------------------------------------------------------ hosts

    def set_host_state(self, host_ref: int | str, state: int) -> Host:
        """Move a host to a state (MONITORED, ERROR, DISABLED, OFFLINE...); hooks fire."""
        host = self.host(host_ref)
        if host.state == state:
            return host
        host.prev_state, host.state = host.state, state
        self.changes += 1
        host.last_monitored = self.now()
        host.invalidate()
        name = st.host_state_name(state)
        hooks = self.matching_hooks("HOST", name, "")
        if hooks and self._listeners:
            event = StateEvent("HOST", host.id, name, "", self.host_xml(host), host.name)
            for listener in self._listeners:
                listener(event, hooks)
        return host

    def update_host(self, host_id: int, text: str, merge: bool) -> Host:
        """one.host.update: mode 0 replaces the whole TEMPLATE, mode 1 merges into it."""
        host = self.host(host_id)
        try:
            new = parse_template(text)
        except TemplateError as exc:
            raise TemplateRejected(f"Cannot update template. Parse error: {exc}") from None
        if not new.renders_as_xml():
            # oned takes it, fails validate_xml when writing the host back to its DB, and
            # SharedAPI::update ignores that failure: success, and nothing changes
            return host
        if merge:
            host.template.merge(new)
        else:
            host.template = new
        # Host::post_update_template: the drivers are taken from the template when given and
        # always written back, so even a replace keeps IM_MAD and VM_MAD
        host.im_mad = host.template.get_str("IM_MAD") or host.im_mad
        host.vm_mad = host.template.get_str("VM_MAD") or host.vm_mad
        host.template.replace("IM_MAD", host.im_mad)
        host.template.replace("VM_MAD", host.vm_mad)
        host.invalidate()
        return host

    # ------------------------------------------------------------------ users

    def allocate_user(self, name: str, password: str, driver: str, groups: list[int]) -> User:
        """one.user.allocate: core passwords are stored as their sha256, others verbatim."""
        driver = driver or "core"
        if not name:
            raise AllocateError("Invalid NAME, it cannot be empty")
        if any(c in name for c in " :\t\n") or len(name) > 128:
            raise AllocateError("Invalid NAME, it cannot contain spaces or ':'")
        taken = self.user_by_name(name)
        if taken is not None:
            raise AllocateError(f"NAME is already taken by USER {taken.id}.")
        if driver == "core" and not password:
            raise AllocateError("Invalid password, it cannot be empty")
        for gid in groups:
            if gid not in (0, 1):
                raise AllocateError(f"Group {gid} does not exist")
        groups = groups or [1]
        stored = sha256_hex(password) if driver == "core" else password
        user = new_user(max(self.users) + 1, name, stored, driver, groups[0], groups)
        self.users[user.id] = user
        return user

    def authenticate(self, session: str) -> User | None:
        """`user:password` against core users; other drivers need a driver the sim lacks."""
        if not isinstance(session, str) or ":" not in session:
            return None
        name, _, secret = session.partition(":")
        user = self.user_by_name(name)
        if user is None or not user.enabled or user.auth_driver != "core":
            return None
        return user if sha256_hex(secret) == user.password else None

    # ------------------------------------------------------------------ hooks

    def allocate_hook(self, text: str) -> Hook:
        """one.hook.allocate of a state hook (RESOURCE VM or HOST), checked in oned's order.

        HookAllocate::pool_allocate (TYPE), HookPool::allocate (NAME valid and free), then
        Hook::insert (COMMAND, REMOTE, RESOURCE, the resource's parse_template, the XML).
        """
        try:
            tmpl = parse_template(text)
        except TemplateError as exc:
            raise AllocateError(f"Parse error: {exc}") from None
        hook_type = tmpl.get_str("TYPE").lower()
        if hook_type not in ("state", "api"):
            raise AllocateError(f"Invalid Hook type: {hook_type}")
        name = tmpl.get_str("NAME")
        if not name or len(name) > 128 or INVALID_NAME_CHARS.intersection(name):
            raise AllocateError("Invalid name.")
        taken = self.hook_by_name(name)
        if taken is not None:
            raise AllocateError(f"NAME is already taken by Hook {taken.id}.")
        tmpl.erase("NAME")
        command = tmpl.get_str("COMMAND")
        if not command:
            raise AllocateError("No COMMAND in template for Hook.")
        tmpl.replace("COMMAND", command)
        try:
            tmpl.replace("REMOTE", self._remote(tmpl))
            self._check_timeout(tmpl)
        except TemplateRejected as exc:
            raise AllocateError(exc.message) from None
        tmpl.erase("TYPE")
        if hook_type == "api":
            raise AllocateError("API hooks are not simulated; register a TYPE=state hook")
        resource = tmpl.get_str("RESOURCE").upper()
        if not resource:
            raise AllocateError("RESOURCE attribute is required for STATE hooks.")
        if resource == "VM":
            self._parse_vm_hook(tmpl)
        elif resource == "HOST":
            state = tmpl.get_str("STATE").upper()
            if state not in st.HOST_STATES:
                raise AllocateError(f"Invalid STATE: {state}")
            tmpl.replace("STATE", state)
        elif resource in ("IMAGE", "NET"):
            raise AllocateError(f"{resource} state hooks are not simulated (no {resource} pool)")
        else:
            raise AllocateError(f"Invalid resource type: {resource}")
        tmpl.replace("RESOURCE", resource)
        if not tmpl.renders_as_xml():  # Hook::insert_replace's validate_xml
            raise AllocateError("Error transforming the Hook to XML.")
        hook = Hook(self._next_hook, name, "state", tmpl)
        self._next_hook += 1
        self.hooks[hook.id] = hook
        return hook

    @staticmethod
    def _remote(tmpl: Template) -> str:
        """Hook::insert: REMOTE read as a bool (only YES is true) and written back YES/NO, so
        a hook given none shows REMOTE="NO" (Template::add(name, bool))."""
        if tmpl.get_str("REMOTE").upper() == "YES":
            raise TemplateRejected("REMOTE hooks (run over ssh on the host) are not simulated")
        return "NO"

    @staticmethod
    def _check_timeout(tmpl: Template) -> None:
        """The simulator's own check: onehem would read a non-number TIMEOUT as 0."""
        timeout = tmpl.get_str("TIMEOUT")
        if timeout and not timeout.strip().isdigit():
            raise TemplateRejected(f"TIMEOUT must be a number of seconds, got {timeout!r}")

    @staticmethod
    def _parse_vm_hook(tmpl: Template) -> None:
        """HookStateVM::parse_template: ON = PROLOG|RUNNING|...|CUSTOM (+ STATE, LCM_STATE)."""
        on = tmpl.get_str("ON").upper()
        tmpl.erase("ON")
        if on == "CUSTOM":
            state = tmpl.get_str("STATE").upper()
            lcm = tmpl.get_str("LCM_STATE").upper()
            if state not in st.VM_STATES:
                raise AllocateError(f"Wrong STATE: {state}")
            if lcm not in st.LCM_STATES:
                raise AllocateError(f"Wrong LCM_STATE: {lcm}")
        elif on in VM_HOOK_ON:
            state, lcm = VM_HOOK_ON[on]
        else:
            raise AllocateError(f"Unkown state condition: {on}")
        tmpl.replace("STATE", state)
        tmpl.replace("LCM_STATE", lcm)

    def hook_by_name(self, name: str) -> Hook | None:
        return next((h for h in self.hooks.values() if h.name == name), None)

    def update_hook(self, hook_id: int, text: str, merge: bool) -> Hook:
        """one.hook.update: mode 0 replaces the TEMPLATE, 1 merges into it; the result must
        pass Hook::post_update_template or the hook keeps its old template.

        PoolObjectSQL::replace_template / append_template, then Hook::post_update_template:
        COMMAND must be there, REMOTE is rewritten YES/NO when present, and the hook's kind
        (chosen by its RESOURCE when it was loaded) checks STATE, and LCM_STATE for VMs
        (HookStateVM/HookStateHost::post_update_template). ON is not read again.
        """
        hook = self.hook(hook_id)
        try:
            new = parse_template(text)
        except TemplateError as exc:
            raise TemplateRejected(f"Cannot update template. Parse error: {exc}") from None
        if merge:
            candidate = hook.template.copy()
            candidate.merge(new)
        else:
            candidate = new
        try:
            self._post_update_hook(hook.resource, candidate)
        except TemplateRejected as exc:
            raise TemplateRejected(f"Cannot update template. {exc.message}") from None
        if not candidate.renders_as_xml():
            # like host.update: the write-back fails validate_xml, the call still succeeds
            return hook
        hook.template = candidate
        return hook

    def _post_update_hook(self, resource: str, tmpl: Template) -> None:
        command = tmpl.get_str("COMMAND")
        if not command:
            raise TemplateRejected("The COMMAND attribute is not defined.")
        tmpl.replace("COMMAND", command)
        if tmpl.get("REMOTE") is not None:
            tmpl.replace("REMOTE", self._remote(tmpl))
        state = tmpl.get_str("STATE").upper()
        valid = st.VM_STATES if resource == "VM" else st.HOST_STATES
        if state not in valid:
            raise TemplateRejected("The STATE attribute is not defined or it's invalid.")
        tmpl.replace("STATE", state)
        if resource == "VM":
            lcm = tmpl.get_str("LCM_STATE").upper()
            if lcm not in st.LCM_STATES:
                raise TemplateRejected("The LCM_STATE attribute is not defined or it's invalid.")
            tmpl.replace("LCM_STATE", lcm)
        self._check_timeout(tmpl)

    def delete_hook(self, hook_id: int) -> None:
        """one.hook.delete: the hook and its log go (Hook::drop drops its HookLog rows)."""
        self.hook(hook_id)
        del self.hooks[hook_id]

    def matching_hooks(self, resource: str, state: str, lcm_state: str) -> list[Hook]:
        """Hooks whose RESOURCE/STATE[/LCM_STATE] key matches, as onehem keys them."""
        out = []
        for hook in self.hooks.values():
            if hook.resource != resource or hook.state != state:
                continue
            if resource == "VM" and hook.lcm_state != lcm_state:
                continue
            out.append(hook)
        return out

    def record_execution(self, hook: Hook, event: StateEvent, **result: object) -> ExecutionRecord:
        """Store an execution in the hook's log (last 20) and the simulator-wide list."""
        record = ExecutionRecord(
            hook_id=hook.id,
            execution_id=hook.next_execution_id,
            timestamp=self.now(),
            remote_host=event.remote_host,
            resource=event.resource,
            resource_id=event.id,
            state=event.state,
            lcm_state=event.lcm_state,
            **result,  # type: ignore[arg-type]
        )
        hook.next_execution_id += 1
        hook.log.append(record)
        self.executions.append(record)
        return record
