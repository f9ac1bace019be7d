"""Driving a live agent: in-process through `create_app` (most tests) or as a real process.

Both read what users read (`/metrics`, `/api/v1/vms`, `/healthz`); the helpers below turn a
scrape into values and measure power against the simulated hypervisor's model with a
tolerance derived from how far its counters lagged the model.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from services.rapl_agent.app import create_app
from services.rapl_agent.config import RaplConfig
from sim.hypervisor import SimHypervisor
from testkit import Service, free_port, http
from testkit.server import app_client

SNAPSHOT_TS = "one_cognit_rapl_agent_snapshot_timestamp_seconds"
SAMPLES = "one_cognit_rapl_agent_samples"
HOST_W = "scaph_host_power_microwatts"
PROCESS_W = "scaph_process_power_consumption_microwatts"

Families = dict[str, list]
T = TypeVar("T")


def parse(body: bytes) -> Families:
    """/metrics text as {family name: [samples]}."""
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def value(fams: Families, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` matching `labels`, None when absent."""
    for sample in fams.get(name, []):
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def process_power(fams: Families) -> dict[int, float]:
    """pid -> process power from one scrape."""
    return {int(s.labels["pid"]): s.value for s in fams.get(PROCESS_W, [])}


def cpu_jiffies(pids: Sequence[int]) -> int:
    """utime + stime of processes, read by the test itself."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def busy_jiffies() -> int:
    """Non-idle jiffies of the machine from /proc/stat."""
    cols = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = cols
    return user + nice + system + irq + softirq + steal


# -- in-process ------------------------------------------------------------------------------


async def until(check: Callable[[], Awaitable[T]], timeout: float = 10.0, what: str = "it") -> T:
    """`testkit.async_wait_for` for checks that are coroutines (requests to the test client)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.01)


class InProcessAgent:
    """An agent app served by aiohttp's test server in the test's own event loop."""

    def __init__(self, app: web.Application, client: TestClient) -> None:
        self.app = app
        self.client = client
        self._last_stamp: float | None = None  # never the same snapshot twice

    async def get(self, path: str) -> tuple[int, bytes]:
        resp = await self.client.get(path)
        return resp.status, await resp.read()

    async def json(self, path: str) -> tuple[int, Any]:
        status, body = await self.get(path)
        return status, json.loads(body)

    async def metrics(self) -> Families:
        status, body = await self.get("/metrics")
        assert status == 200, body
        return parse(body)

    async def snapshots(
        self, count: int, *, powered: bool = True, timeout: float = 20.0
    ) -> list[Families]:
        """The next `count` distinct snapshots seen on /metrics (with host power if `powered`)."""
        seen: list[Families] = []
        deadline = time.monotonic() + timeout
        while len(seen) < count:
            fams = await self.metrics()
            stamp = value(fams, SNAPSHOT_TS)
            if stamp is not None and stamp != self._last_stamp:
                self._last_stamp = stamp
                if not powered or HOST_W in fams:
                    seen.append(fams)
            assert time.monotonic() < deadline, f"only {len(seen)} snapshots in {timeout}s"
            # Often enough to see every snapshot at the tests' 0.1 s interval, rarely enough to
            # leave the simulator's ticker thread the GIL.
            await asyncio.sleep(0.02)
        return seen


@asynccontextmanager
async def running_agent(
    powercap_root: Path | str,
    proc_root: Path | str,
    *,
    interval: float = 0.1,
    max_cmdline: int = 512,
) -> AsyncIterator[InProcessAgent]:
    """An agent built by `create_app`, sampling every `interval`, stopped on exit."""
    config = RaplConfig(
        powercap_root=Path(powercap_root),
        proc_root=Path(proc_root),
        interval=interval,
        max_cmdline=max_cmdline,
    )
    app = create_app(config)
    async with app_client(app) as client:
        yield InProcessAgent(app, client)


# -- power against the model ------------------------------------------------------------------


def _follows(before: Families, after: Families) -> bool:
    """The agent published nothing between the two: `after`'s power covers exactly that gap."""
    return value(after, SAMPLES, result="ok") == value(before, SAMPLES, result="ok") + 1


def _runs(snaps: Sequence[Families]) -> list[list[Families]]:
    """The snapshots cut into runs of consecutive ones."""
    runs: list[list[Families]] = []
    for before, after in zip(snaps, snaps[1:], strict=False):
        if not _follows(before, after):
            continue
        if runs and runs[-1][-1] is before:
            runs[-1].append(after)
        else:
            runs.append([before, after])
    return runs


def mean_w(snaps: Sequence[Families], name: str, **labels: str) -> float:
    """Watts averaged over the snapshots' intervals (energy over time, not a mean of ratios)."""
    energy = seconds = 0.0
    for run in _runs(snaps):
        for before, after in zip(run, run[1:], strict=False):
            dt = value(after, SNAPSHOT_TS) - value(before, SNAPSHOT_TS)
            energy += value(after, name, **labels) * dt
            seconds += dt
    assert seconds > 0, f"no consecutive snapshots with {name}{labels}"
    return energy / seconds / 1e6


