"""Hook payloads: the base64 `$TEMPLATE` of a VM or host, down to its id (pure).

OpenNebula runs hooks concurrently and in no guaranteed order, and a `$TEMPLATE` can be older
than what oned knows when it arrives: the payload only says which object to look at. Its id is
read with the shared oned parser; whatever else it says is not trusted.
"""

from __future__ import annotations

import base64
import binascii
import re

from services.common.oned.pools import PoolFormatError, parse_host, parse_vm

KINDS = ("vm", "host")
_BLANKS = re.compile(rb"\s+")


class BadEvent(ValueError):
    """A payload that is not the base64 of a <VM> or <HOST> document with an integer ID."""


def event_id(kind: str, body: bytes) -> int:
    """The object id a hook payload names; BadEvent saying what is wrong with it."""
    data = _BLANKS.sub(b"", body)
    if not data:
        raise BadEvent("empty body; expected the hook's base64 $TEMPLATE")
    try:
        xml = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadEvent(f"body is not base64: {exc}") from None
    parse = parse_vm if kind == "vm" else parse_host
    root = "VM" if kind == "vm" else "HOST"
    try:
        obj = parse(xml)
    except PoolFormatError as exc:
        raise BadEvent(f"$TEMPLATE is not a <{root}> document: {exc}") from None
    if obj is None:
        needs = "ID, STATE and LCM_STATE" if kind == "vm" else "ID and STATE"
        raise BadEvent(f"$TEMPLATE <{root}> lacks an integer {needs}")
    if obj.id < 0:
        raise BadEvent(f"$TEMPLATE <{root}> has a negative ID {obj.id}")
    return obj.id
