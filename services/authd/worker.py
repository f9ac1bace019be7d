"""A verifier worker process: JSON lines in on stdin, verdicts out on stdout.

biscuit-python holds the GIL while it runs Datalog and its time limit is only checked between
rule iterations, so a token whose checks join many facts runs for seconds whatever the limit
says. authd therefore verifies in worker processes, and each verification here runs under a
CPU-time alarm whose default action kills the process: the pool sees the death, answers
"Datalog limits exceeded" and starts a fresh worker. The server never blocks on a token.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence

from .verdict import Reason, Verdict
from .verifier import Limits, verify

READY = b'{"ready": true}\n'


def _handle(line: bytes, limits: Limits, cpu_limit: float) -> dict:
    try:
        request = json.loads(line)
        token, key, username = request["token"], request["key"], request["username"]
        raw_key = bytes.fromhex(key)
    except (ValueError, KeyError, TypeError) as exc:
        return {"id": None, **Verdict(Reason.UNAVAILABLE, f"bad worker request: {exc}").to_json()}
    # SIGPROF's default action terminates: a runaway verification cannot outlive its budget.
    signal.setitimer(signal.ITIMER_PROF, cpu_limit)
    try:
        verdict = verify(token, raw_key, username, limits=limits)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a library panic on a token is a rejection, not a crash
        verdict = Verdict(Reason.MALFORMED_TOKEN, f"the verifier failed on this token: {exc}")
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    return {"id": request.get("id"), **verdict.to_json()}


def main(argv: Sequence[str] | None = None) -> None:
    """Serve verification requests until stdin closes."""
    parser = argparse.ArgumentParser(prog="one-authd-worker")
    parser.add_argument("--max-time", type=float, required=True)
    parser.add_argument("--max-facts", type=int, required=True)
    parser.add_argument("--max-iterations", type=int, required=True)
    parser.add_argument("--cpu-limit", type=float, required=True)
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    limits = Limits(args.max_time, args.max_facts, args.max_iterations)
    # Ctrl-C reaches the whole process group; the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(READY)
    stdout.flush()
    for line in stdin:
        stdout.write(json.dumps(_handle(line, limits, args.cpu_limit)).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    main()
