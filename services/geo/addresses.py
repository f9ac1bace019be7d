"""Where a host's addresses come from, read from text that may be hostile (pure).

Three sources, asked in this order (SPEC section 8): the host template's `PUBLIC_IP`
(space-separated, for hosts behind NAT), the host's tunnel_agent `GET /v1/addresses`, DNS of
its HOSTNAME. Everything here turns what a source said into checked addresses or a clear
reason why not; nothing does I/O.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .public import IPAddress, not_public_reason

PUBLIC_IP = "PUBLIC_IP"
AGENT = "agent"
DNS = "dns"
SOURCES = (PUBLIC_IP, AGENT, DNS)

# More addresses than this in PUBLIC_IP or from one agent is not a host; the rest is dropped.
MAX_ADDRESSES = 1024
# A PUBLIC_IP longer than this is not a list of addresses (an address is 45 characters at most).
MAX_PUBLIC_IP_TEXT = 64 * 1024
# What the tunnel_agent says about one interface (IFNAMSIZ is 16; scope names are short).
_MAX_NAME = 64
_FAMILIES = {"inet": 4, "inet6": 6}
_SEPARATORS = re.compile(r"[\s,;]+")


class AddressesError(ValueError):
    """A source answered something that is not its documented format."""


@dataclasses.dataclass(frozen=True, slots=True)
class Address:
    """One address a source gave, and whether it is public (`why_not` says why not)."""

    address: IPAddress
    source: str
    interface: str = ""
    why_not: str | None = None

    @property
    def public(self) -> bool:
        return self.why_not is None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": str(self.address), "source": self.source}
        if self.interface:
            out["interface"] = self.interface
        out["public"] = self.public
        if self.why_not is not None:
            out["why_not_public"] = self.why_not
        return out


def checked(address: IPAddress, source: str, interface: str = "") -> Address:
    """An Address with its public verdict from the registry table."""
    return Address(address, source, interface, not_public_reason(address))


def parse_address(text: str) -> IPAddress:
    """An IPv4 or IPv6 address (a `%zone` suffix is dropped), or ValueError."""
    text = text.strip()
    if "%" in text:
        text = text.split("%", 1)[0]
    if len(text) > 45 or not text:
        raise ValueError(f"{text[:60]!r} is not an IP address")
    address = ipaddress.ip_address(text)
    return address


def parse_public_ip(text: str) -> tuple[list[Address], list[str]]:
    """PUBLIC_IP's addresses in the operator's order (duplicates once), and what was not one.

    Separated by blanks as the SPEC says; commas and semicolons are taken too, since that is
    what an operator typing a list by hand will write.
    """
    if len(text) > MAX_PUBLIC_IP_TEXT:
        return [], [f"PUBLIC_IP is {len(text)} characters long, over {MAX_PUBLIC_IP_TEXT}"]
    out: list[Address] = []
    bad: list[str] = []
    seen: set[IPAddress] = set()
    for token in _SEPARATORS.split(text.strip()):
        if not token:
            continue
        try:
            address = parse_address(token)
        except ValueError:
            bad.append(token[:60])
            continue
        if address not in seen and len(out) < MAX_ADDRESSES:
            seen.add(address)
            out.append(checked(address, PUBLIC_IP))
    return out, bad


def _text_field(entry: dict, key: str, index: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or len(value) > _MAX_NAME:
        raise AddressesError(f"addresses[{index}].{key} must be a short string, got {value!r:.80}")
    return value


def parse_agent_addresses(body: bytes | str) -> list[Address]:
    """The tunnel_agent's `/v1/addresses` reply, checked whole; AddressesError if any of it is off.

    The reply is `{"addresses": [{"interface", "address", "prefixlen", "family", "scope"}]}`.
    A reply that breaks that shape anywhere is refused whole: a half-broken agent is not
    trusted for the other half.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AddressesError(f"not JSON: {str(exc)[:120]}") from None
    except RecursionError:
        # json's decoder recurses per nesting level: `[[[[...` from a broken agent.
        raise AddressesError("not JSON: nested too deeply") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("addresses"), list):
        raise AddressesError('expected {"addresses": [...]}')
    entries = doc["addresses"]
    if len(entries) > MAX_ADDRESSES:
        raise AddressesError(f"{len(entries)} addresses, over {MAX_ADDRESSES}")
    out: list[Address] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AddressesError(f"addresses[{index}] must be an object")
        interface = _text_field(entry, "interface", index)
        family = entry.get("family")
        if family not in _FAMILIES:
            raise AddressesError(f"addresses[{index}].family must be inet or inet6")
        _text_field(entry, "scope", index)
        text = _text_field(entry, "address", index)
        try:
            address = parse_address(text)
        except ValueError:
            raise AddressesError(f"addresses[{index}].address is not an IP address") from None
        if address.version != _FAMILIES[family]:
            raise AddressesError(f"addresses[{index}]: {address} is not family {family}")
        prefixlen = entry.get("prefixlen")
        if (
            isinstance(prefixlen, bool)
            or not isinstance(prefixlen, int)
            or not 0 <= prefixlen <= address.max_prefixlen
        ):
            raise AddressesError(f"addresses[{index}].prefixlen is not 0-{address.max_prefixlen}")
        out.append(checked(address, AGENT, interface))
    return out


def sort_key(address: IPAddress) -> tuple[int, int]:
    """IPv4 before IPv6, then by value: the stable order of addresses nobody ordered."""
    return address.version, int(address)


def public_in_order(addresses: Iterable[Address], *, keep_order: bool) -> list[Address]:
    """The public addresses, each once; in their given order or in the stable sort order."""
    seen: set[IPAddress] = set()
    out = []
    for item in addresses:
        if item.public and item.address not in seen:
            seen.add(item.address)
            out.append(item)
    if not keep_order:
        out.sort(key=lambda item: sort_key(item.address))
    return out


def from_resolver(infos: Sequence[tuple[Any, ...]]) -> list[Address]:
    """The addresses of a `getaddrinfo` answer (5-tuples whose sockaddr starts with the host)."""
    out = []
    seen: set[IPAddress] = set()
    for info in infos[:MAX_ADDRESSES]:
        try:
            address = parse_address(str(info[4][0]))
        except (ValueError, IndexError, TypeError):
            continue
        if address not in seen:
            seen.add(address)
            out.append(checked(address, DNS))
    return out
