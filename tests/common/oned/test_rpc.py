"""The XML-RPC reply reader on oned-shaped replies (made by the stdlib's marshaller)."""

from __future__ import annotations

import xmlrpc.client

import pytest

from services.common.oned.pools import PoolFormatError, parse_vm_pool, vm_pool_reader
from services.common.oned.rpc import RpcFormatError, RpcRefused, RpcReplyReader, request_body
from testkit import ROOT

VM_XML = (ROOT / "tests" / "fixtures" / "one" / "vmpool_infoextended.xml").read_text()


def _reply(*values: object) -> bytes:
    return xmlrpc.client.dumps((list(values),), methodresponse=True).encode()


def _read(data: bytes, piece: int | None = None):
    reader = RpcReplyReader("one.vmpool.infoextended", vm_pool_reader())
    piece = piece or len(data)
    for start in range(0, len(data), piece):
        reader.feed(data[start : start + piece])
    return reader.close()


@pytest.mark.parametrize("piece", [None, 1, 3, 1000])
def test_success_reply_streams_the_body_into_the_pool_reader(piece):
    pool = _read(_reply(True, VM_XML, 0), piece)
    assert pool.items == parse_vm_pool(VM_XML).items


def test_request_is_oned_call_with_session_first():
    params, method = xmlrpc.client.loads(
        request_body("one.vmpool.infoextended", "oneadmin:pw", -2, -1, -1, -1)
    )
    assert method == "one.vmpool.infoextended" and params == ("oneadmin:pw", -2, -1, -1, -1)


def test_refusal_carries_oned_message_and_code():
    reply = _reply(
        False, "[one.vmpool.infoextended] User couldn't be authenticated, aborting call.", 256
    )
    with pytest.raises(RpcRefused, match="couldn't be authenticated") as info:
        _read(reply)
    assert info.value.code == 256


def test_fault_is_a_refusal():
    reply = xmlrpc.client.dumps(xmlrpc.client.Fault(-501, "No such method"), methodresponse=True)
    with pytest.raises(RpcRefused, match="No such method") as info:
        _read(reply.encode())
    assert info.value.code == -501


def test_untyped_string_value_is_accepted():
    reply = (
        b"<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
        b"<value><boolean>1</boolean></value><value>&lt;VM_POOL/&gt;</value>"
        b"<value><i4>0</i4></value></data></array></value></param></params></methodResponse>"
    )
    assert _read(reply).items == ()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"<html>502 Bad Gateway</html>", RpcFormatError),
        (b"not xml", RpcFormatError),
        (_reply(True, 5, 0), RpcFormatError),
        (_reply(True, "<HOST_POOL/>", 0), PoolFormatError),
        (_reply(True, "<VM_POOL><VM>", 0), PoolFormatError),
        (_reply(True, VM_XML, 0)[:-40], RpcFormatError),
    ],
)
def test_unusable_replies_are_errors(reply, error):
    with pytest.raises(error):
        _read(reply)
