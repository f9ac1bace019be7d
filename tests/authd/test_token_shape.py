"""A Biscuit's shape read from its protobuf encoding (pure, no Datalog)."""

from __future__ import annotations

import biscuit_auth as biscuit
import pytest

from services.authd.token_shape import ShapeError, block_shape, encoded_blocks

from .conftest import make_token


def shapes(keys, token: str):
    encoded = bytes(biscuit.Biscuit.from_base64(token, keys.pair.public_key).to_bytes())
    return [block_shape(block) for block in encoded_blocks(encoded)]


def test_blocks_are_counted_as_written(keys):
    token = make_token(
        keys,
        'user("alice"); right("a"); p($x) <- right($x), user($y), $y == "alice";',
        [
            'check if operation("authenticate") or time($t), right($r), $t > 2020-01-01T00:00:00Z;',
            "check all n($a), m($a, $b), o($b);",
        ],
    )
    authority, first, second = shapes(keys, token)
    assert (authority.facts, authority.rules, authority.checks, authority.widest_body) == (
        2,
        1,
        0,
        2,
    )
    # `or` makes two queries: the widest one counts.
    assert (first.facts, first.rules, first.checks, first.widest_body) == (0, 0, 1, 2)
    assert (second.checks, second.widest_body) == (1, 3)
    assert all(s.size > 0 for s in (authority, first, second))


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"", "not exactly one authority block"),
        (b"\x80", "varint"),
        (b"\x12\x05ab", "past the end"),
        (b"\x0b", "wire type 3"),
        (b"\x12\x00", "exactly one block"),
        (b"\x12\x02\x0a\x00\x12\x02\x0a\x00", "not exactly one authority"),
    ],
)
def test_bytes_that_are_not_a_biscuit(data, needle):
    with pytest.raises(ShapeError, match=needle):
        encoded_blocks(data)