def model_tolerance(snaps: Sequence[Families], hv: SimHypervisor) -> float:
    """The relative error a `mean_w` over `snaps` may carry from the simulator's counter lag.

    A run of consecutive intervals telescopes: only how far the counters lagged the model at
    the run's two ends is error (the ticker thread ticks every few ms, late when the machine is
    loaded). That lag is measured by the simulator, around the moment of each end's reading;
    the agent's sampler thread may also wait for the GIL between reading the counters and
    stamping the sample (two switch intervals allowed).
    """
    offset = time.time() - time.monotonic()
    stall = 2 * sys.getswitchinterval()

    def lag(fams: Families) -> float:
        read = value(fams, SNAPSHOT_TS) - offset  # counters are read just before the stamp
        return hv.max_counter_lag(read - 0.05, read + 0.002)

    error = span = 0.0
    for run in _runs(snaps):
        error += max(lag(run[0]), lag(run[-1])) + stall
        span += value(run[-1], SNAPSHOT_TS) - value(run[0], SNAPSHOT_TS)
    assert span > 0, "no consecutive snapshots"
    return 0.005 + error / span


def assert_each_interval_follows_the_model(
    snaps: Sequence[Families], hv: SimHypervisor, watts: float, name: str, **labels: str
) -> None:
    """Every interval's power is the model's, give or take the counter lag the simulator
    measured around it: never negative, never a spike (a wrap taken for a reset, say)."""
    offset = time.time() - time.monotonic()
    for run in _runs(snaps):
        for before, after in zip(run, run[1:], strict=False):
            start, end = value(before, SNAPSHOT_TS), value(after, SNAPSHOT_TS)
            lag = hv.max_counter_lag(start - offset - 0.02, end - offset + 0.002)
            seconds = end - start
            joules = value(after, name, **labels) / 1e6 * seconds
            low, high = watts * max(0.0, seconds - lag), watts * (seconds + lag)
            assert low - 1e-3 <= joules <= high + 1e-3, (name, labels, joules, low, high)


async def model_snapshots(
    agent: InProcessAgent, hv: SimHypervisor, *, precision: float = 0.04, timeout: float = 20.0
) -> tuple[list[Families], float]:
    """Snapshots until the counter lag allows `precision`; with the tolerance they allow."""
    snaps = await agent.snapshots(10)
    deadline = time.monotonic() + timeout
    while (tolerance := model_tolerance(snaps, hv)) > precision:
        assert time.monotonic() < deadline, f"counter lag still allows only {tolerance:.3f}"
        snaps += await agent.snapshots(5)
    return snaps, tolerance


# -- as a real process ------------------------------------------------------------------------


def agent_argv(
    powercap_root: Path,
    proc_root: Path | str,
    *,
    interval: float = 0.25,
    host: str = "127.0.0.1",
    port: int | None = None,
    extra: Sequence[str] = (),
) -> tuple[list[str], str]:
    """The command line of an agent and its base URL."""
    port = port or free_port(host)
    argv = [
        sys.executable,
        "-m",
        "services.rapl_agent",
        "--listen",
        f"{host}:{port}",
        "--powercap-root",
        str(powercap_root),
        "--proc-root",
        str(proc_root),
        "--interval",
        str(interval),
        *extra,
    ]
    return argv, f"http://{host}:{port}"


class Agent:
    """A started agent process: scrape it, read its JSON, wait for snapshots."""

    def __init__(self, service: Service, base: str) -> None:
        self.service = service
        self.base = base
        service.wait_http(f"{base}/healthz")

    def get(self, path: str) -> tuple[int, bytes]:
        status, _, body = http("GET", self.base + path)
        return status, body

    def json(self, path: str) -> tuple[int, dict]:
        status, body = self.get(path)
        return status, json.loads(body)

    def metrics(self) -> Families:
        status, body = self.get("/metrics")
        assert status == 200
        return parse(body)

    def snapshots(self, count: int, timeout: float = 20.0) -> list[Families]:
        """The next `count` distinct snapshots with host power seen on /metrics."""
        seen: list[Families] = []
        last = None
        deadline = time.monotonic() + timeout
        while len(seen) < count:
            fams = self.metrics()
            stamp = value(fams, SNAPSHOT_TS)
            if stamp is not None and stamp != last:
                last = stamp
                if HOST_W in fams:
                    seen.append(fams)
            assert time.monotonic() < deadline, f"only {len(seen)} snapshots: {self.logs()}"
            time.sleep(0.02)
        return seen

    def logs(self) -> str:
        return self.service.output()[1]
