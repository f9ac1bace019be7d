"""`one-geo` / `python -m services.geo`: host locations from public addresses, offline."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.runner import serve

from .app import create_app
from .config import DESCRIPTION, GeoConfig


def main(argv: Sequence[str] | None = None) -> None:
    serve(GeoConfig, create_app, argv, prog="one-geo", description=DESCRIPTION)


if __name__ == "__main__":
    main()
