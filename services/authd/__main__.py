"""`one-authd` / `python -m services.authd`: the server, or keygen / token / inspect."""

from __future__ import annotations

import sys
from collections.abc import Sequence

# The sub-commands are short-lived tools: they must not pay for importing the server.
COMMANDS = ("keygen", "token", "inspect")

DESCRIPTION = (
    "Verifies Biscuit tokens for OpenNebula's biscuit auth driver (POST /v1/authenticate). "
    "Sub-commands: `one-authd keygen` (new key pair), `one-authd token --private-key-file F "
    "--user NAME [--ttl 1h] [--check DATALOG ...]` (new token), `one-authd inspect TOKEN "
    "[--public-key K]` (show and verify a token); `one-authd <sub-command> --help` for more."
)


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch a sub-command, or run the server."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        from .cli import main as cli_main

        cli_main(args)
        return
    from services.common.runner import serve

    from .app import create_app
    from .config import AuthdConfig

    serve(AuthdConfig, create_app, args, prog="one-authd", description=DESCRIPTION)


if __name__ == "__main__":
    main()
