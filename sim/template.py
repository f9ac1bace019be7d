"""OpenNebula templates: parse `KEY = "value"` / `VEC = [ A = "1" ]` text or XML, render XML.

oned keeps a template as a multimap sorted by attribute name, with vector attributes as maps
sorted by key, so its XML lists attributes alphabetically; `Template.to_xml` does the same.
Names are upper-cased on the way in, as oned's Attribute constructor does.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

Value = str | dict[str, str]


class TemplateError(ValueError):
    """A template that oned's parser would reject; the message says where."""


@dataclass
class Template:
    """An ordered list of single (`str`) and vector (`dict`) attributes."""

    attrs: list[tuple[str, Value]] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> Template:
        """Build from a mapping; lists give repeated attributes, dicts vector attributes."""
        tmpl = cls()
        for name, value in data.items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                tmpl.add(name, _coerce(item))
        return tmpl

    def add(self, name: str, value: Value) -> None:
        self.attrs.append((name.upper(), value))

    def get(self, name: str) -> Value | None:
        """The first attribute called `name`, or None."""
        name = name.upper()
        for key, value in self.attrs:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[Value]:
        name = name.upper()
        return [value for key, value in self.attrs if key == name]

    def get_str(self, name: str, default: str = "") -> str:
        value = self.get(name)
        return value if isinstance(value, str) else default

    def erase(self, name: str) -> None:
        name = name.upper()
        self.attrs = [(k, v) for k, v in self.attrs if k != name]

    def replace(self, name: str, value: Value) -> None:
        """Set a single occurrence of `name`, dropping any others."""
        self.erase(name)
        self.add(name, value)

    def merge(self, other: Template) -> None:
        """oned's Template::merge: attributes named in `other` replace ours; empty vectors drop."""
        for name in {k for k, _ in other.attrs}:
            self.erase(name)
        for name, value in other.attrs:
            if isinstance(value, dict) and not value:
                continue
            self.attrs.append((name, dict(value) if isinstance(value, dict) else value))

    def copy(self) -> Template:
        return Template([(k, dict(v) if isinstance(v, dict) else v) for k, v in self.attrs])

    def to_dict(self) -> dict[str, Value | list[Value]]:
        """JSON-friendly view: repeated attributes become lists."""
        out: dict[str, Value | list[Value]] = {}
        for name, value in self.attrs:
            if name in out:
                prev = out[name]
                out[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
            else:
                out[name] = value
        return out

    def to_xml(self, root: str = "TEMPLATE") -> str:
        """`<ROOT>...</ROOT>` with attributes sorted by name like oned (stable for repeats)."""
        if not self.attrs:
            return f"<{root}/>"
        return f"<{root}>{''.join(render_attrs(self.sorted()))}</{root}>"

    def sorted(self) -> list[tuple[str, Value]]:
        return sorted(self.attrs, key=lambda kv: kv[0])

    def __iter__(self) -> Iterator[tuple[str, Value]]:
        return iter(self.attrs)

    def __len__(self) -> int:
        return len(self.attrs)

    def renders_as_xml(self) -> bool:
        """False when a name the parser accepts (`1A = x`) cannot be an XML element name."""
        for name, value in self.attrs:
            keys = [name, *value] if isinstance(value, dict) else [name]
            if any(not _XML_NAME.match(key) for key in keys):
                return False
        return True


def escape(text: str) -> str:
    """XML text escaping (one_util::escape_xml), fast path when nothing needs it."""
    if "&" in text or "<" in text or ">" in text:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def render_attrs(attrs: Iterable[tuple[str, Value]]) -> Iterator[str]:
    """XML of attributes in the given order; vector keys sorted as oned's std::map does."""
    for name, value in attrs:
        if isinstance(value, dict):
            inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in sorted(value.items()))
            yield f"<{name}>{inner}</{name}>"
        else:
            yield f"<{name}>{escape(value)}</{name}>"


def _coerce(value: object) -> Value:
    if isinstance(value, Mapping):
        return {str(k).upper(): _scalar(v) for k, v in value.items()}
    return _scalar(value)


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "YES" if value else "NO"
    if value is None:
        return ""
    return str(value)


# ---------------------------------------------------------------------------------------------
# Parsing: the grammar of src/parsers/template_parser.l and template_syntax.y
# ---------------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9_]+")
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_BLANK = " \t"
_UNQUOTED_STOP = set("=#,[]\n \t")


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> TemplateError:
        line = self.text.count("\n", 0, self.pos) + 1
        col = self.pos - (self.text.rfind("\n", 0, self.pos) + 1) + 1
        return TemplateError(f"syntax error, {message} at line {line}, column {col}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def skip_space_and_comments(self) -> None:
        while True:
            self.skip(_BLANK + "\n\r")
            if self.peek() == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end + 1
                continue
            return

    def name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if not match:
            found = self.peek() or "end of input"
            raise self.error(f"unexpected {found!r}, expecting an attribute name")
        self.pos = match.end()
        return match.group(0).upper()

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            found = self.peek() or "end of input"
            raise self.error(f"unexpected {found!r}, expecting {what}")
        self.pos += 1

    def value(self) -> str:
        if self.peek() == '"':
            self.pos += 1
            out = []
            while True:
                if self.pos >= len(self.text):
                    raise self.error("unterminated quoted value")
                char = self.text[self.pos]
                if char == "\\" and self.text[self.pos + 1 : self.pos + 2] == '"':
                    out.append('"')
                    self.pos += 2
                    continue
                if char == '"':
                    self.pos += 1
                    return "".join(out)
                out.append(char)
                self.pos += 1
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _UNQUOTED_STOP:
            self.pos += 1
        if self.pos == start:
            found = self.peek() or "end of input"
            raise self.error(f"unexpected {found!r}, expecting a value")
        return self.text[start : self.pos]


def parse_template(text: str) -> Template:
    """Parse oned template text, or XML when it starts with `<`; raise TemplateError."""
    if text.lstrip().startswith("<"):
        return parse_template_xml(text)
    reader = _Reader(text)
    tmpl = Template()
    while True:
        reader.skip_space_and_comments()
        if reader.pos >= len(reader.text):
            return tmpl
        name = reader.name()
        reader.skip(_BLANK)
        reader.expect("=", "'='")
        reader.skip(_BLANK)
        char = reader.peek()
        if char in ("\n", "\r", ""):
            tmpl.add(name, "")
            continue
        if char == "[":
            reader.pos += 1
            tmpl.add(name, _vector(reader))
            continue
        tmpl.add(name, reader.value())


def _vector(reader: _Reader) -> dict[str, str]:
    values: dict[str, str] = {}
    reader.skip(_BLANK + "\n\r")
    if reader.peek() == "]":
        reader.pos += 1
        return values
    while True:
        reader.skip(_BLANK + "\n\r")
        key = reader.name()
        reader.skip(_BLANK)
        reader.expect("=", "'='")
        reader.skip(_BLANK)
        # std::map::insert keeps the first value of a repeated key
        values.setdefault(key, reader.value())
        reader.skip(_BLANK + "\n\r")
        if reader.peek() == ",":
            reader.pos += 1
            continue
        reader.expect("]", "',' or ']'")
        return values


def parse_template_xml(text: str) -> Template:
    """A `<TEMPLATE>` document: leaf children are single attributes, others vectors."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise TemplateError(f"malformed XML template: {exc}") from None
    tmpl = Template()
    for child in root:
        if len(child):
            tmpl.add(child.tag, {sub.tag.upper(): sub.text or "" for sub in child})
        else:
            tmpl.add(child.tag, child.text or "")
    return tmpl
