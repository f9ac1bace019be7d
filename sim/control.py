"""The simulator's JSON control API: what an operator (or a test) does to the cloud.

Deploy, migrate, power off, suspend, resume, undeploy and terminate VMs, create VMs, change a
host's state, read or reset the per-method XML-RPC call counts, read hook executions and the
simulated hypervisors. Every change goes through the same state machine as XML-RPC, so hooks
fire and burners follow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.common.app import HEALTH, create_base_app, read_json
from services.common.errors import BadRequest, Conflict, NotFound

from . import states as st
from .cloud import ActionRefused, AllocateError, Cloud, CloudError, NoSuchObject
from .fleet import FleetError, vm_spec
from .hooks import HookRunner
from .hypervisors import Hypervisors
from .model import Host, Vm
from .oned import OnedApi

CLOUD = web.AppKey("cloud", Cloud)
API = web.AppKey("oned_api", OnedApi)
HOOKS = web.AppKey("hooks", HookRunner)

VM_ACTIONS = ("deploy", "migrate", "poweroff", "suspend", "resume", "undeploy", "terminate")


def vm_summary(vm: Vm) -> dict[str, Any]:
    """A VM as the control API shows it."""
    context = vm.template.get("CONTEXT")
    ip = context.get("ETH0_IP", "") if isinstance(context, dict) else ""
    return {
        "id": vm.id,
        "name": vm.name,
        "state": st.vm_state_name(vm.state),
        "state_id": vm.state,
        "lcm_state": st.lcm_state_name(vm.lcm_state),
        "lcm_state_id": vm.lcm_state,
        "host": vm.hostname or None,
        "host_id": vm.host_id,
        "deploy_id": vm.deploy_id,
        "cpu_fraction": vm.cpu_fraction,
        "ip": ip,
        "owner": vm.uname,
    }


def host_summary(host: Host) -> dict[str, Any]:
    return {
        "id": host.id,
        "name": host.name,
        "hostname": host.hostname,
        "state": st.host_state_name(host.state),
        "state_id": host.state,
        "vms": list(host.vms),
        "template": host.template.to_dict(),
    }


def _translate(exc: CloudError) -> Exception:
    if isinstance(exc, NoSuchObject):
        return NotFound(exc.message)
    if isinstance(exc, ActionRefused | AllocateError):
        return Conflict(exc.message)
    return BadRequest(exc.message)


def _int_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit():
        raise BadRequest(f"VM id must be a non-negative integer, got {text!r}")
    return int(text)


async def _optional_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def create_control_app(
    cloud: Cloud,
    api: OnedApi,
    hooks: HookRunner,
    hypervisors: Hypervisors | None,
    after_change: Callable[[], Awaitable[None]],
) -> web.Application:
    """The control app on `--control-listen`; `after_change` lets burners follow changes."""
    app = create_base_app("sim")
    app[CLOUD] = cloud
    app[API] = api
    app[HOOKS] = hooks
    app[HEALTH].details.update(
        {"hosts": len(cloud.hosts), "vms": len(cloud.vms), "hypervisors": hypervisors is not None}
    )

    async def list_vms(request: web.Request) -> web.Response:
        vms = sorted(cloud.vms.values(), key=lambda v: v.id)
        return web.json_response({"vms": [vm_summary(v) for v in vms]})

    async def get_vm(request: web.Request) -> web.Response:
        try:
            vm = cloud.vm(_int_id(request))
        except CloudError as exc:
            raise _translate(exc) from None
        body = vm_summary(vm)
        body["template"] = vm.template.to_dict()
        body["user_template"] = vm.user_template.to_dict()
        return web.json_response({"vm": body})

    async def create_vm(request: web.Request) -> web.Response:
        body = await _optional_json(request)
        try:
            spec = vm_spec(body, "body", {h.name for h in cloud.hosts.values()})
            vm = cloud.create_vm(spec)
        except FleetError as exc:
            raise BadRequest(str(exc)) from None
        except CloudError as exc:
            raise _translate(exc) from None
        await after_change()
        return web.json_response({"vm": vm_summary(vm)}, status=201)

    async def vm_action(request: web.Request) -> web.Response:
        vm_id = _int_id(request)
        action = request.match_info["action"]
        body = await _optional_json(request)
        hard = bool(body.get("hard", False))
        try:
            if action in ("deploy", "migrate"):
                host = body.get("host")
                if not isinstance(host, str | int) or isinstance(host, bool):
                    raise BadRequest(f'{action} needs {{"host": <host name or id>}}')
                if action == "deploy":
                    vm = cloud.deploy(vm_id, host)
                else:
                    vm = cloud.migrate(vm_id, host, live=bool(body.get("live", True)))
            elif action == "poweroff":
                vm = cloud.poweroff(vm_id, hard=hard)
            elif action == "suspend":
                vm = cloud.suspend(vm_id)
            elif action == "resume":
                vm = cloud.resume(vm_id)
            elif action == "undeploy":
                vm = cloud.undeploy(vm_id, hard=hard)
            elif action == "terminate":
                vm = cloud.terminate(vm_id, hard=hard)
            else:
                raise NotFound(f"unknown VM action {action!r}; one of {', '.join(VM_ACTIONS)}")
        except CloudError as exc:
            raise _translate(exc) from None
        await after_change()
        return web.json_response({"vm": vm_summary(vm)})

    async def list_hosts(request: web.Request) -> web.Response:
        hosts = sorted(cloud.hosts.values(), key=lambda h: h.id)
        return web.json_response({"hosts": [host_summary(h) for h in hosts]})

    async def get_host(request: web.Request) -> web.Response:
        try:
            host = cloud.host(request.match_info["id"])
        except CloudError as exc:
            raise _translate(exc) from None
        return web.json_response({"host": host_summary(host)})

    async def set_host_state(request: web.Request) -> web.Response:
        body = await _optional_json(request)
        if "state" not in body:
            raise BadRequest('expected {"state": "MONITORED|ERROR|DISABLED|OFFLINE|<number>"}')
        try:
            state = st.parse_host_state(body["state"])
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        try:
            host = cloud.set_host_state(request.match_info["id"], state)
        except CloudError as exc:
            raise _translate(exc) from None
        await after_change()
        return web.json_response({"host": host_summary(host)})

    async def get_calls(request: web.Request) -> web.Response:
        calls = dict(sorted(api.calls.items()))
        return web.json_response({"calls": calls, "total": sum(calls.values())})

    async def reset_calls(request: web.Request) -> web.Response:
        calls = dict(sorted(api.calls.items()))
        api.calls.clear()
        return web.json_response({"calls": calls, "total": sum(calls.values()), "reset": True})

    async def list_hooks(request: web.Request) -> web.Response:
        items = [
            {"id": h.id, "name": h.name, "type": h.type, "template": h.template.to_dict()}
            for h in sorted(cloud.hooks.values(), key=lambda h: h.id)
        ]
        return web.json_response({"hooks": items})

    async def executions(request: web.Request) -> web.Response:
        records = list(cloud.executions)
        hook_id = request.query.get("hook_id")
        if hook_id is not None:
            if not hook_id.lstrip("-").isdigit():
                raise BadRequest(f"hook_id must be an integer, got {hook_id!r}")
            records = [r for r in records if r.hook_id == int(hook_id)]
        return web.json_response(
            {"executions": [r.as_json() for r in records], "running": hooks.pending}
        )

    async def list_hypervisors(request: web.Request) -> web.Response:
        if hypervisors is None:
            return web.json_response({"enabled": False, "hypervisors": []})
        return web.json_response({"enabled": True, "hypervisors": hypervisors.describe()})

    app.router.add_get("/v1/vms", list_vms)
    app.router.add_post("/v1/vms", create_vm)
    app.router.add_get("/v1/vms/{id}", get_vm)
    app.router.add_post("/v1/vms/{id}/{action}", vm_action)
    app.router.add_get("/v1/hosts", list_hosts)
    app.router.add_get("/v1/hosts/{id}", get_host)
    app.router.add_post("/v1/hosts/{id}/state", set_host_state)
    app.router.add_get("/calls", get_calls)
    app.router.add_delete("/calls", reset_calls)
    app.router.add_get("/v1/hooks", list_hooks)
    app.router.add_get("/v1/hooks/executions", executions)
    app.router.add_get("/v1/hypervisors", list_hypervisors)
    return app
