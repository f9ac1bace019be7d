"""The host hook's payload: the base64 of the `<HOST>` XML oned passes as `$TEMPLATE` (pure)."""

from __future__ import annotations

import base64
import binascii

from services.common.errors import BadRequest
from services.common.oned import Host
from services.common.oned.pools import PoolFormatError, parse_host


def host_from_event(body: bytes) -> Host:
    """The host a hook payload names, or BadRequest saying what is wrong with it."""
    compact = b"".join(body.split())  # base64 may come wrapped in lines
    if not compact:
        raise BadRequest("empty body; expected the hook's $TEMPLATE (base64 of the <HOST> XML)")
    try:
        xml = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("body is not base64; expected the hook's $TEMPLATE") from None
    try:
        host = parse_host(xml)
    except PoolFormatError as exc:
        raise BadRequest(f"$TEMPLATE is not a <HOST> document: {str(exc)[:200]}") from None
    if host is None:
        raise BadRequest("$TEMPLATE's <HOST> has no integer ID and STATE")
    return host
