"""Wiring: build the cloud from the config, serve XML-RPC and the control API, stop cleanly.

The XML-RPC app (`--listen`, POST /RPC2) and the control app (`--control-listen`) are two
aiohttp applications on two runners. SIGTERM/SIGINT stop accepting, let hooks finish (3 s),
stop every burner and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from services.common.errors import ConfigError

from .auth import Authenticator
from .cloud import Cloud, CloudError
from .config import MAX_BURNERS, SimConfig
from .control import create_control_app
from .fleet import Fleet, FleetError, generate_fleet, load_fleet
from .hooks import HookRunner
from .hypervisors import Hypervisors, HypervisorUnavailable, PowerModel
from .oned import OnedApi

log = logging.getLogger(__name__)

# oned accepts large templates; 64 MiB keeps a bad client from exhausting memory
RPC_MAX_BODY = 64 * 1024 * 1024


def build_fleet(config: SimConfig) -> Fleet:
    """The fleet the flags ask for; FleetError explains a bad --fleet file."""
    if config.fleet is not None:
        return load_fleet(config.fleet, config.host_ip_base)
    return generate_fleet(
        config.hosts,
        config.vms_per_host,
        config.seed,
        config.host_ip_base,
        config.poweroff_fraction,
    )


def build_cloud(config: SimConfig) -> Cloud:
    """A cloud loaded with the fleet; ConfigError for anything the operator must fix."""
    cloud = Cloud(config.auth)
    try:
        cloud.load_fleet(build_fleet(config))
    except FleetError as exc:
        raise ConfigError(str(exc)) from None
    except CloudError as exc:  # valid entries oned would still refuse (taken name, ERROR host)
        raise ConfigError(f"fleet file {config.fleet}: {exc.message}") from None
    running = sum(1 for vm in cloud.vms.values() if vm.running)
    if config.hypervisors is not None and running > MAX_BURNERS:
        raise ConfigError(
            f"--hypervisors starts one process per RUNNING VM; {running} running VMs is more "
            f"than the {MAX_BURNERS} allowed (use fewer --hosts/--vms-per-host)"
        )
    return cloud


def warm(cloud: Cloud, api: OnedApi) -> None:
    """Render every VM and host once so the first pool call is as fast as the next ones."""
    for vm in cloud.vms.values():
        api.vm_fragment(vm, "extended")
        api.vm_fragment(vm, "short")
    for host in cloud.hosts.values():
        cloud.host_xml(host)


def create_rpc_app(api: OnedApi, after_change: Callable[[], Awaitable[None]]) -> web.Application:
    """POST /RPC2 like oned; anything else 404/405."""
    app = web.Application(client_max_size=RPC_MAX_BODY)

    async def rpc(request: web.Request) -> web.Response:
        before = api.cloud.changes
        body = await request.read()
        reply = await api.handle(body)
        if api.cloud.changes != before:
            await after_change()
        return web.Response(body=reply, content_type="text/xml", charset="utf-8")

    app.router.add_post("/RPC2", rpc)
    return app


class StartError(RuntimeError):
    """The simulator cannot start (a busy port, an unwritable directory): exit 1."""


class Simulator:
    """The running simulator: cloud, hook runner, hypervisors and the two HTTP runners."""

    def __init__(self, config: SimConfig, cloud: Cloud) -> None:
        self.config = config
        self.cloud = cloud
        authenticator = Authenticator(cloud, config.auth_driver_dir, config.session_expiration)
        self.api = OnedApi(cloud, config.one_version, authenticator)
        self.hooks: HookRunner | None = None
        self.hypervisors: Hypervisors | None = None
        self._runners: list[web.AppRunner] = []

    async def after_change(self) -> None:
        if self.hypervisors is not None:
            await self.hypervisors.reconcile()

    async def start(self) -> None:
        config = self.config
        self.hooks = HookRunner(self.cloud, config.hook_dir, config.hook_timeout)
        if config.hypervisors is not None:
            model = PowerModel(config.idle_w, config.w_per_cpu, config.max_energy_range_uj)
            self.hypervisors = Hypervisors(Path(config.hypervisors), self.cloud, model)
            try:
                await asyncio.to_thread(self.hypervisors.start)
            except HypervisorUnavailable as exc:
                raise ConfigError(f"--hypervisors: {exc}") from None
            except (OSError, RuntimeError, ValueError) as exc:
                raise StartError(
                    f"cannot start the hypervisors under {config.hypervisors}: {exc}"
                ) from None
            await self.hypervisors.reconcile()
        await asyncio.to_thread(warm, self.cloud, self.api)
        rpc_app = create_rpc_app(self.api, self.after_change)
        control_app = create_control_app(
            self.cloud, self.api, self.hooks, self.hypervisors, self.after_change
        )
        for app, listen in ((rpc_app, config.listen), (control_app, config.control_listen)):
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, listen.host, listen.port)
            try:
                await site.start()
            except OSError as exc:
                raise StartError(f"cannot listen on {listen}: {exc.strerror or exc}") from None

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.hooks is not None:
            await self.hooks.close()
        if self.hypervisors is not None:
            await asyncio.to_thread(self.hypervisors.stop)
            self.hypervisors = None


async def run(config: SimConfig, cloud: Cloud) -> None:
    """Serve until SIGTERM or SIGINT."""
    sim = Simulator(config, cloud)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
        running = sum(1 for vm in cloud.vms.values() if vm.running)
        log.info(
            "oned simulator: XML-RPC on http://%s/RPC2, control API on http://%s; "
            "%d hosts, %d VMs (%d running)%s",
            config.listen,
            config.control_listen,
            len(cloud.hosts),
            len(cloud.vms),
            running,
            f", hypervisors under {config.hypervisors}" if config.hypervisors else "",
        )
        await stop.wait()
        log.info("stopping the simulator")
    finally:
        await sim.stop()
