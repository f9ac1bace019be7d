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
from types import MappingProxyType

import aiohttp

from services.common.errors import OneError
from services.common.health import Health
from services.common.logs import clip
from services.common.oned import Host, Oned, Pool, Vm

from .agent_client import AgentError, Turns, fetch_host
from .carbon import (
    WORLD,
    Grid,
    Intensity,
    OperatorFigures,
    accrue_hosts,
    accrue_vms,
    host_intensity,
)
from .carbon_sources import OperatorFile
from .config import MAX_AGENT_REPLY, ExporterConfig
from .energy import EnergyTotal, advance, advance_hosts
from .exposition import render
from .join import Target, agent_targets, attribute
from .readings import HostReading
from .snapshot import Snapshot, State, Status, build_snapshot, count

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
        grid: Grid,
        operator: OperatorFile,
    ) -> None:
        self._config = config
        self._oned = oned
        self._agents = agents
        self._box = box
        self._health = health
        self._ledger: Mapping[int, EnergyTotal] = {}
        self._host_ledger: Mapping[int, EnergyTotal] = {}
        self._vm_carbon: Mapping[int, float] = {}
        self._host_carbon: Mapping[int, float] = {}
        self._grid = grid
        self._operator = operator
        self._intensities: dict[int, Intensity] = {}
        self._carbon_problems: dict[int, tuple[str, ...]] = {}  # host id -> last logged
        self._host_down: dict[int, str] = {}  # host id -> last reason, for transition logs
        self._turns = Turns()  # the hosts' replies are parsed one chunk per loop turn
        # Energy is not integrated across gaps longer than this (power in between is unknown).
        self._max_gap = 3 * config.refresh_interval + config.agent_timeout
        health.fail("oned", "no refresh yet")

    async def step(self) -> None:
        """One cycle for `Periodic`: an unexpected failure is counted, then re-raised.

        `Periodic` logs it and shows it on `/healthz`; the last complete refresh stays served,
        and the `error` count says it is stale.
        """
        try:
            await self.once()
        except Exception:
            state = self._box.state
            status = dataclasses.replace(
                state.status, refreshes=count(state.status.refreshes, "error")
            )
            self._box.state = State(state.snapshot, status, state.text)
            raise

    async def _read(self) -> tuple[Pool, Pool, dict[int, HostReading], dict[int, AgentError]]:
        """Both pools, and the agents of every host the host pool says has VMs, all at once.

        The host pool is small and comes first, so the agents are asked while the (large) VM
        pool is still streaming in. The first OneError is raised if either pool fails.
        """
        try:
            async with asyncio.TaskGroup() as group:
                vm_task = group.create_task(self._oned.vm_pool())
                host_pool = await self._oned.host_pool()
                early = tuple(Target(h.id, h.hostname) for h in host_pool.items if h.vms)
                agents = group.create_task(self._ask(early))
        except* OneError as failed:
            raise failed.exceptions[0] from None
        readings, failures = agents.result()
        return vm_task.result(), host_pool, readings, failures

    async def once(self) -> None:
        """One cycle; publishes a new State whatever happens."""
        started = time.monotonic()
        status = self._box.state.status
        figures = await self._operator.current()
        try:
            vm_pool, host_pool, readings, failures = await self._read()
        except OneError as exc:
            self._publish_failure(status, exc.message, time.monotonic() - started)
            return
        read = time.monotonic()
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
        # A running VM's host missing from the host pool's lists (read a moment apart).
        late = tuple(t for t in targets if t.host_id not in readings and t.host_id not in failures)
        if late:
            more, more_failures = await self._ask(late)
            readings.update(more)
            failures.update(more_failures)
        wanted = {t.host_id for t in targets}
        readings = {h: r for h, r in readings.items() if h in wanted}
        failures = {h: e for h, e in failures.items() if h in wanted}
        self._log_transitions(targets, failures)
        asked = time.monotonic()
        # The join, the ledgers and the text are pure work on this cycle's values (~0.5 s of
        # CPU at 10,000 VMs): in threads, so that scrapes are served meanwhile (the GIL
        # changes hands every 5 ms) instead of waiting for the whole of it.
        snapshot = await asyncio.to_thread(
            self._join, vms, hosts, targets, readings, figures, asked
        )
        joined = time.monotonic()
        text = await asyncio.to_thread(render, snapshot)
        done = time.monotonic()
        agent_errors = dict(status.agent_errors)
        for host_id, error in failures.items():
            key = (host_id, error.reason)
            agent_errors[key] = agent_errors.get(key, 0) + 1
        phases = {
            "read": read - started,
            "late_agents": asked - read,
            "join": joined - asked,
            "render": done - joined,
        }
        new_status = dataclasses.replace(
            status,
            oned_up=True,
            oned_error="",
            refresh_duration_s=done - started,
            phases=MappingProxyType(phases),
            last_success_at=snapshot.taken_at,
            refreshes=count(status.refreshes, "ok"),
            agent_errors=MappingProxyType(agent_errors),
        )
        self._box.state = State(snapshot, new_status, text)
        self._health.ok("oned")
        self._health.ok("refresh")
        self._health.details.update(
            last_refresh=_when(snapshot.taken_at),
            refresh_duration_s=round(done - started, 3),
            refresh_phases_s={k: round(v, 3) for k, v in phases.items()},
            refreshes_ok=new_status.refreshes.get("ok", 0),
            vms=len(vms),
            hosts=len(hosts),
            power_sources_down=len(targets) - len(readings),
        )

    def _join(
        self,
        vms: tuple[Vm, ...],
        hosts: tuple[Host, ...],
        targets: tuple[Target, ...],
        readings: Mapping[int, HostReading],
        figures: OperatorFigures | None,
        now: float,
    ) -> Snapshot:
        """Power per VM, the energy and carbon ledgers advanced, and the snapshot to serve."""
        attributions = {vm.id: attribute(vm, readings) for vm in vms}
        intensities = self._intensities_of(hosts, targets, figures)
        before, host_before = self._ledger, self._host_ledger
        self._ledger = advance(before, vms, attributions, now, self._max_gap)
        self._host_ledger = advance_hosts(
            host_before, (h.id for h in hosts), readings, now, self._max_gap
        )
        self._vm_carbon = accrue_vms(
            self._vm_carbon, before, self._ledger, vms, attributions, intensities
        )
        self._host_carbon = accrue_hosts(
            self._host_carbon, host_before, self._host_ledger, intensities
        )
        return build_snapshot(
            time.time(),
            vms,
            hosts,
            targets,
            readings,
            attributions,
            self._ledger,
            host_energy=self._host_ledger,
            intensity={h.id: intensities[h.id] for h in hosts},
            vm_carbon_g=self._vm_carbon,
            host_carbon_g=self._host_carbon,
        )

    def _intensities_of(
        self, hosts: tuple[Host, ...], targets: tuple[Target, ...], figures: OperatorFigures | None
    ) -> dict[int, Intensity]:
        """Each host's intensity now; a host that runs VMs but is missing from the host pool
        (read a moment apart) keeps its last one, else the world average."""
        out: dict[int, Intensity] = {}
        for host in hosts:
            out[host.id], problems = host_intensity(host, figures, self._grid)
            if problems != self._carbon_problems.get(host.id, ()):
                for problem in problems:
                    log.warning("host %d (%s): %s", host.id, clip(host.name), problem)
                self._carbon_problems[host.id] = problems
        for target in targets:
            if target.host_id not in out:
                out[target.host_id] = self._intensities.get(
                    target.host_id, Intensity(self._grid.world, WORLD, "", self._grid.world_year)
                )
        self._intensities = out
        return out

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
    ) -> tuple[dict[int, HostReading], dict[int, AgentError]]:
        """Every target, at most `--agent-concurrency` at once, each within `--agent-timeout`."""
        limit = asyncio.Semaphore(self._config.agent_concurrency)
        readings: dict[int, HostReading] = {}
        failures: dict[int, AgentError] = {}

        async def ask(target: Target) -> None:
            async with limit:
                try:
                    readings[target.host_id] = await fetch_host(
                        self._agents,
                        target,
                        self._config.agent_port,
                        timeout=self._config.agent_timeout,
                        limit=MAX_AGENT_REPLY,
                        turns=self._turns,
                    )
                except AgentError as exc:
                    failures[target.host_id] = exc

        await asyncio.gather(*(ask(t) for t in targets))
        return readings, failures

    def _log_transitions(
        self, targets: tuple[Target, ...], failures: dict[int, AgentError]
    ) -> None:
        """One line when a host's power source goes down, one when it answers again."""
        for target in targets:
            error = failures.get(target.host_id)
            if error is None:
                if self._host_down.pop(target.host_id, None) is not None:
                    log.info(
                        "host %d (%s): power source answers again", target.host_id, target.address
                    )
            else:
                if target.host_id not in self._host_down:
                    log.warning(
                        "host %d (%s): power source down, its VMs have no power sample: %s",
                        target.host_id,
                        target.address,
                        error.message,
                    )
                self._host_down[target.host_id] = error.message
