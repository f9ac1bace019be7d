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
import time
from collections.abc import Callable

from . import states as st
from .fleet import Fleet, VmSpec, make_host, make_vm
from .model import ExecutionRecord, History, Hook, Host, StateEvent, User, Vm
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


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
        self.users[0] = User(0, name, sha256_hex(password), gid=0, groups=[0])
        self.users[1] = User(1, "serveradmin", sha256_hex(password), "server_cipher", 0, [0])

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

    def host_xml(self, host: Host) -> str:
        return host_xml(host, self.vms)

    # ------------------------------------------------------------------ VM state machine

    def _set_state(self, vm: Vm, state: int, lcm_state: int) -> None:
        if (vm.state, vm.lcm_state) == (state, lcm_state):
            return
        vm.prev_state, vm.prev_lcm_state = vm.state, vm.lcm_state
        vm.state, vm.lcm_state = state, lcm_state
        self.changes += 1
        vm.last_poll = self.now()
        vm.invalidate()
        if vm.history:
            self._touch_host(vm.host_id)
        self._emit_vm(vm)

    def _walk(self, vm: Vm, *steps: tuple[str, str]) -> None:
        for state, lcm in steps:
            self._set_state(vm, st.VM_STATES[state], st.LCM_STATES[lcm])

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
            event = StateEvent("VM", vm.id, state, lcm, vm_xml(vm, "full"), vm.hostname)
            for listener in self._listeners:
                listener(event, hooks)

    def _refuse(self, vm: Vm, action: str) -> ActionRefused:
        shown = st.lcm_state_name(vm.lcm_state) if vm.state == st.ACTIVE else None
        shown = shown or st.vm_state_name(vm.state)
        return ActionRefused(
            f'Error performing action "{action}": This action is not available for state {shown}'
        )

    def _open_history(self, vm: Vm, host: Host, action: int = 0) -> None:
        now = self.now()
        vm.history.append(
            History(
                seq=len(vm.history),
                hostname=host.name,
                hid=host.id,
                stime=now,
                uid=vm.uid,
                gid=vm.gid,
                action=action,
                pstime=now,
                petime=now,
                rstime=now,
            )
        )
        if vm.id not in host.vms:
            # oned keeps a host's VMS as a std::set: sorted, no duplicates
            bisect.insort(host.vms, vm.id)
        host.invalidate()

    def _close_history(self, vm: Vm, action: str, leave_host: bool) -> None:
        if not vm.history:
            return
        now = self.now()
        last = vm.history[-1]
        if not leave_host:
            # poweroff / suspend: only the running period ends (set_running_etime); ETIME is
            # set when the VM boots again or leaves the host (LifeCycleManager::trigger_restart)
            last.retime = last.retime or now
        elif not last.etime:
            last.etime, last.retime = now, last.retime or now
            last.estime = last.eetime = now
        last.action = st.HISTORY_ACTIONS[action]
        if leave_host:
            host = self.hosts.get(last.hid)
            if host is not None and vm.id in host.vms:
                host.vms.remove(vm.id)
                host.invalidate()

    def _usable_host(self, ref: int | str) -> Host:
        host = self.host(ref)
        if host.state in (st.HOST_STATES["OFFLINE"], st.HOST_STATES["ERROR"]):
            raise ActionRefused(
                f"Host {host.name} [{host.id}] is {st.host_state_name(host.state)}; "
                "VMs cannot be placed on it"
            )
        return host

    def deploy(self, vm_id: int, host_ref: int | str) -> Vm:
        """PENDING/HOLD -> PROLOG -> BOOT -> RUNNING on the host; DEPLOY_ID one-<id>."""
        vm = self.vm(vm_id)
        if vm.state not in (st.PENDING, st.HOLD):
            raise self._refuse(vm, "deploy")
        host = self._usable_host(host_ref)
        self._open_history(vm, host, action=0)
        self._walk(vm, ("ACTIVE", "PROLOG"), ("ACTIVE", "BOOT"))
        vm.deploy_id = f"one-{vm.id}"
        self._walk(vm, ("ACTIVE", "RUNNING"))
        return vm

    def migrate(self, vm_id: int, host_ref: int | str, live: bool = True) -> Vm:
        """RUNNING (live or save/restore) or POWEROFF (cold) VM moves; a new HISTORY record."""
        vm = self.vm(vm_id)
        host = self._usable_host(host_ref)
        if not (vm.running or vm.state == st.POWEROFF):
            raise self._refuse(vm, "migrate")
        if host.id == vm.host_id:
            raise ActionRefused(f"VM is already running on host [{host.id}] and datastore [0]")
        if vm.state == st.POWEROFF:
            self._walk(vm, ("ACTIVE", "PROLOG_MIGRATE_POWEROFF"))
            self._close_history(vm, "migrate", leave_host=True)
            self._open_history(vm, host)
            self._walk(vm, ("POWEROFF", "LCM_INIT"))
            return vm
        if live:
            self._walk(vm, ("ACTIVE", "MIGRATE"))
            self._close_history(vm, "live-migrate", leave_host=True)
            self._open_history(vm, host)
        else:
            self._walk(vm, ("ACTIVE", "SAVE_MIGRATE"))
            self._close_history(vm, "migrate", leave_host=True)
            self._open_history(vm, host)
            self._walk(vm, ("ACTIVE", "PROLOG_MIGRATE"), ("ACTIVE", "BOOT"))
        self._walk(vm, ("ACTIVE", "RUNNING"))
        return vm

    def poweroff(self, vm_id: int, hard: bool = False) -> Vm:
        """RUNNING -> SHUTDOWN_POWEROFF -> POWEROFF; the VM keeps its place on the host."""
        vm = self.vm(vm_id)
        if not (vm.state == st.ACTIVE and vm.lcm_state in (st.RUNNING, st.LCM_STATES["UNKNOWN"])):
            raise self._refuse(vm, "poweroff-hard" if hard else "poweroff")
        self._walk(vm, ("ACTIVE", "SHUTDOWN_POWEROFF"))
        self._close_history(vm, "poweroff", leave_host=False)
        self._walk(vm, ("POWEROFF", "LCM_INIT"))
        return vm

    def suspend(self, vm_id: int) -> Vm:
        """RUNNING -> SAVE_SUSPEND -> SUSPENDED; the VM keeps its place on the host."""
        vm = self.vm(vm_id)
        if not vm.running:
            raise self._refuse(vm, "suspend")
        self._walk(vm, ("ACTIVE", "SAVE_SUSPEND"))
        self._close_history(vm, "suspend", leave_host=False)
        self._walk(vm, ("SUSPENDED", "LCM_INIT"))
        return vm

    def resume(self, vm_id: int) -> Vm:
        """POWEROFF/SUSPENDED boot again on their host; STOPPED/UNDEPLOYED go back to PENDING."""
        vm = self.vm(vm_id)
        if vm.state in (st.POWEROFF, st.SUSPENDED):
            host = self.host(vm.host_id)
            boot = "BOOT_POWEROFF" if vm.state == st.POWEROFF else "BOOT_SUSPENDED"
            if vm.history and not vm.history[-1].etime:
                vm.history[-1].etime = self.now()
            self._open_history(vm, host, action=0)
            self._walk(vm, ("ACTIVE", boot), ("ACTIVE", "RUNNING"))
        elif vm.state in (st.UNDEPLOYED, st.STOPPED):
            self._walk(vm, ("PENDING", "LCM_INIT"))
        else:
            raise self._refuse(vm, "resume")
        return vm

    def undeploy(self, vm_id: int, hard: bool = False) -> Vm:
        """RUNNING/POWEROFF -> EPILOG_UNDEPLOY -> UNDEPLOYED; the host's capacity is freed."""
        vm = self.vm(vm_id)
        if vm.running:
            self._walk(vm, ("ACTIVE", "SHUTDOWN_UNDEPLOY"))
        elif vm.state != st.POWEROFF:
            raise self._refuse(vm, "undeploy-hard" if hard else "undeploy")
        self._close_history(vm, "undeploy", leave_host=True)
        self._walk(vm, ("ACTIVE", "EPILOG_UNDEPLOY"), ("UNDEPLOYED", "LCM_INIT"))
        return vm

    def terminate(self, vm_id: int, hard: bool = False) -> Vm:
        """Any live VM -> (SHUTDOWN) -> EPILOG -> DONE; DONE VMs stay in the pool (state -2)."""
        vm = self.vm(vm_id)
        action = "terminate-hard" if hard else "terminate"
        if vm.state == st.DONE:
            raise self._refuse(vm, action)
        if vm.running and not hard:
            self._walk(vm, ("ACTIVE", "SHUTDOWN"))
        if vm.state == st.ACTIVE or vm.state in (st.POWEROFF, st.SUSPENDED):
            self._walk(vm, ("ACTIVE", "EPILOG"))
        self._close_history(vm, action, leave_host=True)
        vm.etime = self.now()
        self._walk(vm, ("DONE", "LCM_INIT"))
        return vm

    def vm_action(self, action: str, vm_id: int) -> Vm:
        """one.vm.action's actions that the simulator models."""
        table: dict[str, Callable[[int], Vm]] = {
            "terminate": self.terminate,
            "terminate-hard": lambda i: self.terminate(i, hard=True),
            "poweroff": self.poweroff,
            "poweroff-hard": lambda i: self.poweroff(i, hard=True),
            "suspend": self.suspend,
            "resume": self.resume,
            "undeploy": self.undeploy,
            "undeploy-hard": lambda i: self.undeploy(i, hard=True),
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
        user = User(max(self.users) + 1, name, stored, driver, groups[0], list(groups))
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
        """one.hook.allocate of a state hook (RESOURCE VM or HOST), validated as oned does."""
        try:
            tmpl = parse_template(text)
        except TemplateError as exc:
            raise AllocateError(f"Parse error: {exc}") from None
        name = tmpl.get_str("NAME")
        tmpl.erase("NAME")
        if not name:
            raise AllocateError("No NAME in template for Hook.")
        command = tmpl.get_str("COMMAND")
        if not command:
            raise AllocateError("No COMMAND in template for Hook.")
        hook_type = tmpl.get_str("TYPE").lower()
        tmpl.erase("TYPE")
        if hook_type not in ("state", "api"):
            raise AllocateError("No TYPE or invalid one in template for Hook.")
        if hook_type == "api":
            raise AllocateError("API hooks are not simulated; register a TYPE=state hook")
        remote = tmpl.get_str("REMOTE", "NO").upper() in ("YES", "TRUE")
        if remote:
            raise AllocateError("REMOTE hooks (run over ssh on the host) are not simulated")
        tmpl.replace("REMOTE", "NO")
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
        timeout = tmpl.get_str("TIMEOUT")
        if timeout and not timeout.strip().isdigit():
            raise AllocateError(f"TIMEOUT must be a number of seconds, got {timeout!r}")
        hook = Hook(self._next_hook, name, "state", tmpl)
        self._next_hook += 1
        self.hooks[hook.id] = hook
        return hook

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

    def delete_hook(self, hook_id: int) -> None:
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
