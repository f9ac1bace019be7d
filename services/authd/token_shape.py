"""The shape of a Biscuit (blocks, their sizes, statements and rule bodies), without Datalog.

biscuit-python shows a block only as printed Datalog, and that text does not escape quotes
inside strings (`"a\\"b"` prints as `"a"b"`), so counting predicates over it can be fooled into
seeing a join inside a string. This reads the token's own encoding instead: the protobuf of
biscuit's `schema.proto` (Biscuit -> SignedBlock.block -> Block -> RuleV2/CheckV2 bodies).
Pure and linear in the token's size; only the few fields needed are read.
"""

from __future__ import annotations

import dataclasses

# schema.proto field numbers.
_BISCUIT_AUTHORITY, _BISCUIT_BLOCKS = 2, 3
_SIGNED_BLOCK_BLOCK = 1
_BLOCK_FACTS, _BLOCK_RULES, _BLOCK_CHECKS = 4, 5, 6
_RULE_BODY = 2
_CHECK_QUERIES = 1

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class ShapeError(ValueError):
    """The bytes are not a Biscuit's protobuf encoding."""


@dataclasses.dataclass(frozen=True)
class BlockShape:
    """What one block holds, counted from its encoding."""

    size: int  # bytes of the encoded block
    facts: int
    rules: int
    checks: int
    widest_body: int  # most predicates in one rule body or one check query

    @property
    def statements(self) -> int:
        return self.facts + self.rules + self.checks


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ShapeError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview, wanted: tuple[int, ...]) -> list[tuple[int, memoryview]]:
    """(field number, bytes) of the length-delimited fields in `wanted` of one message.

    Every other field is skipped without being copied: a block is mostly its symbol table,
    and this runs on the event loop (a login token: ~14 us for all its blocks; the largest
    allowed token of tiny symbols: ~0.8 ms).
    """
    found = []
    pos, end = 0, len(data)
    while pos < end:
        key = data[pos]
        if key < 0x80:  # field numbers under 16: one byte, the usual case
            pos += 1
        else:
            key, pos = _varint(data, pos)
        wire = key & 7
        if wire == _LEN:
            length = data[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = _varint(data, pos)
            if length > end - pos:
                raise ShapeError("a field runs past the end of its message")
            if key >> 3 in wanted:
                found.append((key >> 3, data[pos : pos + length]))
            pos += length
        elif wire == _VARINT:
            _, pos = _varint(data, pos)
        elif wire == _I64:
            pos += 8
        elif wire == _I32:
            pos += 4
        else:
            raise ShapeError(f"wire type {wire} is not used by Biscuit")
        if pos > end:
            raise ShapeError("a field runs past the end of its message")
    return found


def _body_width(rule: memoryview) -> int:
    return len(_fields(rule, (_RULE_BODY,)))


def block_shape(block: memoryview) -> BlockShape:
    """Count the statements and the widest rule body of one encoded Block."""
    facts = rules = checks = widest = 0
    for field, value in _fields(block, (_BLOCK_FACTS, _BLOCK_RULES, _BLOCK_CHECKS)):
        if field == _BLOCK_FACTS:
            facts += 1
        elif field == _BLOCK_RULES:
            rules += 1
            widest = max(widest, _body_width(value))
        elif field == _BLOCK_CHECKS:
            checks += 1
            for _, query in _fields(value, (_CHECK_QUERIES,)):
                widest = max(widest, _body_width(query))
    return BlockShape(len(block), facts, rules, checks, widest)


def encoded_blocks(token: bytes) -> list[memoryview]:
    """The encoded Block of the authority, then of each attenuation block, in order."""
    authority: list[memoryview] = []
    blocks: list[memoryview] = []
    for field, value in _fields(memoryview(token), (_BISCUIT_AUTHORITY, _BISCUIT_BLOCKS)):
        inner = [v for _, v in _fields(value, (_SIGNED_BLOCK_BLOCK,))]
        if len(inner) != 1:
            raise ShapeError("a signed block without exactly one block")
        (authority if field == _BISCUIT_AUTHORITY else blocks).append(inner[0])
    if len(authority) != 1:
        raise ShapeError("not exactly one authority block")
    return authority + blocks
