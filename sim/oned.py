"""oned's XML-RPC API over the simulated cloud: methods, argument checks, replies, errors.

Replies have oned's shapes: `[true, body, 0]` on success and `[false, message, code, resp_id,
replication_idx]` on failure (the index an xmlrpc-c i8, -1), with `[method] ...` messages and
the error codes of include/Request.h. Arguments are checked the way xmlrpc-c's paramList does
(a wrong type or a missing argument is an XML-RPC fault -501). Pool replies are assembled
from per-object XML that is cached already escaped for XML-RPC, so a 10,000-VM infoextended
costs a join.
"""

from __future__ import annotations

import collections
import xmlrpc.client
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from xml.parsers.expat import ExpatError

from . import states as st
from .cloud import ActionRefused, AllocateError, Cloud, CloudError, NoSuchObject, TemplateRejected
from .model import Hook, User, Vm
from .render import hook_xml, hooklog_xml, user_pool_xml, user_xml
from .template import TemplateError, parse_template

# include/Request.h ErrorCode
SUCCESS = 0x0000
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
RPC_API = 0x1000
INTERNAL = 0x2000
ALLOCATE = 0x4000

# xmlrpc-c fault codes
FAULT_TYPE = -501
FAULT_PARSE = -503
FAULT_NO_SUCH_METHOD = -506


class Fault(Exception):
    """An XML-RPC fault, as xmlrpc-c raises for bad parameters or unknown methods."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class OneFailure(Exception):
    """A `[false, message, code, resp_id]` reply; `[method] ` is prefixed when sent."""

    def __init__(self, code: int, message: str, resp_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resp_id = resp_id


@dataclass(frozen=True)
class Escaped:
    """A body already escaped for an XML-RPC <string> and encoded (from cached pieces)."""

    parts: list[bytes]

    @classmethod
    def of(cls, xml: str) -> Escaped:
        return cls([rpc_escape(xml).encode()])


class Params:
    """xmlrpc-c's paramList accessors: index 0 is the session, as in oned's handlers."""

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def _get(self, index: int, kind: type, label: str) -> Any:
        if index >= len(self.values):
            raise Fault(FAULT_TYPE, "Not enough parameters")
        value = self.values[index]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise Fault(FAULT_TYPE, f"Parameter that is supposed to be {label} is not")
        return value

    def int(self, index: int) -> int:
        return self._get(index, int, "integer")

    def str(self, index: int) -> str:
        return self._get(index, str, "a string")

    def bool(self, index: int) -> bool:
        return self._get(index, bool, "boolean")

    def array(self, index: int) -> list:
        return self._get(index, list, "an array")

    def opt_int(self, index: int, default: int) -> int:
        return self.int(index) if len(self.values) > index else default


def rpc_escape(text: str) -> str:
    """Escape a body for an XML-RPC <string> as xmlrpc-c does (&, < and > as entities)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SUCCESS_HEAD = (
    b"<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"
    b"<value><array><data>\n<value><boolean>1</boolean></value>\n<value><string>"
)
_SUCCESS_TAIL = (
    b"</string></value>\n<value><int>0</int></value>\n"
    b"</data></array></value>\n</param>\n</params>\n</methodResponse>\n"
)


def _success(parts: list[bytes]) -> bytes:
    """`[true, body, 0]` from pre-escaped pieces, joined in one copy."""
    return b"".join([_SUCCESS_HEAD, *parts, _SUCCESS_TAIL])


_FAILURE_HEAD = (
    b"<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"
    b"<value><array><data>\n<value><boolean>0</boolean></value>\n<value><string>"
)
# src/rm/Request.cc Request::failure_response: the fifth element is
# xmlrpc_c::value_i8(att.replication_idx), an uint64_t left at UINT64_MAX outside a
# replicated write, so -1 on the wire as <i8> (a type the standard library cannot write)
_FAILURE_TAIL = (
    b"<value><i8>-1</i8></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n"
)


def failure_response(message: str, code: int, resp_id: int) -> bytes:
    """`[false, message, code, resp_id, -1]` exactly as xmlrpc-c sends oned's failures."""
    return b"".join(
        [
            _FAILURE_HEAD,
            rpc_escape(message).encode(),
            b"</string></value>\n",
            b"<value><int>%d</int></value>\n" % code,
            b"<value><int>%d</int></value>\n" % resp_id,
            _FAILURE_TAIL,
        ]
    )


