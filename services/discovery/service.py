"""The discovery loop: oned's truth in, targets out (reconcile, events, writes, reloads).

Two inputs change the inventory: the reconcile (both pools, every `--reconcile-interval`) and
hook events (one object, re-read from oned now). One writer turns inventory versions into files:
`<job>.json` (file_sd), prometheus.yml (once in file_sd/http_sd mode, at every change in static
mode), then a reload when prometheus.yml changed. Nothing is written before the first reconcile
has succeeded: an empty inventory must never replace the targets Prometheus already has.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from services.common.errors import OneError, Unavailable
from services.common.health import Health
from services.common.logs import clip
from services.common.oned import NO_EXISTS, Oned

from .config import DiscoveryConfig
from .configfile import ConfigProblem, PrometheusConfig
from .files import locked, write_atomic
from .inventory import Inventory, Problems, entries_from, render_sd
from .promconfig import JobSd
from .reload import ReloadError
from .targets import Group, host_entry, host_ports, vm_group

log = logging.getLogger("services.discovery")

Key = tuple[str, int]  # ("vm" | "host", id)
Reload = Callable[[], Awaitable[None]]

# At most this many event reads of oned at once: a burst of hooks (a flow of 500 VMs
# deployed together) must not open 500 connections to oned.
EVENT_CONCURRENCY = 16
# Events before the first reconcile are looked at again after it; past this many the
# reconcile alone covers them (it reads everything anyway).
MAX_EARLY = 10_000


@dataclasses.dataclass
class Stats:
    """Counters and last values the metrics collector reads."""

    reconciles: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    events: collections.Counter[tuple[str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    config_checks: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    config_writes: collections.Counter[tuple[str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    reloads: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    invalid_values: int = 0
    oned_up: bool = False
    reconcile_duration_s: float | None = None
    last_reconcile_success: float | None = None
    last_write_success: float | None = None
    last_reload_success: float | None = None


@dataclasses.dataclass
class _Slot:
    """The event reads of one object: at most one running and one waiting (later events
    share the waiting one, which starts after they arrived)."""

    pending: asyncio.Future[str] | None = None


class Discovery:
    """Keeps the inventory, applies reconciles and events, and writes what changed."""

    def __init__(
        self,
        config: DiscoveryConfig,
        oned: Oned,
        health: Health,
        reload: Reload | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.oned = oned
        self.health = health
        self._reload = reload
        self._clock = clock
        self.stats = Stats()
        # Every result starts at 0, so rate() and increase() see the first failure.
        for result in ("ok", "oned_error"):
            self.stats.reconciles[result] += 0
        for result in ("ok", "failed"):
            self.stats.config_checks[result] += 0
            self.stats.reloads[result] += 0
            self.stats.config_writes[("prometheus_config", result)] += 0
            if config.mode == "file_sd":
                self.stats.config_writes[("file_sd", result)] += 0
        self.inventory = Inventory()
        self.jobs = tuple(config.jobs)
        self.ports = host_ports(
            config.agent_port, config.node_exporter_port, config.libvirt_exporter_port
        )
        self.synced = False  # a reconcile has succeeded: the inventory is oned's whole truth
        self.prometheus_config = PrometheusConfig(
            config.prometheus_config, config.promtool if config.config_check else None
        )
        self._slots: dict[Key, _Slot] = {}
        self._reads = asyncio.Semaphore(EVENT_CONCURRENCY)
        self._touched: set[Key] | None = None  # events applied while a reconcile reads
        self._early: set[Key] = set()  # events that came before the first reconcile
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reported: dict[Key, tuple[str, ...]] = {}
        self._oned_error: str | None = None
        # Writer state: one writer at a time; what is on disk; what is left to do.
        self._write_lock = asyncio.Lock()
        self._written_version = -1
        self._sd_on_disk: dict[str, bytes] | None = None
        self._sd_error: str | None = None
        self._config_version = -1  # inventory version prometheus.yml was last made from
        self._config_error: str | None = None
        self._reload_pending = False
        self._docs: dict[str, tuple[int, bytes]] = {}
        self._lines: dict[Group, str] = {}
        health.fail("oned", "no reconcile with oned yet")

    # -- what is served -----------------------------------------------------------------------

    def groups(self, job: str) -> list[Group]:
        """The target groups of an owned job, from the current inventory."""
        return self.inventory.groups(job, self.ports, self.config.vm_exporter)

    def document(self, job: str) -> bytes:
        """The file_sd / http_sd JSON of a job (rendered once per inventory version)."""
        version = self.inventory.version
        cached = self._docs.get(job)
        if cached is None or cached[0] != version:
            groups = self.groups(job)
            if len(self._lines) > 2 * (len(self.inventory.vms) + len(self.inventory.hosts)) + 64:
                self._lines.clear()  # groups of objects long gone
            cached = (version, render_sd(groups, self._lines))
            self._docs[job] = cached
        return cached[1]

    def target_counts(self) -> dict[str, int]:
        return {
            job: self.inventory.count(job, self.ports, self.config.vm_exporter) for job in self.jobs
        }

    # -- reconcile ----------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Read both pools and make the inventory (and the files) say exactly that."""
        started = time.monotonic()
        self._touched = set()
        try:
            try:
                async with asyncio.TaskGroup() as group:
                    vm_task = group.create_task(self.oned.vm_pool())
                    host_task = group.create_task(self.oned.host_pool())
            except* OneError as failed:
                raise failed.exceptions[0] from None
        except OneError as exc:
            self._touched = None
            self.stats.reconciles["oned_error"] += 1
            self.stats.reconcile_duration_s = time.monotonic() - started
            if exc.message != self._oned_error:
                log.warning("reconcile: %s; the last targets stay in place", exc.message)
            self._oned_error = exc.message
            self.stats.oned_up = False
            self.health.fail("oned", exc.message)
            return
        touched, self._touched = self._touched, None
        vm_pool, host_pool = vm_task.result(), host_task.result()
        hosts, vms, problems = entries_from(vm_pool.items, host_pool.items)
        # An event applied while the pools were read may be newer than them: keep it, and
        # look once more at each object where the two disagree.
        disagree = {
            key
            for key in touched
            if self.inventory.get(*key) != (hosts if key[0] == "host" else vms).get(key[1])
        }
        changed = self.inventory.replace(hosts, vms, keep=touched)
        self._report_all(
            problems,
            {("vm", v.id) for v in vm_pool.items} | {("host", h.id) for h in host_pool.items},
        )
        if not self.stats.oned_up:
            log.info(
                "oned answered at %s: %d VMs, %d hosts; targets: %s",
                self.oned.url,
                len(vm_pool.items),
                len(host_pool.items),
                ", ".join(f"{job} {n}" for job, n in self.target_counts().items()),
            )
        self.stats.oned_up = True
        self._oned_error = None
        self.health.ok("oned")
        first = not self.synced
        self.synced = True
        again = disagree | (self._early if first else set())
        self._early = set()
        for key in again:
            self._spawn(self._recheck(key))
        if changed:
            log.debug("reconcile changed the targets (version %d)", self.inventory.version)
        await self.flush(full=True)
        self.stats.reconciles["ok"] += 1
        self.stats.reconcile_duration_s = time.monotonic() - started
        self.stats.last_reconcile_success = self._clock()

    # -- events -------------------------------------------------------------------------------

    async def event(self, kind: str, oid: int) -> dict[str, Any]:
        """Look at one object now and apply what oned says; the reply for the hook."""
        if not self.synced:
            if len(self._early) < MAX_EARLY:
                self._early.add((kind, oid))
            self.stats.events[(kind, "queued")] += 1
            return {
                "kind": kind,
                "id": oid,
                "result": "queued",
                "detail": "no reconcile with oned has succeeded yet; "
                "the next one covers this object",
            }
        try:
            result = await self._check((kind, oid))
        except OneError as exc:
            self.stats.events[(kind, "oned_error")] += 1
            raise Unavailable(f"cannot read {kind} {oid} from oned: {exc.message}") from None
        self.stats.events[(kind, result)] += 1
        await self.flush(full=False)
        entry = self.inventory.get(kind, oid)
        body: dict[str, Any] = {"kind": kind, "id": oid, "result": result}
        if kind == "vm":
            body["targets"] = list(entry.targets) if isinstance(entry, Group) else []
        else:
            body["targets"] = (
                [entry.group(self.ports[j]).targets[0] for j in self.jobs if j in self.ports]
                if entry is not None
                else []
            )
        # The change reached Prometheus' input unless its file could not be written: the
        # sd file (file_sd), or prometheus.yml itself (static).
        error = self._config_error if self.config.mode == "static" else self._sd_error
        if error:
            raise Unavailable(
                f"{kind} {oid} {result}, but the targets could not be written: {error}"
            )
        return body

    async def _check(self, key: Key) -> str:
        """Read one object from oned and apply it, never two reads of one object at once."""
        slot = self._slots.get(key)
        if slot is not None and slot.pending is not None:
            return await asyncio.shield(slot.pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        if slot is None:
            slot = self._slots[key] = _Slot(pending=future)
            self._spawn(self._drive(key, slot))
        else:
            slot.pending = future  # read after the one running now
        return await asyncio.shield(future)

    async def _drive(self, key: Key, slot: _Slot) -> None:
        try:
            while slot.pending is not None:
                future, slot.pending = slot.pending, None
                try:
                    result = await self._apply(key)
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
        finally:
            del self._slots[key]

    async def _apply(self, key: Key) -> str:
        kind, oid = key
        async with self._reads:
            try:
                obj = await (self.oned.vm(oid) if kind == "vm" else self.oned.host(oid))
            except OneError as exc:
                if exc.code != NO_EXISTS:
                    raise
                obj = None
        if obj is None:
            entry, problems = None, ()
        elif kind == "vm":
            entry, problems = vm_group(obj)
        else:
            entry, problems = host_entry(obj)
        if self._touched is not None:
            self._touched.add(key)
        before = self.inventory.get(kind, oid)
        self.inventory.put(kind, oid, entry)
        self._report(key, problems)
        if obj is None:
            self._reported.pop(key, None)
            return "gone" if before is None else "removed"
        if before == entry:
            return "unchanged"
        return "added" if before is None else ("removed" if entry is None else "updated")

    async def _recheck(self, key: Key) -> None:
        try:
            await self._check(key)
        except OneError as exc:
            log.warning("could not look at %s %d again: %s", key[0], key[1], exc.message)
            return
        await self.flush(full=False)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel event reads and re-checks still running."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- problems with templates --------------------------------------------------------------

    def _report(self, key: Key, problems: tuple[str, ...]) -> None:
        """Log an object's template problems once (again only when they change)."""
        if not problems:
            self._reported.pop(key, None)
            return
        if self._reported.get(key) == problems:
            return
        self._reported[key] = problems
        self.stats.invalid_values += len(problems)
        kind, oid = key
        log.warning("%s %d: %s; skipped", kind, oid, clip("; ".join(problems), 600))

    def _report_all(self, problems: Problems, present: set[Key]) -> None:
        for key in [k for k in self._reported if k not in present or k not in problems]:
            del self._reported[key]
        for key, issues in problems.items():
            self._report(key, issues)

    # -- writing ------------------------------------------------------------------------------

    def _job_sd(self, job: str) -> JobSd:
        mode = self.config.mode
        if mode == "file_sd":
            path = self.config.sd_dir.absolute() / f"{job}.json"
            return JobSd("file_sd_configs", [{"files": [str(path)]}])
        if mode == "http_sd":
            return JobSd(
                "http_sd_configs",
                [
                    {
                        "url": f"{self.config.sd_base_url}/v1/sd/{job}",
                        "refresh_interval": f"{self.config.http_sd_refresh:g}s",
                    }
                ],
            )
        return JobSd("static_configs", [g.as_json() for g in self.groups(job)])

    async def flush(self, *, full: bool) -> None:
        """Write what the current inventory changed; `full` also checks prometheus.yml."""
        if not self.synced:
            return
        async with self._write_lock:
            version = self.inventory.version
            if not full and version == self._written_version:
                return
            if self.config.mode == "file_sd":
                docs = {job: self.document(job) for job in self.jobs}
                await asyncio.to_thread(self._write_sd_files, docs)
            static_changed = self.config.mode == "static" and version != self._config_version
            if full or static_changed or (self._config_error and self.config.mode == "static"):
                jobs = {job: self._job_sd(job) for job in self.jobs}
                await self._write_config(jobs, version)
            if self._reload_pending:
                await self._do_reload()
            self._written_version = version
            if not self._sd_error and not self._config_error:
                self.stats.last_write_success = self._clock()

    def _write_sd_files(self, docs: Mapping[str, bytes]) -> None:
        """Blocking: write each changed `<job>.json` atomically, under the sd-dir lock."""
        sd_dir = self.config.sd_dir
        try:
            sd_dir.mkdir(parents=True, exist_ok=True)
            if self._sd_on_disk is None:
                self._sd_on_disk = {job: _read_or_none(sd_dir / f"{job}.json") for job in docs}
            changed = {job: doc for job, doc in docs.items() if self._sd_on_disk.get(job) != doc}
            if changed:
                with locked(sd_dir / ".one-discovery.lock"):
                    for job, doc in changed.items():
                        write_atomic(sd_dir / f"{job}.json", doc)
                        self._sd_on_disk[job] = doc
                        self.stats.config_writes[("file_sd", "ok")] += 1
        except OSError as exc:
            reason = f"cannot write {sd_dir}: {exc.strerror or exc}"
            self.stats.config_writes[("file_sd", "failed")] += 1
            if reason != self._sd_error:
                log.error("%s; Prometheus keeps the targets it has", reason)
            self._sd_error = reason
            self.health.fail("sd_dir", reason)
            return
        if self._sd_error:
            log.info("%s is writable again", sd_dir)
        self._sd_error = None
        self.health.ok("sd_dir")

    async def _write_config(self, jobs: Mapping[str, JobSd], version: int) -> None:
        path = self.config.prometheus_config
        try:
            outcome = await asyncio.to_thread(self.prometheus_config.apply, jobs)
        except ConfigProblem as exc:
            if exc.kind == "rejected":
                self.stats.config_checks["failed"] += 1
            self.stats.config_writes[("prometheus_config", "failed")] += 1
            if exc.message != self._config_error:
                log.error("%s", exc.message)
            self._config_error = exc.message
            self.health.fail("prometheus_config", exc.message)
            return
        if outcome.changed:
            if outcome.checked:
                self.stats.config_checks["ok"] += 1
            self.stats.config_writes[("prometheus_config", "ok")] += 1
            log.info("wrote %s (jobs %s; backup %s)", path, ", ".join(jobs), outcome.backup)
            self._reload_pending = True
        if self._config_error:
            log.info("%s is in order again", path)
        self._config_error = None
        self._config_version = version
        self.health.ok("prometheus_config")

    async def _do_reload(self) -> None:
        if self._reload is None:
            self._reload_pending = False
            return
        try:
            await self._reload()
        except ReloadError as exc:
            self.stats.reloads["failed"] += 1
            message = str(exc)
            if self.health.report().get("failing", {}).get("reload") != message:
                log.error(
                    "reload failed: %s; trying again at the next change or reconcile", message
                )
            self.health.fail("reload", f"{message} (prometheus.yml changed and is not live yet)")
            return
        self.stats.reloads["ok"] += 1
        self.stats.last_reload_success = self._clock()
        self._reload_pending = False
        self.health.ok("reload")
        log.info("Prometheus reloaded")


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared result's exception as seen (its waiters may all have gone)."""
    if not future.cancelled():
        future.exception()


def _read_or_none(path: Path) -> bytes | None:
    with contextlib.suppress(OSError):
        return path.read_bytes()
    return None
