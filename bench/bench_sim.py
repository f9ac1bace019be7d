"""The simulator at cloud scale: one.vmpool.infoextended on 10,000 VMs / 500 hosts.

Starts `python -m sim --hosts 500 --vms-per-host 20` as a real subprocess and measures, over
several calls, with real XML-RPC requests on a real socket:
1. reply time: from sending the call to the last byte of oned's reply (what the simulator
   controls), median and p95 -- target < 2 s;
2. the same call through the standard library's XML-RPC client (`xmlrpc.client`, what
   the old `OneClient` used), i.e. reply + unmarshalling of the ~50 MB
   entity-escaped body -- reported, it is the client's cost and a real oned costs the same;
3. a reply right after a VM changed (its cached XML was invalidated), one.vmpool.info (the
   short body), one.hostpool.info, start-up time and the simulator's peak RSS.
Run: `.venv/bin/python -m bench.bench_sim` (exit 1 when the target is missed).
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import time
import urllib.request
import xmlrpc.client
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit import Service, free_port  # noqa: E402

HOSTS, VMS_PER_HOST = 500, 20
CALLS = 7
TARGET_REPLY_S = 2.0
AUTH = "oneadmin:opennebula"


def reply_time(port: int, method: str, *args: object) -> tuple[float, int]:
    """Seconds from sending an XML-RPC call to the last byte of the reply, and its size."""
    body = xmlrpc.client.dumps((AUTH, *args), method).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        started = time.perf_counter()
        conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    if resp.status != 200 or b"<boolean>1</boolean>" not in data[:300]:
        raise SystemExit(f"{method} failed: HTTP {resp.status} {data[:300]!r}")
    return elapsed, len(data)


def client_time(url: str) -> tuple[float, int]:
    """Seconds for the full call through xmlrpc.client, unmarshalling included."""
    proxy = xmlrpc.client.ServerProxy(url)
    try:
        started = time.perf_counter()
        ok, pool, _ = proxy.one.vmpool.infoextended(AUTH, -2, -1, -1, -1)
        elapsed = time.perf_counter() - started
    finally:
        proxy("close")()
    if not ok or pool.count("<VM>") != HOSTS * VMS_PER_HOST:
        raise SystemExit("infoextended did not return the whole pool")
    return elapsed, len(pool)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    port, control = free_port(), free_port()
    started = time.perf_counter()
    sim = Service(
        [
            sys.executable,
            "-m",
            "sim",
            "--listen",
            f"127.0.0.1:{port}",
            "--control-listen",
            f"127.0.0.1:{control}",
            "--hosts",
            str(HOSTS),
            "--vms-per-host",
            str(VMS_PER_HOST),
            "--log-level",
            "warning",
        ]  # fmt: skip
    )
    try:
        sim.wait_http(f"http://127.0.0.1:{control}/healthz", timeout=180)
        startup = time.perf_counter() - started
        replies, sizes = [], set()
        for _ in range(CALLS):
            seconds, size = reply_time(port, "one.vmpool.infoextended", -2, -1, -1, -1)
            replies.append(seconds)
            sizes.add(size)
        clients = [client_time(f"http://127.0.0.1:{port}/RPC2")[0] for _ in range(3)]
        req = urllib.request.Request(
            f"http://127.0.0.1:{control}/v1/vms/4242/poweroff", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read())["vm"]["state"] == "POWEROFF"
        after_change = reply_time(port, "one.vmpool.infoextended", -2, -1, -1, -1)[0]
        short = statistics.median(
            reply_time(port, "one.vmpool.info", -2, -1, -1, -1)[0] for _ in range(3)
        )
        hosts = statistics.median(reply_time(port, "one.hostpool.info")[0] for _ in range(3))
        rss = peak_rss_mb(sim.proc.pid)
    finally:
        sim.close()

    median = statistics.median(replies)
    worst = p95(replies)
    size_mb = max(sizes) / 1e6
    print(f"simulator: {HOSTS} hosts, {HOSTS * VMS_PER_HOST} VMs, ready in {startup:.1f} s")
    print(
        f"one.vmpool.infoextended reply ({size_mb:.1f} MB, {CALLS} calls): "
        f"median {median:.3f} s, p95 {worst:.3f} s (target < {TARGET_REPLY_S} s)"
    )
    print(
        f"  through xmlrpc.client (reply + unmarshalling): median "
        f"{statistics.median(clients):.3f} s over {len(clients)} calls"
    )
    print(f"  right after a VM changed: {after_change:.3f} s")
    print(f"one.vmpool.info (short body) median {short:.3f} s; one.hostpool.info {hosts:.3f} s")
    print(f"simulator peak RSS {rss:.0f} MB")
    ok = worst < TARGET_REPLY_S
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
