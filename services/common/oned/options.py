"""Where oned is and who we are, as OpenNebula's CLI does it: ONE_XMLRPC and the ONE_AUTH file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from services.common.config import env_default, option
from services.common.errors import ConfigError

DEFAULT_XMLRPC = "http://localhost:2633/RPC2"
DEFAULT_ONE_AUTH = "~/.one/one_auth"


@dataclasses.dataclass(frozen=True)
class OneOptions:
    """The two OpenNebula flags; mixed into the configs of services that talk to oned."""

    one_xmlrpc: str = option(
        help="oned XML-RPC endpoint (env ONE_XMLRPC)",
        factory=env_default("ONE_XMLRPC", DEFAULT_XMLRPC),
        metavar="URL",
    )
    one_auth: Path = option(
        help="file holding user:password (env ONE_AUTH)",
        factory=lambda: Path(env_default("ONE_AUTH", DEFAULT_ONE_AUTH)()).expanduser(),
        metavar="PATH",
    )
    one_timeout: float = option(30.0, "seconds oned has to answer one call")

    def __post_init__(self) -> None:
        if not self.one_timeout > 0:
            raise ValueError(f"--one-timeout must be > 0, got {self.one_timeout}")


def read_one_auth(path: Path) -> str:
    """The `user:password` session string of a ONE_AUTH file, or a ConfigError."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read ONE_AUTH file {path}: {exc.strerror or exc} "
            "(set --one-auth or ONE_AUTH to a file holding user:password)"
        ) from None
    session = text.strip().splitlines()[0].strip() if text.strip() else ""
    if ":" not in session:
        raise ConfigError(f"ONE_AUTH file {path} must hold user:password")
    return session
