"""Hook payloads down to an object id: anything else is a 400 that names the problem (pure)."""

from __future__ import annotations

import base64

import pytest

from services.discovery.events import BadEvent, event_id


def b64(xml: str) -> bytes:
    return base64.b64encode(xml.encode())


def test_a_vm_and_a_host_payload_give_their_ids() -> None:
    assert event_id("vm", b64("<VM><ID>42</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>")) == 42
    # Wrapped base64 (76-column lines) and a trailing newline are still the same payload.
    wrapped = base64.encodebytes(b"<HOST><ID>7</ID><STATE>2</STATE></HOST>" + b" " * 80)
    assert event_id("host", wrapped + b"\n") == 7


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("vm", b"", "empty body"),
        ("vm", b"   \n", "empty body"),
        ("vm", b"not base64!", "not base64"),
        ("vm", b"QUJ", "not base64"),
        ("vm", b64("<VM><ID>1</ID>"), "not a <VM> document"),
        ("vm", b64("plain text"), "not a <VM> document"),
        ("vm", b64("<HOST><ID>1</ID><STATE>2</STATE></HOST>"), "expected <VM>, got <HOST>"),
        ("host", b64("<VM><ID>1</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>"), "<HOST>"),
        ("vm", b64("<VM><ID>x</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>"), "integer ID"),
        ("vm", b64("<VM><ID>-4</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>"), "negative"),
        ("host", b64("<HOST><NAME>h</NAME></HOST>"), "integer ID and STATE"),
        (
            "vm",
            b64('<!DOCTYPE VM [<!ENTITY x SYSTEM "file:///etc/passwd">]><VM><ID>&x;</ID></VM>'),
            "<VM>",
        ),
    ],
)
def test_bad_payloads_are_refused_with_the_reason(kind, body, message) -> None:
    with pytest.raises(BadEvent, match=message.replace("[", r"\[")):
        event_id(kind, body)
