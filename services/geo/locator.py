"""Per host: find its public addresses, look them up, write GEOLOCATION when it differs.

Two ways in, one path: the reconcile reads the host pool every `--reconcile-interval` and
checks every host; a host hook event re-reads that one host from oned and checks it. Hosts
are checked concurrently, at most `--agent-concurrency` at once, and one at a time per host,
so an event and a reconcile never write the same host twice. Whatever one host's agent,
DNS or template holds costs that host only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import aiohttp

from services.common.errors import OneError, Unavailable
from services.common.health import Health
from services.common.logs import clip
from services.common.oned import NO_EXISTS, Host, Oned

from .addresses import (
    AGENT,
    DNS,
    PUBLIC_IP,
    Address,
    parse_public_ip,
    public_in_order,
)
from .agent_client import AgentError, fetch_addresses
from .config import GeoConfig
from .database import Database
from .dns import DnsError, Resolver, loop_resolver, resolve
from .locations import country_of, geolocation_value
from .ownership import changes, operator_reason
from .report import (
    ERROR,
    NO_MATCH,
    NO_PUBLIC_ADDRESS,
    OPERATOR,
    UNCHANGED,
    UPDATE_FAILED,
    WRITTEN,
    Found,
    Report,
)

log = logging.getLogger(__name__)

# Hook events waiting for their turn; more than this many distinct hosts at once is a flood.
MAX_PENDING_EVENTS = 4096


def _summary(addresses: list[Address]) -> str:
    """`3 addresses, 1 public` or `2 addresses, none public (10.0.0.1: Private-Use ...)`."""
    if not addresses:
        return "no address"
    public = sum(1 for a in addresses if a.public)
    noun = "address" if len(addresses) == 1 else "addresses"
    if public:
        return f"{len(addresses)} {noun}, {public} public"
    why = ", ".join(f"{a.address}: {a.why_not}" for a in addresses[:4])
    more = f", {len(addresses) - 4} more" if len(addresses) > 4 else ""
    return f"{len(addresses)} {noun}, none public ({why}{more})"


class Locator:
    """Checks hosts and keeps the last report of each."""

    def __init__(
        self,
        config: GeoConfig,
        database: Database,
        health: Health,
        *,
        resolver: Resolver = loop_resolver,
    ) -> None:
        self.config = config
        self.database = database
        self.health = health
        self._resolver = resolver
        self.oned: Oned | None = None
        self.agents: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(config.agent_concurrency)
        self._locks: dict[int, asyncio.Lock] = {}
        self._queued: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._logged: dict[int, tuple[str, str]] = {}
        self._troubles: dict[tuple[int, str], str] = {}
        self._oned_problem: str | None = None
        self.reports: dict[int, Report] = {}
        self.updates: Counter[str] = Counter({"written": 0, "failed": 0})
        self.source_errors: Counter[tuple[str, str]] = Counter()
        self.reconciles: Counter[str] = Counter({"ok": 0, "failed": 0})
        self.events: Counter[str] = Counter({"accepted": 0, "coalesced": 0, "refused": 0})
        self.last_reconcile_at: float | None = None
        self.last_reconcile_s = 0.0
        health.fail("oned", "not asked yet")

    def attach(self, oned: Oned, agents: aiohttp.ClientSession) -> None:
        """Give the locator its oned and agent sessions (made once the loop runs)."""
        self.oned, self.agents = oned, agents

    # Ways in -------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Check every host of the pool; forget hosts that left it."""
        assert self.oned is not None
        started, started_at = time.monotonic(), time.time()
        try:
            pool = await self.oned.host_pool()
        except OneError as exc:
            self._oned_failed(exc)
            self.reconciles["failed"] += 1
            return
        self._oned_answered()
        if pool.skipped:
            log.warning("host pool had %d host(s) without an integer ID; left out", pool.skipped)
        await asyncio.gather(*(self._check_slotted(host) for host in pool.items))
        present = {host.id for host in pool.items}
        for host_id in [i for i, r in self.reports.items() if i not in present]:
            if self.reports[host_id].checked_at < started_at:
                self._forget(host_id)
        self.reconciles["ok"] += 1
        self.last_reconcile_at = started_at
        self.last_reconcile_s = time.monotonic() - started
        self.health.details.update(
            hosts=len(pool.items),
            last_reconcile=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
            reconcile_duration_s=round(self.last_reconcile_s, 3),
        )

    def submit(self, host_id: int) -> bool:
        """Queue a hook event for `host_id`; False when that host is already queued."""
        if host_id in self._queued:
            self.events["coalesced"] += 1
            return False
        if len(self._tasks) >= MAX_PENDING_EVENTS:
            self.events["refused"] += 1
            raise Unavailable(f"{MAX_PENDING_EVENTS} host events are pending; try again later")
        self._queued.add(host_id)
        task = asyncio.create_task(self._event(host_id), name=f"geo-host-{host_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.events["accepted"] += 1
        return True

    async def close(self) -> None:
        """Cancel the events still pending and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _event(self, host_id: int) -> None:
        assert self.oned is not None
        async with self._slots:
            # From here a new event for this host queues again: it may say something newer.
            self._queued.discard(host_id)
            try:
                host = await self.oned.host(host_id)
            except OneError as exc:
                if exc.code == NO_EXISTS:
                    log.info("host event for host %d: oned has no such host", host_id)
                    return
                self._oned_failed(exc)
                log.warning("host event for host %d not applied (%s)", host_id, exc.message)
                return
            self._oned_answered()
            await self._check_locked(host)

    async def _check_slotted(self, host: Host) -> None:
        async with self._slots:
            await self._check_locked(host)

    async def _check_locked(self, host: Host) -> None:
        lock = self._locks.setdefault(host.id, asyncio.Lock())
        async with lock:
            try:
                report = await self.check(host)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("checking host %d (%s) failed", host.id, clip(host.name))
                report = self._report(host, ERROR, f"{type(exc).__name__}: {exc}"[:300])
            self.reports[host.id] = report
            self._log(report)

    # One host ------------------------------------------------------------------------------

    async def check(self, host: Host) -> Report:
        """Locate one host and write its GEOLOCATION if it is geo's to write and differs."""
        reason = operator_reason(host.template)
        if reason is not None:
            return self._report(host, OPERATOR, f"leaving its location alone: {reason}")
        found = await self.locate(host)
        if found.used is None:
            why = "; ".join(f"{source}: {note}" for source, note in found.sources.items())
            return self._report(host, NO_PUBLIC_ADDRESS, f"no public address ({why})", found)
        locations = found.locations
        if not locations:
            why = "; ".join(lookup.reason for lookup in found.lookups)
            return self._report(host, NO_MATCH, f"no address in the database ({why})", found)
        value, country = geolocation_value(locations), country_of(locations)
        if not changes(host.template, value, country):
            return self._report(host, UNCHANGED, "", found, value, country)
        return await self._write(host, found, value, country)

    async def _write(self, host: Host, found: Found, value: str, country: str) -> Report:
        assert self.oned is not None
        try:
            # Read again right before writing: an operator may have pinned it meanwhile.
            fresh = await self.oned.host(host.id)
            reason = operator_reason(fresh.template)
            if reason is not None:
                return self._report(fresh, OPERATOR, f"leaving its location alone: {reason}")
            attrs = changes(fresh.template, value, country)
            if not attrs:
                return self._report(fresh, UNCHANGED, "", found, value, country)
            await self.oned.host_update(host.id, attrs, merge=True)
        except OneError as exc:
            self.updates["failed"] += 1
            if exc.code is None:
                self._oned_failed(exc)
            return self._report(host, UPDATE_FAILED, exc.message, found, value, country)
        self.updates["written"] += 1
        written = ", ".join(f"{name} = {val!r}" for name, val in attrs.items())
        after = {**fresh.template, **attrs}
        return self._report(fresh, WRITTEN, written, found, value, country, after)

    async def locate(self, host: Host) -> Found:
        """The addresses of the first source with a public one, and their lookups."""
        seen: list[Address] = []
        notes: dict[str, str] = {}
        text = host.attr(PUBLIC_IP)
        if text is None or not text.strip():
            notes[PUBLIC_IP] = "not set"
        else:
            addresses, bad = parse_public_ip(text)
            seen += addresses
            notes[PUBLIC_IP] = _summary(addresses)
            if bad:
                shown = ", ".join(repr(b) for b in bad[:3])
                notes[PUBLIC_IP] += f"; not addresses: {shown}"
                self._trouble(host, PUBLIC_IP, f"holds what is not an address: {shown}")
            else:
                self._trouble(host, PUBLIC_IP, None)
            public = public_in_order(addresses, keep_order=True)
            if public:
                return self._found(seen, notes, PUBLIC_IP, public)
        assert self.agents is not None
        try:
            addresses = await fetch_addresses(
                self.agents,
                host.hostname,
                self.config.agent_port,
                timeout=self.config.agent_timeout,
            )
        except AgentError as exc:
            notes[AGENT] = exc.message
            self.source_errors[(AGENT, exc.reason)] += 1
            self._trouble(host, AGENT, exc.message)
        else:
            self._trouble(host, AGENT, None)
            seen += addresses
            notes[AGENT] = _summary(addresses)
            public = public_in_order(addresses, keep_order=False)
            if public:
                return self._found(seen, notes, AGENT, public)
        try:
            addresses = await resolve(
                host.hostname, timeout=self.config.dns_timeout, resolver=self._resolver
            )
        except DnsError as exc:
            notes[DNS] = str(exc)
            self.source_errors[(DNS, "no_answer")] += 1
            self._trouble(host, DNS, str(exc))
        else:
            self._trouble(host, DNS, None)
            seen += addresses
            notes[DNS] = _summary(addresses)
            public = public_in_order(addresses, keep_order=False)
            if public:
                return self._found(seen, notes, DNS, public)
        return Found(tuple(seen), notes)

    def _found(
        self, seen: list[Address], notes: dict[str, str], used: str, public: list[Address]
    ) -> Found:
        lookups = tuple(self.database.lookup(str(a.address)) for a in public)
        return Found(tuple(seen), notes, used, lookups)

    # Bookkeeping ---------------------------------------------------------------------------

    def _report(
        self,
        host: Host,
        outcome: str,
        reason: str,
        found: Found | None = None,
        value: str = "",
        country: str = "",
        template: dict[str, str] | None = None,
    ) -> Report:
        return Report(
            host_id=host.id,
            name=host.name,
            hostname=host.hostname,
            state=host.state,
            outcome=outcome,
            reason=reason,
            found=found or Found(),
            geolocation=value,
            country=country,
            template=dict(host.template if template is None else template),
        )

    def _log(self, report: Report) -> None:
        """One line per change of a host's outcome; every write is a change."""
        key = (report.outcome, report.reason)
        if self._logged.get(report.host_id) == key and report.outcome != WRITTEN:
            return
        self._logged[report.host_id] = key
        who = f"host {report.host_id} ({clip(report.name, 80)})"
        if report.outcome == WRITTEN:
            log.info("%s: wrote %s (from %s)", who, report.reason, report.found.used)
        elif report.outcome == UNCHANGED:
            log.debug("%s: GEOLOCATION %r is current", who, report.geolocation)
        elif report.outcome == OPERATOR:
            log.info("%s: %s", who, report.reason)
        elif report.outcome in (NO_PUBLIC_ADDRESS, NO_MATCH):
            log.info("%s: nothing written: %s", who, report.reason)
        elif report.outcome == UPDATE_FAILED:
            log.warning("%s: GEOLOCATION not written: %s", who, report.reason)

    def _trouble(self, host: Host, source: str, problem: str | None) -> None:
        """Log a source's failure for a host once, until it changes or the source recovers."""
        key = (host.id, source)
        if problem is None:
            if self._troubles.pop(key, None) is not None:
                log.info("host %d (%s): %s answers again", host.id, clip(host.name, 80), source)
            return
        if self._troubles.get(key) != problem:
            self._troubles[key] = problem
            log.warning("host %d (%s): %s: %s", host.id, clip(host.name, 80), source, problem)

    def _forget(self, host_id: int) -> None:
        self.reports.pop(host_id, None)
        self._logged.pop(host_id, None)
        self._locks.pop(host_id, None)
        for key in [k for k in self._troubles if k[0] == host_id]:
            del self._troubles[key]

    def _oned_failed(self, exc: OneError) -> None:
        if exc.message != self._oned_problem:
            log.warning("oned: %s", exc.message)
        self._oned_problem = exc.message
        self.health.fail("oned", exc.message)

    def _oned_answered(self) -> None:
        if self._oned_problem is not None:
            log.info("oned answers again at %s", self.oned.url if self.oned else "?")
        self._oned_problem = None
        self.health.ok("oned")