def fault_response(code: int, message: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True).encode()


Handler = Callable[["OnedApi", Params, User], Any]
OwnerOf = Callable[[Any], tuple[int, int]]


Authenticate = Callable[[str], Awaitable[User | None]]


class OnedApi:
    """Dispatch XML-RPC request bodies to the simulated oned; counts every call by method."""

    def __init__(
        self, cloud: Cloud, version: str, authenticate: Authenticate | None = None
    ) -> None:
        self.cloud = cloud
        self.version = version
        self.calls: collections.Counter[str] = collections.Counter()
        self.authenticate = authenticate or self._core_only

    async def _core_only(self, session: str) -> User | None:
        return self.cloud.authenticate(session)

    async def handle(self, body: bytes) -> bytes:
        """One XML-RPC request body in, one response body out."""
        try:
            params, method = xmlrpc.client.loads(body)
        except (ExpatError, ValueError, TypeError, IndexError, xmlrpc.client.ResponseError) as exc:
            return fault_response(FAULT_PARSE, f"Could not parse the XML-RPC call: {exc}")
        if not method:
            return fault_response(FAULT_PARSE, "Could not parse the XML-RPC call: no methodName")
        self.calls[method] += 1
        handler = METHODS.get(method)
        if handler is None:
            return fault_response(FAULT_NO_SUCH_METHOD, f"Method '{method}' not defined")
        args = Params(params)
        try:
            user = await self.authenticate(args.str(0))
            if user is None:
                raise OneFailure(AUTHENTICATION, "User couldn't be authenticated, aborting call.")
            result = handler(self, args, user)
        except Fault as exc:
            return fault_response(exc.code, exc.message)
        except OneFailure as exc:
            return failure_response(f"[{method}] {exc.message}", exc.code, exc.resp_id)
        if isinstance(result, Escaped):
            return _success(result.parts)
        return xmlrpc.client.dumps(([True, result, SUCCESS],), methodresponse=True).encode()

    # ------------------------------------------------------------------ helpers

    def vm_fragment(self, vm: Vm, form: str) -> bytes:
        """The VM's XML escaped for XML-RPC and encoded, cached next to the XML itself."""
        key = f"rpc-{form}"
        cached = vm.rpc_cache.get(key)
        if cached is None:
            cached = rpc_escape(self.cloud.vm_xml(vm, form)).encode()
            vm.rpc_cache[key] = cached
        return cached


def _no_exists(exc: NoSuchObject) -> OneFailure:
    oid = exc.oid if isinstance(exc.oid, int) else -1
    return OneFailure(NO_EXISTS, exc.message, oid)


def _translate(exc: CloudError) -> OneFailure:
    if isinstance(exc, NoSuchObject):
        return _no_exists(exc)
    if isinstance(exc, ActionRefused):
        return OneFailure(ACTION, exc.message)
    if isinstance(exc, AllocateError):
        return OneFailure(ALLOCATE, exc.message)
    if isinstance(exc, TemplateRejected):
        return OneFailure(INTERNAL, exc.message)
    return OneFailure(INTERNAL, exc.message)


def _require_admin(user: User, action: str, obj: str) -> None:
    if not user.is_admin:
        raise OneFailure(
            AUTHORIZATION, f"User [{user.id}] : Not authorized to perform {action} {obj}."
        )


def _authorize_vm(user: User, vm: Vm, action: str) -> None:
    if not user.is_admin and vm.uid != user.id:
        raise OneFailure(
            AUTHORIZATION, f"User [{user.id}] : Not authorized to perform {action} VM [{vm.id}]."
        )


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------


def system_version(api: OnedApi, p: Params, user: User) -> str:
    return api.version


def _dump(
    objects: Iterable[Any], flag: int, start: int, end: int, user: User, owner: OwnerOf
) -> list[Any]:
    """RequestManagerPoolInfoFilter::dump: PoolSQL::usr_filter, oid_filter, then the page.

    Every simulated object is owner-only (umask 177), so the ACL part of usr_filter leaves a
    user outside the oneadmin group what she owns, whatever the flag (-2 all, -3 mine, -1
    mine and my groups, -4 my group, N user N); administrators get the flag's selection.
    """
    if flag < -4:
        raise OneFailure(RPC_API, "Incorrect filter_flag")

    def selected(obj: Any) -> bool:
        uid, gid = owner(obj)
        if flag == -3:
            wanted = uid == user.id
        elif flag == -4:
            wanted = gid == user.gid
        elif flag == -1:
            wanted = uid == user.id or gid in user.groups
        elif flag == -2:
            wanted = True
        else:
            wanted = uid == flag
        return wanted and (user.is_admin or uid == user.id)

    chosen = [obj for obj in sorted(objects, key=lambda o: o.id) if selected(obj)]
    if end < -1:  # a page: LIMIT start, -end over the selection, no id range
        offset = max(start, 0)
        return chosen[offset : offset - end]
    if start != -1:
        return [obj for obj in chosen if obj.id >= start and (end == -1 or obj.id <= end)]
    return chosen


