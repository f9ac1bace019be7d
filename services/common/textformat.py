"""Pieces of the Prometheus text format for services that pre-render large families.

rapl_agent (5,000 processes) and vm_exporter (10,000 VMs) render their biggest families once
per snapshot instead of through prometheus-client on every scrape; they share these pieces so
the escaping and number formatting cannot drift apart. Their tests prove the text parses to
the same samples as prometheus-client's own rendering.
"""

from __future__ import annotations

Number = int | float


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, newline and quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def number(value: Number) -> str:
    """A sample value: integers as digits, floats as Python writes them (valid Go floats)."""
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def header(name: str, kind: str, doc: str) -> str:
    """The `# HELP` and `# TYPE` lines of a family."""
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"
