"""create_app(config): routes, the sampling task and the /metrics product text."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from importlib import metadata

from aiohttp import web

from services.common.app import HEALTH, PRODUCT_METRICS, REGISTRY, create_base_app
from services.common.errors import Unavailable
from services.common.periodic import Periodic

from .collectors import AgentCollector
from .config import DISKS_BY_ID, RaplConfig
from .disks import DiskReader
from .exposition import render
from .power import without_power
from .resources import raise_fd_limit, return_large_buffers
from .sampler import Sampler, SampleResult
from .state import AgentState, Published
from .zones import describe

log = logging.getLogger(__name__)

SERVICE = "rapl_agent"
CONFIG = web.AppKey("rapl_config", RaplConfig)
STATE = web.AppKey("rapl_state", AgentState)
SAMPLER = web.AppKey("rapl_sampler", Sampler)
SAMPLING = web.AppKey("rapl_sampling", Periodic)
SAMPLE_CHECK = "sample"  # the /healthz check of a sample that raised (a bug, not bad input)


def _version() -> str:
    try:
        return metadata.version("one-cognit")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _sample_and_render(sampler: Sampler, version: str) -> tuple[SampleResult, bytes | None]:
    """Runs in a worker thread: the blocking reads and the rendering of the new snapshot."""
    result = sampler.sample()
    text = render(result.snapshot, version) if result.snapshot is not None else None
    return result, text


def _apply(app: web.Application, result: SampleResult, text: bytes | None) -> None:
    """Publish a sample's outcome: snapshot, health, and one log line per change."""
    state = app[STATE]
    health = app[HEALTH]
    state.last_duration_s = result.duration_s
    if result.discovered is not None and result.discovered.zones:
        log.info("%s", describe(result.discovered))
    if result.snapshot is not None and text is not None:
        state.published = Published(result.snapshot, text)
    if result.frozen:
        outcome = "no_power"
    elif result.merged:
        outcome = "merged"
    else:
        outcome = "ok" if result.snapshot else "kept_last"
    state.samples[outcome] += 1
    for note in result.notes:
        log.warning("%s", note)
    failing = health.failing
    for check, reason in result.failures.items():
        if failing.get(check) != reason:
            effect = "no power figures until it reads again" if result.frozen else "left out"
            log.warning("%s: %s (%s)", check, reason, effect)
        health.fail(check, reason)
    # Every check but the sampling task's own comes from the sample's reads.
    for check in failing.keys() - result.failures.keys() - {SAMPLE_CHECK}:
        log.info("%s: readable again", check)
        health.ok(check)
    state.sources = dict(result.sources)
    snap = state.published.snapshot if state.published else None
    health.details["last_sample"] = None if snap is None else round(snap.timestamp, 3)


def _sampling_task(app: web.Application, sampler: Sampler) -> Periodic:
    """Sample now, then every --interval on a fixed schedule (the app serves after the first)."""
    config = app[CONFIG]
    version = _version()

    async def sample() -> None:
        try:
            result, text = await asyncio.to_thread(_sample_and_render, sampler, version)
        except Exception:
            await _unpower(app, version)
            raise
        _apply(app, result, text)

    # A sample that raises (a bug, not bad input) shows on /healthz; sampling goes on. A tick
    # less than half an interval after a late sample is skipped: steady cadence.
    return Periodic(
        "sample",
        sample,
        config.interval,
        health=app[HEALTH],
        check=SAMPLE_CHECK,
        await_first=True,
        min_gap=config.interval / 2,
    )


async def _unpower(app: web.Application, version: str) -> None:
    """No fresh sample: the served power is no longer current, the energies stay."""
    state = app[STATE]
    if state.published is None or state.published.snapshot.interval_s is None:
        return
    snapshot = without_power(state.published.snapshot)
    state.published = Published(snapshot, await asyncio.to_thread(render, snapshot, version))


async def _sampling(app: web.Application) -> AsyncIterator[None]:
    """The sampling task for the app's lifetime; the held /proc files closed after it."""
    raise_fd_limit()
    return_large_buffers()
    async with app[SAMPLING]:
        yield
    await asyncio.to_thread(app[SAMPLER].close)


def _product_text(state: AgentState) -> bytes | None:
    """The scaph_* text pre-rendered with the last snapshot (None before the first one)."""
    return state.published.text if state.published is not None else None


async def _vms(request: web.Request) -> web.Response:
    """GET /api/v1/vms: per-VM power and energy from the last snapshot (SPEC section 5)."""
    published = request.app[STATE].published
    if published is None:
        reason = request.app[HEALTH].report().get("reason")
        raise Unavailable(f"no readable sample yet{': ' + reason if reason else ''}")
    snap = published.snapshot
    body = {
        "timestamp": round(snap.timestamp, 3),
        "host": {"power_uw": snap.host_power_uw, "energy_uj": snap.host_energy_uj},
        "vms": [
            {
                "name": vm.name,
                "one_vm_id": vm.one_vm_id,
                "pid": vm.pid,
                "helper_pids": list(vm.helper_pids),
                "power_uw": vm.power_uw,
                "energy_uj": vm.energy_uj,
            }
            for vm in snap.vms
        ],
    }
    return web.json_response(body)


def create_app(config: RaplConfig) -> web.Application:
    """The agent: base routes, /api/v1/vms, product /metrics and the sampling task."""
    app = create_base_app(SERVICE)
    app[CONFIG] = config
    state = app[STATE] = AgentState()
    sampler = app[SAMPLER] = Sampler(
        config.powercap_root,
        config.proc_root,
        config.max_cmdline,
        min_interval=config.interval / 2,
        disks=DiskReader(config.proc_root, config.sys_root, DISKS_BY_ID),
    )
    sampling = app[SAMPLING] = _sampling_task(app, sampler)
    app[PRODUCT_METRICS] = lambda: _product_text(state)
    app[REGISTRY].register(AgentCollector(state, sampling))
    app.router.add_get("/api/v1/vms", _vms)
    app.cleanup_ctx.append(_sampling)
    return app
