"""`one-vm-exporter` / `python -m services.vm_exporter`: OpenNebula metrics joined with VM power."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.runner import serve

from .app import create_app
from .config import ExporterConfig


def main(argv: Sequence[str] | None = None) -> None:
    serve(
        ExporterConfig,
        create_app,
        argv,
        prog="one-vm-exporter",
        description="OpenNebula VM and host metrics for Prometheus, with per-VM power "
        "from each host's agent (rapl_agent, or Scaphandre --qemu)",
    )


if __name__ == "__main__":
    main()
