"""`one-rapl-agent` / `python -m services.rapl_agent`: per-process and per-VM power from RAPL."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.runner import serve

from .app import create_app
from .config import RaplConfig


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags, build the app, serve until SIGTERM."""
    serve(
        RaplConfig,
        create_app,
        argv,
        prog="one-rapl-agent",
        description="RAPL energy counters and /proc to Scaphandre-compatible power per process/VM",
    )


if __name__ == "__main__":
    main()
