"""`one-cognit`: the umbrella command (demo, sim, install, uninstall, healthcheck)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch `one-cognit <command> ...` to the command's own parser."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="one-cognit",
        description="one-cognit: OpenNebula energy, discovery, geo, auth and migration services",
    )
    parser.add_argument(
        "command",
        choices=["demo", "sim", "install", "uninstall", "healthcheck"],
        help="demo: the whole stack on the simulator; sim: the OpenNebula simulator; "
        "install --frontend|--host: put one-cognit in place on this machine; uninstall: undo "
        "what install did; healthcheck URL: exit 0 when URL answers 200 (containers)",
    )
    if not args or args[0] in ("-h", "--help"):
        parser.print_help()
        raise SystemExit(0 if args else 2)
    command, rest = args[0], args[1:]
    if command == "sim":
        from sim.__main__ import main as sim_main

        sim_main(rest)
    elif command == "demo":
        from sim.demo import main as demo_main

        demo_main(rest)
    elif command == "healthcheck":
        from services.healthcheck import main as healthcheck_main

        healthcheck_main(rest)
    elif command in ("install", "uninstall"):
        from services.install.cli import main as install_main

        install_main(command, rest)
    else:
        parser.error(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
