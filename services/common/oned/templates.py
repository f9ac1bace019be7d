"""Templates the services send to oned, as XML (pure).

oned reads a template given as XML as well as in its `KEY = "value"` syntax
(`Template::parse_str_or_xml`); XML has one well-defined escaping, where the text syntax has
none for a value that ends in a backslash. pyone sends dicts the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.sax.saxutils import escape

# oned's attribute names are [[:alnum:]_]+ (template_parser.l) and are upper-cased on the way
# in; as XML element names they may not start with a digit.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Characters XML 1.0 cannot carry at all (escaping does not help).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class TemplateValueError(ValueError):
    """An attribute name or value oned cannot store."""


def template_xml(attrs: Mapping[str, str], root: str = "TEMPLATE") -> str:
    """`<TEMPLATE><NAME>value</NAME>...</TEMPLATE>`; TemplateValueError for what cannot be."""
    parts = [f"<{root}>"]
    for name, value in attrs.items():
        if not _NAME.fullmatch(name):
            raise TemplateValueError(f"{name!r} is not an OpenNebula attribute name")
        text = str(value)
        if _NOT_XML.search(text):
            raise TemplateValueError(f"the value of {name} holds characters XML cannot carry")
        upper = name.upper()
        parts.append(f"<{upper}>{escape(text)}</{upper}>")
    parts.append(f"</{root}>")
    return "".join(parts)
