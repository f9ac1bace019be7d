"""Streaming reader of oned's XML-RPC replies (pure, no I/O).

oned answers `[ok, body, error code, ...]`, where body is the whole pool as an escaped string
(reads) or an integer such as the object's id (writes).
The standard library's unmarshaller takes a callback per text fragment between entities, which
costs seconds on a 50 MB pool; expat with text buffering hands over megabyte pieces, and the body
is passed on to the pool reader as it arrives, so the reply is parsed in one pass.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any, Protocol
from xml.parsers import expat

from .models import Pool, to_int

# The value path of `[ok, body, code]` inside a methodResponse.
_DATA_PATH = ("methodResponse", "params", "param", "value", "array", "data")
_BUFFER = 1 << 20


class RpcFormatError(ValueError):
    """The reply is not an XML-RPC methodResponse of oned's shape."""


class RpcRefused(Exception):
    """oned answered but refused the call (`[false, message, code]` or an XML-RPC fault)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class BodySink(Protocol):
    def feed(self, data: str) -> None: ...

    def close(self) -> Pool: ...


def request_body(method: str, *params: object) -> bytes:
    """The XML-RPC request body for `method(params)` (the session string comes first)."""
    return xmlrpc.client.dumps(tuple(params), methodname=method, allow_none=False).encode()


_SCALARS = {"int": int, "i4": int, "i8": int, "boolean": lambda t: t.strip() == "1"}


class RpcReplyReader:
    """Feed the reply's bytes; `close()` returns the body or raises RpcRefused.

    With a `sink`, the body must be a string and is streamed into it (`close()` returns what
    the sink makes of it); without one, the body is returned as a value: `int` for oned's
    integer replies, `bool`, or `str`.
    """

    def __init__(self, method: str, sink: BodySink | None = None) -> None:
        self.method = method
        self._sink = sink
        self._parser = expat.ParserCreate()
        self._parser.buffer_text = True
        self._parser.buffer_size = _BUFFER
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._parser.CharacterDataHandler = self._data
        self._stack: list[str] = []
        self._index = -1  # which item of [ok, body, code] is open
        self._ok: bool | None = None
        self._ok_text: list[str] = []
        self._message: list[str] = []  # the body when oned refused
        self._bare: list[str] = []  # a body given as <value>text</value> without <string>
        self._body_typed = False
        self._body_type = "string"
        self._scalar: list[str] = []  # the body when there is no sink
        self._code_text: list[str] = []
        self._fault = False
        self._fault_member: str | None = None
        self._fault_parts: dict[str, list[str]] = {}

    def _in_data(self) -> bool:
        return tuple(self._stack[:6]) == _DATA_PATH

    def _start(self, name: str, _attrs: dict) -> None:
        self._stack.append(name)
        depth = len(self._stack)
        if depth == 2 and name == "fault":
            self._fault = True
        elif depth == 7 and name == "value" and self._in_data():
            self._index += 1
            if self._index == 1 and self._ok is None:
                self._ok = "".join(self._ok_text).strip() == "1"
        elif depth == 8 and self._index == 1 and self._in_data():
            self._body_typed = True
            self._body_type = name
            if name != "string" and (self._sink is not None or name not in _SCALARS):
                raise RpcFormatError(f"{self.method}: reply body is <{name}>, expected a string")

    def _end(self, name: str) -> None:
        depth = len(self._stack)
        if depth == 7 and name == "value" and self._index == 1 and self._in_data():
            if not self._body_typed and self._ok:
                self._body("".join(self._bare))
        self._stack.pop()

    def _data(self, text: str) -> None:
        depth = len(self._stack)
        if self._fault:
            self._fault_text(text)
            return
        if depth < 7 or not self._in_data():
            return
        if self._index == 0:
            self._ok_text.append(text)
        elif self._index == 1:
            if depth == 8:
                if self._ok:
                    self._body(text)
                else:
                    self._message.append(text)
            elif depth == 7:
                (self._bare if self._ok else self._message).append(text)
        elif self._index == 2:
            self._code_text.append(text)

    def _body(self, text: str) -> None:
        if self._sink is not None:
            self._sink.feed(text)
        else:
            self._scalar.append(text)

    def _fault_text(self, text: str) -> None:
        stack = self._stack
        if stack[-1] == "name" and "member" in stack:
            self._fault_member = text.strip()
        elif self._fault_member and "member" in stack and stack[-1] in ("string", "int", "i4"):
            self._fault_parts.setdefault(self._fault_member, []).append(text)

    def feed(self, data: bytes) -> None:
        """Parse the next piece of the reply."""
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as exc:
            raise RpcFormatError(f"{self.method}: malformed XML-RPC reply: {exc}") from None

    def close(self) -> Any:
        """Finish the reply: the parsed body, RpcRefused, or RpcFormatError."""
        try:
            self._parser.Parse(b"", True)
        except expat.ExpatError as exc:
            raise RpcFormatError(f"{self.method}: malformed XML-RPC reply: {exc}") from None
        if self._fault:
            message = "".join(self._fault_parts.get("faultString", [])).strip()
            code = to_int("".join(self._fault_parts.get("faultCode", [])))
            raise RpcRefused(f"{self.method}: XML-RPC fault: {message or 'no message'}", code)
        if self._ok is None:
            raise RpcFormatError(f"{self.method}: reply is not oned's [ok, body, code] array")
        if not self._ok:
            message = "".join(self._message).strip() or "refused without a message"
            raise RpcRefused(f"{self.method}: {message}", to_int("".join(self._code_text)))
        if self._sink is not None:
            return self._sink.close()
        text = "".join(self._scalar)
        convert = _SCALARS.get(self._body_type)
        if convert is None:
            return text
        try:
            return convert(text)
        except ValueError:
            raise RpcFormatError(f"{self.method}: reply body {text[:40]!r} is no integer") from None
