"""`one-tunnel-agent` / `python -m services.tunnel_agent`: per-migration VXLAN overlays."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.runner import serve

from .app import create_app
from .config import TunnelAgentConfig


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags, build the app, serve until SIGTERM."""
    serve(
        TunnelAgentConfig,
        create_app,
        argv,
        prog="one-tunnel-agent",
        description="Builds and removes per-migration L2 overlays (bridge + VXLAN over netlink) "
        "between hypervisors, and reports this host's addresses",
    )


if __name__ == "__main__":
    main()
