"""`one-cognit sim` / `python -m sim`: the OpenNebula + hypervisor simulator."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from services.common.config import fail, load_config
from services.common.errors import ConfigError
from services.common.logs import setup_logging
from services.common.runner import new_event_loop

from .app import StartError, build_cloud, run
from .config import SimConfig

PROG = "one-cognit sim"
DESCRIPTION = (
    "A simulated OpenNebula frontend: oned's XML-RPC API on /RPC2 over a generated or YAML "
    "fleet, a JSON control API, state hooks, and optionally simulated hypervisors "
    "(powercap trees and QEMU-like processes)."
)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags (exit 2 on a bad flag or fleet), then serve until SIGTERM/SIGINT."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(SimConfig, args, prog=PROG, description=DESCRIPTION)
        setup_logging(config.log_level, config.log_format)
        cloud = build_cloud(config)
    except ConfigError as exc:
        fail(PROG, str(exc))
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(run(config, cloud))
    except ConfigError as exc:
        fail(PROG, str(exc))
    except StartError as exc:
        fail(PROG, str(exc), code=1)
    finally:
        loop.close()


if __name__ == "__main__":
    main()
