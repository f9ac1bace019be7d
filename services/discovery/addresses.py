"""Scrape addresses: host names, IP literals and PROMETHEUS_EXPORTER values, checked (pure).

Everything here comes from OpenNebula templates that users write, so each value is checked
before it becomes a Prometheus target: a value that is not an address is reported, never
passed on, and costs only the VM or host it came from.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from services.common.oned.models import Nic

# RFC 1123 host names (underscores tolerated: they exist in real inventories).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})\Z")
_SEPARATORS = re.compile(r"[\s,]+")
# A longer PROMETHEUS_EXPORTER is not a list of exporters; it is refused whole.
MAX_EXPORTER_TEXT = 4096
MAX_EXPORTERS = 64


def is_hostname(text: str) -> bool:
    """True for a DNS host name (or an IPv4 address, which has the same shape)."""
    if not text or len(text) > 253:
        return False
    return all(_LABEL.match(label) for label in text.rstrip(".").split("."))


def ip_version(text: str) -> int | None:
    """4 or 6 for an IP literal, None for anything else."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


def host_part(text: str) -> str | None:
    """The host of a target: an IPv4 or name as is, an IPv6 literal bracketed; else None."""
    text = text.strip()
    version = ip_version(text)
    if version == 6:
        return f"[{ipaddress.IPv6Address(text).compressed}]"
    if version == 4 or is_hostname(text):
        return text
    return None


def parse_port(text: str) -> int | None:
    """A TCP port 1-65535, or None."""
    if not _PORT.match(text):
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def default_address(context_ip: str, context_ip6: str, nics: Sequence[Nic]) -> str | None:
    """Where a bare PROMETHEUS_EXPORTER port listens: CONTEXT ETH0_IP, else [ETH0_IP6], else
    the first NIC's IP, else its IP6 (the order the seed meant, with its EHT0_IP typo fixed)."""
    candidates = [(context_ip, 4), (context_ip6, 6)]
    if nics:
        candidates += [(nics[0].ip, 4), (nics[0].ip6, 6)]
    for text, version in candidates:
        text = text.strip()
        if text and ip_version(text) == version:
            return host_part(text)
    return None


def exporter_targets(text: str, default: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(targets, problems) of a PROMETHEUS_EXPORTER value.

    Items are `PORT`, `HOST:PORT` or `[IPv6]:PORT`, separated by commas or blanks; a bare
    port listens on `default`. Each item that is none of these is a problem, not a target.
    """
    text = text.strip()
    if len(text) > MAX_EXPORTER_TEXT:
        return (), (f"PROMETHEUS_EXPORTER is {len(text)} characters long; not a list of ports",)
    items = [item for item in _SEPARATORS.split(text) if item]
    targets: list[str] = []
    problems: list[str] = []
    if len(items) > MAX_EXPORTERS:
        problems.append(
            f"PROMETHEUS_EXPORTER lists {len(items)} items; the first {MAX_EXPORTERS} are used"
        )
        items = items[:MAX_EXPORTERS]
    for item in items:
        target = _target(item, default)
        if target is None:
            problems.append(_why(item, default))
        elif target not in targets:
            targets.append(target)
    return tuple(targets), tuple(problems)


def _target(item: str, default: str | None) -> str | None:
    port = parse_port(item)
    if port is not None:
        return None if default is None else f"{default}:{port}"
    bracketed = _BRACKETED.match(item)
    if bracketed:
        host, port_text = bracketed.groups()
        port = parse_port(port_text)
        if port is None or ip_version(host) != 6:
            return None
        return f"{host_part(host)}:{port}"
    host, sep, port_text = item.rpartition(":")
    if not sep or ":" in host:
        return None  # no port, or an IPv6 address without brackets (ambiguous)
    port = parse_port(port_text)
    address = host_part(host)
    if port is None or address is None:
        return None
    return f"{address}:{port}"


def _why(item: str, default: str | None) -> str:
    shown = item if len(item) <= 80 else item[:80] + "..."
    if parse_port(item) is not None and default is None:
        return (
            f"PROMETHEUS_EXPORTER {shown!r}: a bare port, and the VM has no ETH0_IP, "
            "ETH0_IP6 or NIC address"
        )
    return f"PROMETHEUS_EXPORTER {shown!r} is not PORT, HOST:PORT or [IPv6]:PORT"