def _filtered_vms(api: OnedApi, p: Params, user: User) -> list[Vm]:
    """VirtualMachinePoolInfo::request_execute: the state filter is checked first."""
    flag, start, end, state = p.int(1), p.int(2), p.int(3), p.int(4)
    if len(p) > 5:
        p.str(5)
    if state < -2 or state > st.VM_STATES["CLONING_FAILURE"]:
        raise OneFailure(RPC_API, "Incorrect filter_flag, state")
    vms = api.cloud.vms.values()
    if state == -1:
        vms = [vm for vm in vms if vm.state != st.DONE]
    elif state >= 0:
        vms = [vm for vm in vms if vm.state == state]
    return _dump(vms, flag, start, end, user, _vm_owner)


def _vm_owner(vm: Vm) -> tuple[int, int]:
    return vm.uid, vm.gid


def _hook_owner(hook: Hook) -> tuple[int, int]:
    """Hook::insert_replace stores every hook as owned by oneadmin (uid 0, group 0)."""
    return 0, 0


def vmpool_info(api: OnedApi, p: Params, user: User) -> Escaped:
    parts = [api.vm_fragment(vm, "short") for vm in _filtered_vms(api, p, user)]
    return Escaped([b"&lt;VM_POOL&gt;", *parts, b"&lt;/VM_POOL&gt;"])


def vmpool_infoextended(api: OnedApi, p: Params, user: User) -> Escaped:
    parts = [api.vm_fragment(vm, "extended") for vm in _filtered_vms(api, p, user)]
    return Escaped([b"&lt;VM_POOL&gt;", *parts, b"&lt;/VM_POOL&gt;"])


def vm_info(api: OnedApi, p: Params, user: User) -> Escaped:
    vm_id = p.int(1)
    if len(p) > 2:
        p.bool(2)
    try:
        vm = api.cloud.vm(vm_id)
    except NoSuchObject as exc:
        raise _no_exists(exc) from None
    _authorize_vm(user, vm, "USE")
    return Escaped([api.vm_fragment(vm, "full")])


def vm_action(api: OnedApi, p: Params, user: User) -> int:
    action, vm_id = p.str(1), p.int(2)
    try:
        _authorize_vm(user, api.cloud.vm(vm_id), "MANAGE")
        api.cloud.vm_action(action, vm_id, by=user)
    except CloudError as exc:
        raise _translate(exc) from None
    return vm_id


def _placement(api: OnedApi, user: User, vm_id: int, host_id: int) -> None:
    """VirtualMachineDeploy/Migrate: get_host_information (no host: NO_EXISTS, OFFLINE:
    ACTION), then the VM (NO_EXISTS), then the authorization."""
    try:
        api.cloud.usable_host(host_id)
        api.cloud.vm(vm_id)
    except CloudError as exc:
        raise _translate(exc) from None
    _require_admin(user, "ADMIN", f"HOST [{host_id}]")


def vm_deploy(api: OnedApi, p: Params, user: User) -> int:
    vm_id, host_id = p.int(1), p.int(2)
    _placement(api, user, vm_id, host_id)
    try:
        api.cloud.deploy(vm_id, host_id)
    except CloudError as exc:
        raise _translate(exc) from None
    return vm_id


def vm_migrate(api: OnedApi, p: Params, user: User) -> int:
    vm_id, host_id, live = p.int(1), p.int(2), p.bool(3)
    _placement(api, user, vm_id, host_id)
    try:
        api.cloud.migrate(vm_id, host_id, live=live, by=user)
    except CloudError as exc:
        raise _translate(exc) from None
    return vm_id


