"""tunnel_agent: tunnel up and down (both ends) p50/p95, and 32 tunnels brought up at once.

Targets (issue 12): up < 50 ms and down < 200 ms at p50 and p95; 32 concurrent up < 2 s.
Real agents in network namespaces (root needed), the client in the test process: the times
are what the migrate shim waits for (POST returns once both halves exist, DELETE once both
are gone). Run twice: the machine is shared and a busy neighbour shows in the p95.
Run: .venv/bin/python -m bench.bench_tunnel_agent [--runs 50]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import time

from testkit.netns import Lab

TARGET_UP_MS = 50.0
TARGET_DOWN_MS = 200.0
TARGET_32_S = 2.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (load-independent, unlike wall times)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="sequential up/down cycles")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)")
        return 1
    with Lab() as lab:
        (a, _), (b, ip_b), (c, _) = lab.hosts(3)
        agents = lab.agents((a, b, c))
        agent_a, _agent_b, agent_c = agents
        up: list[float] = []
        down: list[float] = []
        pids = [agent_a.service.proc.pid, _agent_b.service.proc.pid]
        cpu_before = 0.0
        for i in range(args.runs + 3):
            if i == 3:
                cpu_before = sum(cpu_seconds(pid) for pid in pids)
            started = time.perf_counter()
            status, body = agent_a.request("POST", "/v1/tunnels", {"vm_id": i, "peer": ip_b})
            took_up = time.perf_counter() - started
            assert status == 201, body
            started = time.perf_counter()
            status, gone = agent_a.request("DELETE", f"/v1/tunnels/{body['id']}")
            took_down = time.perf_counter() - started
            assert status == 200 and gone["peer"] == "deleted", gone
            if i >= 3:  # the first cycles warm up imports and caches
                up.append(took_up * 1000)
                down.append(took_down * 1000)
        cpu_per_cycle = (sum(cpu_seconds(pid) for pid in pids) - cpu_before) / args.runs
        jobs = [(agent_a, vm) for vm in range(16)] + [(agent_c, vm) for vm in range(16, 32)]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            made = list(
                pool.map(
                    lambda j: j[0].request("POST", "/v1/tunnels", {"vm_id": j[1], "peer": ip_b}),
                    jobs,
                )
            )
        burst_up = time.perf_counter() - started
        assert [s for s, _ in made] == [201] * 32, made
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            closed = list(
                pool.map(
                    lambda j: j[0][0].request("DELETE", f"/v1/tunnels/{j[1][1]['id']}"),
                    zip(jobs, made, strict=True),
                )
            )
        burst_down = time.perf_counter() - started
        assert all(s == 200 for s, _ in closed)
    load = os.getloadavg()[0]
    print(f"machine load average (1 min): {load:.1f} on {os.cpu_count()} CPUs")
    print(
        f"tunnel up, both ends   ({len(up)} runs): p50 {statistics.median(up):6.1f} ms   "
        f"p95 {quantile(up, 0.95):6.1f} ms   (target < {TARGET_UP_MS:.0f} ms)"
    )
    print(
        f"tunnel down, both ends ({len(down)} runs): p50 {statistics.median(down):6.1f} ms   "
        f"p95 {quantile(down, 0.95):6.1f} ms   (target < {TARGET_DOWN_MS:.0f} ms)"
    )
    print(f"agent CPU per tunnel up + down, both agents together: {cpu_per_cycle * 1000:.1f} ms")
    print(
        f"32 tunnels up at once (2 sources, 1 peer): {burst_up:.2f} s (target < {TARGET_32_S:.0f}"
        f" s); all 32 down: {burst_down:.2f} s"
    )
    missed = [
        name
        for name, value, target in (
            ("up p50", statistics.median(up), TARGET_UP_MS),
            ("up p95", quantile(up, 0.95), TARGET_UP_MS),
            ("down p50", statistics.median(down), TARGET_DOWN_MS),
            ("down p95", quantile(down, 0.95), TARGET_DOWN_MS),
            ("32 up", burst_up * 1000, TARGET_32_S * 1000),
        )
        if value >= target
    ]
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
