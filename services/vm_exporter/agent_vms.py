"""Our agent's `GET /api/v1/vms` JSON, read incrementally as it arrives (pure).

SPEC section 5 fixes the reply: `{"timestamp", "host": {"power_uw", "energy_uj"},
"vms": [{"name", "one_vm_id", "pid", "helper_pids", "power_uw", "energy_uj"}]}`, with
`power_uw` null until the agent has two samples. A reply that breaks that shape anywhere is
rejected whole (`ReadingError`): the host is then reported down (unknown), never as zeros.

Why not `json.loads(body)`: on a 15 MB reply (legal: 16 MiB is the limit) it holds the event
loop, and the GIL, for 0.2 s (VM entries) to 0.7 s (a list of floats) in one C call, measured
on the development machine; a thread does not help, since that one call never lets the GIL go.
This reader walks the top-level object and the `vms` list itself and hands each value
(one VM entry, the host object, ...) to the json module's C scanner, so the work per `feed` is
bounded by the bytes fed plus one value, and no value may exceed `MAX_VALUE` characters.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from .readings import (
    AGENT,
    HostReading,
    ReadingBuilder,
    ReadingError,
    energy_uj,
    power_uw,
    read_whole,
)

# No value of the documented shape comes near this (a VM entry is ~150 characters); the
# top-level object and the `vms` list are walked here, so only they can be larger.
MAX_VALUE = 64 * 1024
# Bytes gathered before they are parsed: a trickling agent's one-byte chunks are not each
# worth a pass over the pending text.
_STEP = 64 * 1024
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
# OpenNebula ids are 32-bit; anything past this is no VM of ours.
_MAX_ID = 2**31 - 1

# Where the walk is: the grammar of the reply's outer two levels.
_START, _FIRST_KEY, _KEY, _COLON, _VALUE, _AFTER_VALUE = range(6)
_VMS_FIRST, _VMS_ITEM, _VMS_AFTER, _END = range(6, 10)


class _NeedMore(Exception):
    """The pending text ends inside the next token: wait for more bytes."""


def _vm_id(entry: dict) -> int | None:
    vm_id = entry.get("one_vm_id")
    if vm_id is None:
        return None  # a QEMU guest that is not an OpenNebula VM
    if isinstance(vm_id, bool) or not isinstance(vm_id, int) or not 0 <= vm_id <= _MAX_ID:
        raise ReadingError(f"one_vm_id must be a non-negative integer, got {vm_id!r:.40}")
    return vm_id


def _pid(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_ID
    return value if ok else None


class AgentVmsReader:
    """Feed the reply's bytes as they arrive (`feed`), then `close()` for the HostReading."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._text = ""
        self._pos = 0
        self._state = _START
        self._key = ""
        self._seen_keys: set[str] = set()
        self._got_host = self._got_vms = False
        self._reading = ReadingBuilder(AGENT)

    def feed(self, data: bytes) -> None:
        """Parse what `data` completes; ReadingError as soon as the reply breaks the shape."""
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= _STEP:
            self._parse(final=False)

    def close(self) -> HostReading:
        """The whole reply has arrived: its HostReading, or ReadingError."""
        self._parse(final=True)
        if self._state != _END:
            raise ReadingError("the reply ends before its JSON object does")
        if not (self._got_host and self._got_vms):
            raise ReadingError('expected "host" (object) and "vms" (list)')
        return self._reading.build()

    def _parse(self, final: bool) -> None:
        data = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        try:
            decoded = self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            raise ReadingError(f"not JSON: {exc}") from None
        # What is left is at most one unfinished value (< MAX_VALUE): copying it is bounded.
        self._text = self._text[self._pos :] + decoded
        self._pos = 0
        try:
            while self._step(final):
                pass
        except _NeedMore:
            pass

    def _skip_ws(self) -> int:
        self._pos = _WS.match(self._text, self._pos).end()
        if self._pos == len(self._text):
            raise _NeedMore
        return self._pos

    def _peek(self, final: bool, what: str) -> str:
        """The next non-blank character, not consumed."""
        try:
            return self._text[self._skip_ws()]
        except _NeedMore:
            if final:
                raise ReadingError(f"the reply ends where {what} should be") from None
            raise

    def _char(self, final: bool, expected: str, what: str) -> str:
        """The next non-blank character, which must be one of `expected`; consumed."""
        char = self._peek(final, what)
        if char not in expected:
            raise ReadingError(f"not JSON of the agent's shape: {what} expected at {char!r}")
        self._pos += 1
        return char

    def _value(self, final: bool) -> Any:
        """The next JSON value, decoded by the json module within MAX_VALUE characters."""
        try:
            start = self._skip_ws()
        except _NeedMore:
            if final:
                raise ReadingError("the reply ends where a value should be") from None
            raise
        text = self._text
        try:
            value, end = _DECODER.raw_decode(text, start)
        except RecursionError:
            # The json module recurses per nesting level: `[[[[...` from a broken agent.
            raise ReadingError("not JSON: nested too deeply") from None
        except json.JSONDecodeError as exc:
            if not final and len(text) - start < MAX_VALUE:
                raise _NeedMore from None  # the value may go on in the next bytes
            if len(text) - start >= MAX_VALUE:
                too_long = f"a value is not complete within {MAX_VALUE} characters"
                raise ReadingError(too_long) from None
            raise ReadingError(f"not JSON: {exc.msg}") from None
        except ValueError as exc:  # an integer of more than 4,300 digits
            raise ReadingError(f"not JSON: {exc}") from None
        if end == len(text) and not final:
            raise _NeedMore  # a number at the end may have more digits to come
        if end - start > MAX_VALUE:
            raise ReadingError(f"a value is over {MAX_VALUE} characters")
        self._pos = end
        return value

    def _step(self, final: bool) -> bool:
        """Advance over one token of the outer grammar; False once the reply is done."""
        state = self._state
        if state == _START:
            self._char(final, "{", "a JSON object")
            self._state = _FIRST_KEY
        elif state in (_FIRST_KEY, _KEY):
            if state == _FIRST_KEY and self._peek(final, "a key or '}'") == "}":
                self._pos += 1
                self._state = _END
                return True
            key = self._value(final)
            if not isinstance(key, str):
                raise ReadingError("not JSON: an object key must be a string")
            if key in self._seen_keys:
                raise ReadingError(f"key {key!r:.40} appears twice")
            self._seen_keys.add(key)
            self._key, self._state = key, _COLON
        elif state == _COLON:
            self._char(final, ":", "':'")
            self._state = _VALUE
        elif state == _VALUE:
            if self._key == "vms":
                self._char(final, "[", '"vms" as a list')
                self._got_vms = True
                self._state = _VMS_FIRST
                return True
            value = self._value(final)
            if self._key == "host":
                self._host(value)
            self._state = _AFTER_VALUE
        elif state == _AFTER_VALUE:
            self._state = _KEY if self._char(final, ",}", "',' or '}'") == "," else _END
        elif state == _VMS_FIRST:
            if self._peek(final, "a VM entry or ']'") == "]":
                self._pos += 1
                self._state = _AFTER_VALUE
            else:
                self._state = _VMS_ITEM
        elif state == _VMS_ITEM:
            if not self._vm_entries():
                self._vm(self._value(final))  # the general path: the last entry, or an error
                self._state = _VMS_AFTER
        elif state == _VMS_AFTER:
            more = self._char(final, ",]", "',' or ']'") == ","
            self._state = _VMS_ITEM if more else _AFTER_VALUE
        else:  # _END: only blanks may follow the object
            if _WS.match(self._text, self._pos).end() != len(self._text):
                raise ReadingError("not JSON: extra data after the object")
            self._pos = len(self._text)
            return False
        return True

    def _vm_entries(self) -> bool:
        """Read complete `entry,` pairs in one tight loop (most of a large reply); True when
        it got past the list's `]`. Whatever it cannot settle at once, it leaves to `_step`."""
        text, pos, size = self._text, self._pos, len(self._text)
        skip, decode = _WS.match, _DECODER.raw_decode
        while True:
            start = skip(text, pos).end()
            try:
                value, end = decode(text, start)
            except (ValueError, RecursionError):
                return False  # `_value` decodes it again: waits for more, or says what is wrong
            if end - start > MAX_VALUE:
                return False
            after = skip(text, end).end()
            if after == size:
                return False  # the separator has not arrived: let `_step` wait for it
            self._vm(value)
            pos = self._pos = after + 1
            separator = text[after]
            if separator == "]":
                self._state = _AFTER_VALUE
                return True
            if separator != ",":
                raise ReadingError(f"not JSON: ',' or ']' expected at {separator!r}")

    def _host(self, host: Any) -> None:
        if not isinstance(host, dict):
            raise ReadingError('expected "host" (object) and "vms" (list)')
        self._got_host = True
        power = host.get("power_uw")
        energy = host.get("energy_uj")
        try:
            self._reading.host_power_uw = None if power is None else power_uw(power)
            self._reading.host_energy_uj = None if energy is None else energy_uj(energy)
        except ReadingError as exc:
            raise ReadingError(f"host: {exc}") from None

    def _vm(self, entry: Any) -> None:
        if not isinstance(entry, dict):
            raise ReadingError("every item of vms must be an object")
        vm_id = _vm_id(entry)
        if vm_id is None:
            return
        power = entry.get("power_uw")
        energy = entry.get("energy_uj")
        try:
            self._reading.add_vm(
                vm_id,
                None if power is None else power_uw(power),
                None if energy is None else energy_uj(energy),
                _pid(entry.get("pid")),
            )
        except ReadingError as exc:
            raise ReadingError(f"VM {vm_id}: {exc}") from None


def parse_agent_vms(body: bytes | str) -> HostReading:
    """A whole `/api/v1/vms` reply as a HostReading, or ReadingError saying what is wrong."""
    return read_whole(AgentVmsReader(), body, _STEP)
