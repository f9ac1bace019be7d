"""Pure parsing: stored key formats and the revocation file."""

from __future__ import annotations

import pytest

from services.authd.keys import (
    KeyFormatError,
    parse_private_key,
    parse_public_key,
    private_key_formats,
    public_key_formats,
)
from services.authd.revocations import parse_revocations

HEX = "ace98bbc65055a6d8a942e1a7661efe5765030bbf9b96af73faac47e82161d56"


@pytest.mark.parametrize(
    "text",
    [
        HEX,
        HEX.upper(),
        f"ed25519/{HEX}",
        f"ED25519/{HEX.upper()}",
        f"  ed25519/{HEX}\n",
        f"\t{HEX[:32]}\n{HEX[32:]} ",
    ],
)
def test_public_key_formats_of_both_biscuit_cli_versions(text):
    assert parse_public_key(text) == bytes.fromhex(HEX)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "got 0 characters"),
        (HEX[:-1], "got 63 characters"),
        (HEX + "0", "got 65 characters"),
        ("zz" * 32, "expected 64 hex digits"),
        (f"secp256r1/{HEX}", "algorithm 'secp256r1'"),
        (f"ed25519-private/{HEX}", "algorithm 'ed25519-private'"),
        ("ed25519/", "got 0 characters"),
    ],
)
def test_bad_public_keys_say_what_is_wrong_without_echoing_the_key(text, needle):
    with pytest.raises(KeyFormatError) as err:
        parse_public_key(text)
    message = str(err.value)
    assert needle in message and "public key" in message
    assert HEX not in message


def test_private_key_formats():
    raw = bytes.fromhex(HEX)
    assert parse_private_key(f"ed25519-private/{HEX}\n") == raw
    assert parse_private_key(HEX.upper()) == raw
    with pytest.raises(KeyFormatError, match="algorithm 'ed25519'"):
        parse_private_key(f"ed25519/{HEX}")
    assert private_key_formats(raw) == (f"ed25519-private/{HEX}", HEX)
    assert public_key_formats(raw) == (f"ed25519/{HEX}", HEX)


def test_revocation_file_parsing():
    a, b = "ab" * 64, "CD" * 64
    text = f"# revoked 2025-01-01\n{a}\n\n  {b}  # laptop stolen\nnot-hex\nabc\n{a}\n"
    parsed = parse_revocations(text)
    assert parsed.ids == {a, b.lower()}
    assert parsed.bad_lines == (5, 6)  # "not-hex" and an odd number of digits
    assert parsed.first_revoked(("00" * 64, b)) == 1
    assert parsed.first_revoked((b.upper(),)) == 0
    assert parsed.first_revoked(("00" * 64,)) is None
    assert parse_revocations("").ids == frozenset()


def test_revocation_file_saved_with_a_byte_order_mark():
    # Windows editors write a BOM: the first id must still be revoked, not skipped as bad.
    a = "ab" * 64
    parsed = parse_revocations(f"\ufeff{a}\r\n")
    assert parsed.ids == {a} and parsed.bad_lines == ()