def hostpool_info(api: OnedApi, p: Params, user: User) -> Escaped:
    """HostPoolInfo: the stored bodies, whose MONITORING is empty."""
    hosts = sorted(api.cloud.hosts.values(), key=lambda h: h.id)
    body = "".join(api.cloud.host_xml(h) for h in hosts)
    return Escaped.of(f"<HOST_POOL>{body}</HOST_POOL>")


def host_info(api: OnedApi, p: Params, user: User) -> Escaped:
    """HostInfo: the host with its last monitoring record loaded."""
    host_id = p.int(1)
    if len(p) > 2:
        p.bool(2)
    try:
        host = api.cloud.host(host_id)
    except NoSuchObject as exc:
        raise _no_exists(exc) from None
    return Escaped.of(api.cloud.host_xml(host, monitoring=True))


def _exists_then_admin(exists: bool, user: User, action: str, kind: str, oid: int) -> None:
    """Request::basic_authorization: a missing object is NO_EXISTS before any AUTHORIZATION."""
    if oid >= 0 and not exists:
        raise OneFailure(NO_EXISTS, f"Error getting {kind} [{oid}].", oid)
    _require_admin(user, action, f"{kind.upper()} [{oid}]")


def host_update(api: OnedApi, p: Params, user: User) -> int:
    """RequestManagerUpdateTemplate::request_execute: existence, authorization, mode."""
    host_id, text = p.int(1), p.str(2)
    mode = p.opt_int(3, 0)
    _exists_then_admin(host_id in api.cloud.hosts, user, "MANAGE", "host", host_id)
    if mode not in (0, 1):
        raise OneFailure(RPC_API, "Wrong update type")
    if host_id not in api.cloud.hosts:
        raise OneFailure(NO_EXISTS, f"Error getting host [{host_id}].", host_id)
    try:
        api.cloud.update_host(host_id, text, merge=mode == 1)
    except CloudError as exc:
        raise _translate(exc) from None
    return host_id


def host_status(api: OnedApi, p: Params, user: User) -> int:
    """one.host.status: 0 enable (INIT, then MONITORED once monitored), 1 disable, 2 offline."""
    host_id, status = p.int(1), p.int(2)
    _require_admin(user, "ADMIN", f"HOST [{host_id}]")
    try:
        api.cloud.host(host_id)
        if status == 0:
            api.cloud.set_host_state(host_id, st.HOST_STATES["INIT"])
            api.cloud.set_host_state(host_id, st.MONITORED)
        elif status == 1:
            api.cloud.set_host_state(host_id, st.HOST_STATES["DISABLED"])
        elif status == 2:
            api.cloud.set_host_state(host_id, st.HOST_STATES["OFFLINE"])
        else:
            raise OneFailure(RPC_API, "Wrong status code")
    except CloudError as exc:
        raise _translate(exc) from None
    return host_id


def user_info(api: OnedApi, p: Params, user: User) -> Escaped:
    user_id = p.int(1)
    if len(p) > 2:
        p.bool(2)
    if user_id == -1:
        user_id = user.id
    if user_id != user.id:
        _exists_then_admin(user_id in api.cloud.users, user, "USE", "user", user_id)
    try:
        target = api.cloud.user(user_id)
    except NoSuchObject as exc:
        raise _no_exists(exc) from None
    return Escaped.of(user_xml(target))


def userpool_info(api: OnedApi, p: Params, user: User) -> Escaped:
    users = sorted(api.cloud.users.values(), key=lambda u: u.id)
    if not user.is_admin:
        users = [u for u in users if u.id == user.id]
    return Escaped.of(user_pool_xml(users))


def user_allocate(api: OnedApi, p: Params, user: User) -> int:
    groups: list[int] = []
    if len(p) > 4:
        for value in p.array(4):
            if not isinstance(value, int) or isinstance(value, bool):
                raise Fault(FAULT_TYPE, "Value of type int expected in the group array")
            groups.append(value)
    name, password, driver = p.str(1), p.str(2), p.str(3)
    _require_admin(user, "CREATE", "USER")
    try:
        return api.cloud.allocate_user(name, password, driver, groups).id
    except AllocateError as exc:
        raise OneFailure(ALLOCATE, f"Error allocating a new user. {exc.message}") from None


def hook_allocate(api: OnedApi, p: Params, user: User) -> int:
    """RequestManagerAllocate: the template is parsed before the authorization; every later
    refusal is HookAllocate::pool_allocate's INTERNAL with HookPool's or Hook's message."""
    text = p.str(1)
    try:
        parse_template(text)
    except TemplateError as exc:
        raise OneFailure(INTERNAL, f"Parse error: {exc}") from None
    _require_admin(user, "CREATE", "HOOK")
    try:
        return api.cloud.allocate_hook(text).id
    except AllocateError as exc:
        raise OneFailure(INTERNAL, exc.message) from None


