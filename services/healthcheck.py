"""`one-cognit healthcheck URL`: exit 0 when URL answers 200, else one line and exit 1.

For container healthchecks (the image has no curl): standard library only, no proxy (a
service's /healthz is on this machine), a short deadline.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

TIMEOUT = 3.0


def check(url: str, timeout: float = TIMEOUT) -> str | None:
    """None when `url` answers 200, else why not."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode(errors="replace").strip()
        return f"HTTP {exc.code}: {body}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


def main(argv: Sequence[str]) -> None:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: one-cognit healthcheck URL  (exit 0 when URL answers 200)", file=sys.stderr)
        raise SystemExit(2)
    problem = check(argv[0])
    if problem is not None:
        print(f"{argv[0]}: {problem}", file=sys.stderr)
        raise SystemExit(1)
    raise SystemExit(0)
