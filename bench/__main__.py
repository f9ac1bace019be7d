"""Run every `bench/bench_*.py` (or those named on the command line) one after another."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    names = sys.argv[1:] or sorted(p.stem for p in HERE.glob("bench_*.py"))
    failed = []
    for name in names:
        module = name if name.startswith("bench_") else f"bench_{name}"
        print(f"== {module}", flush=True)
        code = subprocess.call([sys.executable, "-m", f"bench.{module}"], cwd=HERE.parent)
        if code:
            failed.append(module)
    if failed:
        print(f"benchmarks that missed a target or failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
