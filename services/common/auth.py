"""Bearer-token check for state-changing routes (SPEC section 4)."""

from __future__ import annotations

import hmac
from pathlib import Path

from .errors import ConfigError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def read_token_file(path: Path) -> str:
    """The token a `--token-file` holds (first line, stripped), or a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read --token-file {path}: {exc.strerror or exc}") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise ConfigError(f"--token-file {path} is empty")
    return token


def bearer_matches(header: str | None, token: str) -> bool:
    """True when an Authorization header carries exactly this bearer token."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())