def hook_info(api: OnedApi, p: Params, user: User) -> Escaped:
    hook_id = p.int(1)
    if len(p) > 2:
        p.bool(2)
    _exists_then_admin(hook_id in api.cloud.hooks, user, "USE", "hook", hook_id)
    try:
        hook = api.cloud.hook(hook_id)
    except NoSuchObject as exc:
        raise _no_exists(exc) from None
    return Escaped.of(hook_xml(hook, with_log=True))


def hook_update(api: OnedApi, p: Params, user: User) -> int:
    """one.hook.update(id, template, mode): RequestManagerUpdateTemplate, as for hosts."""
    hook_id, text = p.int(1), p.str(2)
    mode = p.opt_int(3, 0)
    _exists_then_admin(hook_id in api.cloud.hooks, user, "MANAGE", "hook", hook_id)
    if mode not in (0, 1):
        raise OneFailure(RPC_API, "Wrong update type")
    try:
        api.cloud.update_hook(hook_id, text, merge=mode == 1)
    except CloudError as exc:
        raise _translate(exc) from None
    return hook_id


def hook_delete(api: OnedApi, p: Params, user: User) -> int:
    """RequestManagerDelete::delete_object: delete_authorization finds the hook first."""
    hook_id = p.int(1)
    if len(p) > 2:
        p.bool(2)
    if hook_id not in api.cloud.hooks:
        raise OneFailure(NO_EXISTS, f"Error getting hook [{hook_id}].", hook_id)
    _require_admin(user, "MANAGE", f"HOOK [{hook_id}]")
    try:
        api.cloud.delete_hook(hook_id)
    except NoSuchObject as exc:
        raise _no_exists(exc) from None
    return hook_id


def hookpool_info(api: OnedApi, p: Params, user: User) -> Escaped:
    """HookPoolInfo: RequestManagerPoolInfoFilter::request_execute(filter, start, end)."""
    flag, start, end = p.int(1), p.int(2), p.int(3)
    hooks = _dump(api.cloud.hooks.values(), flag, start, end, user, _hook_owner)
    body = "".join(hook_xml(h, with_log=False) for h in hooks)
    return Escaped.of(f"<HOOK_POOL>{body}</HOOK_POOL>")


def hooklog_info(api: OnedApi, p: Params, user: User) -> Escaped:
    """one.hooklog.info(min_ts, max_ts, hook_id, rc): rc 1 success, -1 error, 0 all.

    HookLogInfo reads the hook_log table: the records each existing hook keeps (a deleted
    hook's go with it), hooks by descending id as HookLog::dump_log orders them.
    """
    min_ts, max_ts, hook_id, rc = p.int(1), p.int(2), p.int(3), p.int(4)
    _require_admin(user, "USE", "HOOK")
    hooks = sorted(api.cloud.hooks.values(), key=lambda h: h.id, reverse=True)
    records = [
        r
        for hook in hooks
        for r in hook.log
        if (hook_id < 0 or r.hook_id == hook_id)
        and (min_ts <= 0 or r.timestamp >= min_ts)
        and (max_ts <= 0 or r.timestamp <= max_ts)
        and (rc == 0 or (rc == 1) == (r.code == 0))
    ]
    return Escaped.of(hooklog_xml(records))


METHODS: dict[str, Handler] = {
    "one.system.version": system_version,
    "one.vmpool.info": vmpool_info,
    "one.vmpool.infoextended": vmpool_infoextended,
    "one.vm.info": vm_info,
    "one.vm.action": vm_action,
    "one.vm.deploy": vm_deploy,
    "one.vm.migrate": vm_migrate,
    "one.hostpool.info": hostpool_info,
    "one.host.info": host_info,
    "one.host.update": host_update,
    "one.host.status": host_status,
    "one.user.info": user_info,
    "one.userpool.info": userpool_info,
    "one.user.allocate": user_allocate,
    "one.hook.allocate": hook_allocate,
    "one.hook.info": hook_info,
    "one.hook.update": hook_update,
    "one.hook.delete": hook_delete,
    "one.hookpool.info": hookpool_info,
    "one.hooklog.info": hooklog_info,
}
