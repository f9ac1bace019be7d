"""OpenNebula's template syntax (hook files, oned.conf), read in one linear pass (pure).

`NAME = value`, `NAME = "quoted value"` (a `\\"` inside is a quote), `NAME = [ K = v, ... ]`
and `# comments`, as oned's template_parser reads them: names are case-insensitive and kept
upper-cased, a name may repeat (oned.conf has many TM_MAD_CONF blocks).
"""

from __future__ import annotations

import dataclasses
import re

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_STRING = r'"((?:[^"\\]|\\.)*)"'
_BARE = r"([^\s\",\[\]#]+)"
_BLANK = re.compile(r"(?:\s+|#[^\n]*)*")
_ATTRIBUTE = re.compile(rf"({_NAME})\s*=\s*(?:{_STRING}|{_BARE}|(\[))")
_PAIR = re.compile(rf"({_NAME})\s*=\s*(?:{_STRING}|{_BARE})")
_ESCAPED_QUOTE = re.compile(r'\\"')


class TemplateSyntaxError(ValueError):
    """Text oned would not parse as a template; the message names the line."""


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One attribute: a single value (str) or a vector (dict of upper-cased names)."""

    name: str
    value: str | dict[str, str]
    line: int


def _unquote(quoted: str | None, bare: str | None) -> str:
    if quoted is not None:
        return _ESCAPED_QUOTE.sub('"', quoted)
    return bare or ""


class _Lines:
    """Line numbers of positions met in increasing order, counted once (linear overall)."""

    def __init__(self, text: str) -> None:
        self._text, self._pos, self._line = text, 0, 1

    def at(self, pos: int) -> int:
        if pos > self._pos:
            self._line += self._text.count("\n", self._pos, pos)
            self._pos = pos
        return self._line


def parse_template(text: str) -> list[Attribute]:
    """Every attribute of `text` in order; TemplateSyntaxError at the first thing that is not."""
    out: list[Attribute] = []
    lines = _Lines(text)
    pos = _BLANK.match(text, 0).end()  # type: ignore[union-attr]
    while pos < len(text):
        match = _ATTRIBUTE.match(text, pos)
        if match is None:
            snippet = text[pos : pos + 40].splitlines()[0]
            raise TemplateSyntaxError(f"line {lines.at(pos)}: expected NAME = value at {snippet!r}")
        name, line = match.group(1).upper(), lines.at(pos)
        if match.group(4) is None:
            out.append(Attribute(name, _unquote(match.group(2), match.group(3)), line))
            pos = _BLANK.match(text, match.end()).end()  # type: ignore[union-attr]
            continue
        vector: dict[str, str] = {}
        cursor = _BLANK.match(text, match.end()).end()  # type: ignore[union-attr]
        while True:
            if text.startswith("]", cursor):
                cursor += 1
                break
            pair = _PAIR.match(text, cursor)
            if pair is None:
                raise TemplateSyntaxError(
                    f"line {lines.at(cursor)}: expected KEY = value or ] in {name}"
                )
            vector.setdefault(pair.group(1).upper(), _unquote(pair.group(2), pair.group(3)))
            cursor = _BLANK.match(text, pair.end()).end()  # type: ignore[union-attr]
            if text.startswith(",", cursor):
                cursor = _BLANK.match(text, cursor + 1).end()  # type: ignore[union-attr]
            elif not text.startswith("]", cursor):
                raise TemplateSyntaxError(f"line {lines.at(cursor)}: expected , or ] in {name}")
        out.append(Attribute(name, vector, line))
        pos = _BLANK.match(text, cursor).end()  # type: ignore[union-attr]
    return out
