"""The host hook's payload: base64 of the <HOST> XML, or a 400 saying why not (pure)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from services.common.errors import BadRequest
from services.geo.events import host_from_event

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "one"


def b64(data: str | bytes) -> bytes:
    return base64.b64encode(data.encode() if isinstance(data, str) else data)


HOST = (
    "<HOST><ID>7</ID><NAME>kvm-7</NAME><STATE>2</STATE>"
    "<TEMPLATE><HOSTNAME>n7</HOSTNAME></TEMPLATE></HOST>"
)


def test_a_hook_payload_names_its_host():
    host = host_from_event(b64(HOST))
    assert (host.id, host.name, host.hostname, host.state) == (7, "kvm-7", "n7", 2)
    # wrapped in lines, as some base64 encoders write it
    wrapped = b"\n".join(b64(HOST)[i : i + 60] for i in range(0, len(b64(HOST)), 60))
    assert host_from_event(wrapped + b"\n").id == 7


def test_a_real_host_xml_from_the_fixtures():
    pool = (FIXTURES / "hostpool_info.xml").read_text()
    first = pool[len("<HOST_POOL>") : pool.index("</HOST>") + len("</HOST>")]
    assert host_from_event(b64(first)).id == 0


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + "]><HOST><ID>1</ID><STATE>2</STATE><NAME>&lol9;</NAME></HOST>"
)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"not base64!", "not base64"),
        (b"AAA", "not base64"),
        (b64("garbage"), "not a <HOST>"),
        (b64("<VM><ID>1</ID></VM>"), "not a <HOST>"),
        (b64("<HOST><ID>x</ID><STATE>2</STATE></HOST>"), "no integer ID"),
        (b64("<HOST><ID>1</ID></HOST>"), "no integer ID"),
        (b64("<HOST><ID>1</ID><STATE>2</STATE>"), "not a <HOST>"),
        (b64(b"\xff\xfe<\x00H\x00"), "not a <HOST>"),
    ],
)
def test_malformed_payloads(body, says):
    with pytest.raises(BadRequest, match=says):
        host_from_event(body)


def test_entity_expansion_is_refused_at_once():
    started = time.perf_counter()
    with pytest.raises(BadRequest, match="not a <HOST>"):
        host_from_event(b64(BILLION_LAUGHS))
    assert time.perf_counter() - started < 10  # refused, not expanded (2 ms here)
