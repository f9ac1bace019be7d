"""authd: verifications per second through HTTP, and the shim's end-to-end latency.

Targets (issue 6): >= 1,000 verifications/s with a concurrent client; shim p50 < 80 ms.
The client runs on the same machine as authd and competes with it for the CPUs.
Run: .venv/bin/python -m bench.bench_authd [--seconds 5] [--concurrency 32] [--shim-runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import biscuit_auth as biscuit

from services.authd.verifier import verify
from testkit import ROOT, Service, free_port

SHIM = ROOT / "services" / "authd" / "shim" / "authenticate"
# oned runs drivers with systemd's default PATH, so `#!/usr/bin/env python3` is the system one.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TARGET_RATE = 1000.0
TARGET_SHIM_P50_MS = 80.0


def tokens(pair: biscuit.KeyPair, users: int) -> list[tuple[str, str]]:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    made = []
    for i in range(users):
        token = biscuit.BiscuitBuilder(
            "user({u}); check if time($t), $t <= {e};", {"u": f"user{i}", "e": expires}
        ).build(pair.private_key)
        token = token.append(biscuit.BlockBuilder('check if operation("authenticate");'))
        made.append((f"user{i}", token.to_base64()))
    return made


def inline_cost(pair: biscuit.KeyPair, token: str, user: str, n: int = 2000) -> float:
    """CPU microseconds of one verification in-process (what a worker spends)."""
    raw = bytes(pair.public_key.to_bytes())
    started = time.process_time()
    for _ in range(n):
        assert verify(token, raw, user).valid
    return (time.process_time() - started) / n * 1e6


async def hammer(url: str, key: str, creds: list[tuple[str, str]], seconds: float, conc: int):
    ok = bad = 0
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(offset: int) -> None:
            nonlocal ok, bad
            i = offset
            while time.monotonic() < stop:
                user, token = creds[i % len(creds)]
                i += conc
                started = time.perf_counter()
                async with session.post(
                    url, json={"username": user, "password": key, "secret": token}
                ) as resp:
                    await resp.read()
                    if resp.status == 200:
                        ok += 1
                    else:
                        bad += 1
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(conc)))
        elapsed = time.monotonic() - started
    return ok, bad, elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def shim_latencies(base: str, key: str, creds: list[tuple[str, str]], runs: int) -> list[float]:
    path = SYSTEMD_PATH if shutil.which("python3", path=SYSTEMD_PATH) else os.environ["PATH"]
    env = {**os.environ, "ONE_COGNIT_AUTHD_URL": base, "PATH": path}
    times = []
    for i in range(runs):
        user, token = creds[i % len(creds)]
        stdin = (
            f"<AUTHN><USERNAME>{user}</USERNAME><PASSWORD>{key}</PASSWORD>"
            f"<SECRET>{token}</SECRET></AUTHN>"
        ).encode()
        started = time.perf_counter()
        result = subprocess.run([str(SHIM)], input=stdin, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"shim rejected a valid token: {result.stderr.decode()}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench_authd")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--shim-runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    pair = biscuit.KeyPair()
    key = f"ed25519/{bytes(pair.public_key.to_bytes()).hex()}"
    creds = tokens(pair, 200)
    print(f"in-process verification: {inline_cost(pair, creds[0][1], creds[0][0]):.0f} us CPU")

    with tempfile.TemporaryDirectory() as tmp:
        revoked = Path(tmp) / "revoked"
        # A realistic list: 10,000 revoked ids none of which is ours.
        revoked.write_text("".join(os.urandom(64).hex() + "\n" for _ in range(10_000)))
        port = free_port()
        service = Service(
            [
                sys.executable,
                "-m",
                "services.authd",
                "--listen",
                f"127.0.0.1:{port}",
                "--revocation-file",
                str(revoked),
                "--log-level",
                "warning",
                "--workers",
                str(args.workers),
            ]
        )
        base = f"http://127.0.0.1:{port}"
        try:
            service.wait_http(base + "/healthz", timeout=30)
            url = base + "/v1/authenticate"
            asyncio.run(hammer(url, key, creds, 1.0, args.concurrency))  # warm-up
            ok, bad, elapsed, lat = asyncio.run(
                hammer(url, key, creds, args.seconds, args.concurrency)
            )
            rate = ok / elapsed
            print(
                f"HTTP: {rate:,.0f} verifications/s ({ok} valid, {bad} not 200, "
                f"{args.concurrency} concurrent, {args.workers} workers, {elapsed:.1f} s); "
                f"latency p50 {percentile(lat, 0.5) * 1000:.1f} ms "
                f"p99 {percentile(lat, 0.99) * 1000:.1f} ms"
            )
            shim = shim_latencies(base, key, creds, args.shim_runs)
            p50, p99 = percentile(shim, 0.5) * 1000, percentile(shim, 0.99) * 1000
            print(
                f"shim end to end: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                f"mean {statistics.mean(shim) * 1000:.1f} ms over {len(shim)} runs "
                f"(python3 from {shutil.which('python3', path=SYSTEMD_PATH) or 'PATH'})"
            )
        finally:
            service.close()
        if bad:
            print(f"FAIL: {bad} valid tokens were not accepted")
    missed = []
    if rate < TARGET_RATE:
        missed.append(f"{rate:,.0f}/s < {TARGET_RATE:,.0f}/s")
    if p50 >= TARGET_SHIM_P50_MS:
        missed.append(f"shim p50 {p50:.1f} ms >= {TARGET_SHIM_P50_MS:.0f} ms")
    print(
        f"targets: >= {TARGET_RATE:,.0f} verifications/s, shim p50 < {TARGET_SHIM_P50_MS:.0f} ms: "
        + ("met" if not missed and not bad else "MISSED " + "; ".join(missed))
    )
    return 1 if missed or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
