"""`one-discovery` / `python -m services.discovery`: Prometheus targets kept in sync with oned."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.runner import serve

from .app import create_app
from .config import DiscoveryConfig


def main(argv: Sequence[str] | None = None) -> None:
    serve(
        DiscoveryConfig,
        create_app,
        argv,
        prog="one-discovery",
        description="Keeps Prometheus' scrape targets in sync with OpenNebula: hosts' agents, "
        "exporters inside VMs, the frontend's vm_exporter (file_sd, http_sd or static)",
    )


if __name__ == "__main__":
    main()
