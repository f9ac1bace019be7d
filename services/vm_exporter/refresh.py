"""One refresh cycle: two oned calls, the hosts that run VMs, the join, a new snapshot.

A cycle either completes and swaps in a new snapshot, or fails on oned and changes only the
status: scrapes keep getting the last complete data. The cycle never waits longer than the
oned deadline plus one agent deadline per `--agent-concurrency` hosts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping

import aiohttp

from services.common.errors import OneError
from services.common.health import Health

from .agent_client import AgentError, fetch_host
from .config import MAX_AGENT_REPLY, ExporterConfig
from .energy import VmEnergy, advance
from .exposition import render
from .join import Target, agent_targets, attribute
from .oned import Oned
from .pool import Pool
from .readings import HostReading
from .snapshot import State, Status, build_snapshot, count

log = logging.getLogger(__name__)


class StateBox:
    """The one mutable reference: the refresher replaces `state`, scrapes read it once."""

    def __init__(self) -> None:
        self.state = State()


def _when(unix: float | None) -> str:
    if unix is None:
        return "never"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


class Refresher:
    """Runs refresh cycles and publishes each outcome into a StateBox."""

    def __init__(
        self,
        config: ExporterConfig,
        oned: Oned,
        agents: aiohttp.ClientSession,
        box: StateBox,
        health: Health,
    ) -> None:
        self._config = config
        self._oned = oned
        self._agents = agents
        self._box = box
        self._health = health
        self._ledger: Mapping[int, VmEnergy] = {}
        self._host_down: dict[int, str] = {}  # host id -> last reason, for transition logs
        # Energy is not integrated across gaps longer than this (power in between is unknown).
        self._max_gap = 3 * config.refresh_interval + config.agent_timeout
        health.fail("oned", "no refresh yet")

    async def run(self) -> None:
        """Refresh every `--refresh-interval` seconds until cancelled."""
        while True:
            started = time.monotonic()
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug must not stop the exporter: log it, keep the last data, try again.
                log.exception("refresh failed unexpectedly; serving the last complete refresh")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self._config.refresh_interval - elapsed))

    async def _pools(self) -> tuple[Pool, Pool]:
        """Both pools, read at the same time; the first OneError if either fails."""
        try:
            async with asyncio.TaskGroup() as group:
                vms = group.create_task(self._oned.vm_pool())
                hosts = group.create_task(self._oned.host_pool())
        except* OneError as failed:
            raise failed.exceptions[0] from None
        return vms.result(), hosts.result()

    async def once(self) -> None:
        """One cycle; publishes a new State whatever happens."""
        started = time.monotonic()
        status = self._box.state.status
        try:
            vm_pool, host_pool = await self._pools()
        except OneError as exc:
            self._publish_failure(status, exc.message, time.monotonic() - started)
            return
        vms, hosts = vm_pool.items, host_pool.items
        if not status.oned_up:
            log.info("oned answered at %s: %d VMs, %d hosts", self._oned.url, len(vms), len(hosts))
        if vm_pool.skipped or host_pool.skipped:
            log.warning(
                "oned reply had %d VM(s) and %d host(s) without an integer ID; left out",
                vm_pool.skipped,
                host_pool.skipped,
            )
        targets = agent_targets(vms, {h.id: h for h in hosts})
        readings, errors = await self._ask(targets)
        attributions = {vm.id: attribute(vm, readings) for vm in vms}
        self._ledger = advance(self._ledger, vms, attributions, time.monotonic(), self._max_gap)
        snapshot = build_snapshot(
            time.time(), vms, hosts, targets, readings, attributions, self._ledger
        )
        # Rendering 100k+ lines takes ~0.1 s: off the loop, so scrapes interleave.
        text = await asyncio.to_thread(render, snapshot)
        agent_errors = dict(status.agent_errors)
        for key in errors:
            agent_errors[key] = agent_errors.get(key, 0) + 1
        new_status = dataclasses.replace(
            status,
            oned_up=True,
            oned_error="",
            refresh_duration_s=time.monotonic() - started,
            last_success_at=snapshot.taken_at,
            refreshes=count(status.refreshes, "ok"),
            agent_errors=agent_errors,
        )
        self._box.state = State(snapshot, new_status, text)
        self._health.ok("oned")
        self._health.details.update(
            last_refresh=_when(snapshot.taken_at),
            vms=len(vms),
            hosts=len(hosts),
            power_sources_down=len(targets) - len(readings),
        )

    def _publish_failure(self, status: Status, message: str, duration: float) -> None:
        state = self._box.state
        log.warning(
            "oned unreachable (%s); serving the refresh of %s",
            message,
            _when(status.last_success_at),
        )
        new_status = dataclasses.replace(
            status,
            oned_up=False,
            oned_error=message,
            refresh_duration_s=duration,
            refreshes=count(status.refreshes, "oned_error"),
        )
        self._box.state = State(state.snapshot, new_status, state.text)
        self._health.fail("oned", message)

    async def _ask(
        self, targets: tuple[Target, ...]
    ) -> tuple[dict[int, HostReading], list[tuple[int, str]]]:
        """Every target, at most `--agent-concurrency` at once, each within `--agent-timeout`."""
        limit = asyncio.Semaphore(self._config.agent_concurrency)
        readings: dict[int, HostReading] = {}
        errors: list[tuple[int, str]] = []

        async def ask(target: Target) -> None:
            async with limit:
                try:
                    reading = await fetch_host(
                        self._agents,
                        target,
                        self._config.agent_port,
                        timeout=self._config.agent_timeout,
                        limit=MAX_AGENT_REPLY,
                    )
                except AgentError as exc:
                    errors.append((target.host_id, exc.reason))
                    self._host_failed(target, exc.message)
                    return
            readings[target.host_id] = reading
            if self._host_down.pop(target.host_id, None) is not None:
                log.info("host %d (%s): power source answers again", target.host_id, target.address)

        await asyncio.gather(*(ask(t) for t in targets))
        return readings, errors

    def _host_failed(self, target: Target, message: str) -> None:
        if target.host_id not in self._host_down:
            log.warning(
                "host %d (%s): power source down, its VMs have no power sample: %s",
                target.host_id,
                target.address,
                message,
            )
        self._host_down[target.host_id] = message
