"""Helpers for the live tests: a real agent process against a simulated hypervisor."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from testkit import Service, free_port, http

SNAPSHOT_TS = "one_cognit_rapl_agent_snapshot_timestamp_seconds"


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
    """A started agent: scrape it, read its JSON, wait for snapshots."""

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

    def metrics(self) -> dict[str, list]:
        """/metrics as {family name: [samples]}."""
        status, body = self.get("/metrics")
        assert status == 200
        return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}

    def snapshots(self, count: int, timeout: float = 20.0, *, powered: bool = True) -> list[dict]:
        """The next `count` distinct snapshots seen on /metrics (with host power if `powered`)."""
        seen: list[dict] = []
        last = None
        deadline = time.monotonic() + timeout
        while len(seen) < count and time.monotonic() < deadline:
            fams = self.metrics()
            stamp = value(fams, SNAPSHOT_TS)
            if stamp is not None and stamp != last:
                last = stamp
                if not powered or "scaph_host_power_microwatts" in fams:
                    seen.append(fams)
            time.sleep(0.03)
        assert len(seen) >= count, f"only {len(seen)} snapshots in {timeout}s: {self.logs()}"
        return seen

    def logs(self) -> str:
        return self.service.output()[1]


def value(fams: dict[str, list], name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` matching `labels`, None when absent."""
    for sample in fams.get(name, []):
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def process_power(fams: dict[str, list]) -> dict[int, float]:
    """pid -> process power from one scrape."""
    return {
        int(s.labels["pid"]): s.value
        for s in fams.get("scaph_process_power_consumption_microwatts", [])
    }


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
