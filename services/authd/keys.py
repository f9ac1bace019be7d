"""Ed25519 key text in the formats of biscuit-cli 0.5 (bare hex) and 0.6 (`ed25519/` prefix).

Pure parsing: text in, 32 raw bytes out, or a KeyFormatError saying what is wrong. The
text of a key is never echoed back in an error (a misplaced secret must not reach a log).
"""

from __future__ import annotations

import re

PUBLIC_PREFIX = "ed25519/"
PRIVATE_PREFIX = "ed25519-private/"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class KeyFormatError(ValueError):
    """A key's text is not in a format we accept."""


def _parse(text: str, prefix: str, what: str) -> bytes:
    # oned forbids whitespace in passwords, but keys pasted from terminals carry newlines.
    compact = "".join(str(text).split()).lower()
    if compact.startswith(prefix):
        compact = compact[len(prefix) :]
    elif "/" in compact:
        algorithm = compact.split("/", 1)[0]
        raise KeyFormatError(
            f"{what} uses algorithm {algorithm!r}; only Ed25519 keys are supported "
            f"(64 hex digits or {prefix}<64 hex digits>)"
        )
    if not _HEX64.fullmatch(compact):
        raise KeyFormatError(
            f"{what} is not an Ed25519 key: expected 64 hex digits or {prefix}<64 hex digits>, "
            f"got {len(compact)} characters"
        )
    return bytes.fromhex(compact)


def parse_public_key(text: str) -> bytes:
    """The 32 bytes of a public key given as hex or `ed25519/<hex>` (any case, whitespace)."""
    return _parse(text, PUBLIC_PREFIX, "the public key")


def parse_private_key(text: str) -> bytes:
    """The 32 bytes of a private key given as hex or `ed25519-private/<hex>`."""
    return _parse(text, PRIVATE_PREFIX, "the private key")


def public_key_formats(raw: bytes) -> tuple[str, str]:
    """A public key as biscuit-cli 0.6 (`ed25519/<hex>`) and 0.5 (bare hex) print it."""
    return PUBLIC_PREFIX + raw.hex(), raw.hex()


def private_key_formats(raw: bytes) -> tuple[str, str]:
    """A private key as biscuit-cli 0.6 (`ed25519-private/<hex>`) and 0.5 (bare hex) print it."""
    return PRIVATE_PREFIX + raw.hex(), raw.hex()
