"""Which addresses are public: globally routable unicast per IANA's registries (pure).

A host's location is only worth looking up for an address the rest of the internet can reach;
a private, shared (CGNAT), documentation or translation address says nothing about where the
host is. The rules come from IANA's IPv4 and IPv6 Special-Purpose Address Registries (their
"Globally Reachable" column) plus the two address-space facts those registries leave out:
IPv4 multicast (RFC 5771) and IPv6 space outside 2000::/3, which IANA has not allocated for
unicast (RFC 4291). The most specific entry containing an address decides, as the registry's
footnotes say (192.0.0.9/32 is reachable inside the unreachable 192.0.0.0/24). An entry whose
column says N/A (6to4, Teredo, the retired ORCHID block) is not public: such an address is a
tunnel's, not the host's own.

`ipaddress.is_global` is not used: its answer changed within patch releases (the
CVE-2024-4032 fix in 3.11.10 and 3.12.4) and it still differs from the registries for some
blocks (3fff::/20, 5f00::/16, 64:ff9b:1::/48 at the time of writing).
"""

from __future__ import annotations

import bisect
import dataclasses
import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One registry entry: its block, name, reference and whether it is globally reachable."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    name: str
    reference: str
    reachable: bool

    @property
    def reason(self) -> str:
        """How a log line or an API reply names this entry: `Shared Address Space (RFC 6598)`."""
        return f"{self.name} ({self.reference})"


def _entries(rows: Iterable[tuple[str, str, str, bool]]) -> tuple[Entry, ...]:
    return tuple(Entry(ipaddress.ip_network(n), name, ref, ok) for n, name, ref, ok in rows)


# IANA IPv4 Special-Purpose Address Registry (iana-ipv4-special-registry, 2025 edition):
# block, name, RFC, "Globally Reachable" (N/A written as False, see the module docstring).
IPV4: tuple[Entry, ...] = _entries(
    [
        ("0.0.0.0/8", '"This network"', "RFC 791", False),
        ("0.0.0.0/32", '"This host on this network"', "RFC 1122", False),
        ("10.0.0.0/8", "Private-Use", "RFC 1918", False),
        ("100.64.0.0/10", "Shared Address Space", "RFC 6598", False),
        ("127.0.0.0/8", "Loopback", "RFC 1122", False),
        ("169.254.0.0/16", "Link Local", "RFC 3927", False),
        ("172.16.0.0/12", "Private-Use", "RFC 1918", False),
        ("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", False),
        ("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False),
        ("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False),
        ("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True),
        ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
        ("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880", False),
        ("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880", False),
        ("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False),
        ("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
        ("192.52.193.0/24", "AMT", "RFC 7450", True),
        ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", False),
        ("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", False),
        ("192.168.0.0/16", "Private-Use", "RFC 1918", False),
        ("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True),
        ("198.18.0.0/15", "Benchmarking", "RFC 2544", False),
        ("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False),
        ("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False),
        ("240.0.0.0/4", "Reserved", "RFC 1112", False),
        ("255.255.255.255/32", "Limited Broadcast", "RFC 919", False),
        # Not special-purpose but not unicast: IANA IPv4 Multicast Address Space Registry.
        ("224.0.0.0/4", "Multicast", "RFC 5771", False),
    ]
)

# IANA IPv6 Special-Purpose Address Registry (iana-ipv6-special-registry, 2025 edition), and
# the IPv6 Address Space registry: only 2000::/3 is allocated as global unicast.
IPV6: tuple[Entry, ...] = _entries(
    [
        ("::/0", "Reserved by IETF (outside global unicast 2000::/3)", "RFC 4291", False),
        ("2000::/3", "Global Unicast", "RFC 4291", True),
        ("ff00::/8", "Multicast", "RFC 4291", False),
        ("::1/128", "Loopback Address", "RFC 4291", False),
        ("::/128", "Unspecified Address", "RFC 4291", False),
        ("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False),
        ("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", True),
        ("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", False),
        ("100::/64", "Discard-Only Address Block", "RFC 6666", False),
        ("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", False),
        ("2001::/23", "IETF Protocol Assignments", "RFC 2928", False),
        ("2001::/32", "TEREDO", "RFC 4380", False),
        ("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", True),
        ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
        ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", True),
        ("2001:2::/48", "Benchmarking", "RFC 5180", False),
        ("2001:3::/32", "AMT", "RFC 7450", True),
        ("2001:4:112::/48", "AS112-v6", "RFC 7535", True),
        ("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", False),
        ("2001:20::/28", "ORCHIDv2", "RFC 7343", True),
        ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", True),
        ("2001:db8::/32", "Documentation", "RFC 3849", False),
        ("2002::/16", "6to4", "RFC 3056", False),
        ("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", True),
        ("3fff::/20", "Documentation", "RFC 9637", False),
        ("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", False),
        ("fc00::/7", "Unique-Local", "RFC 4193", False),
        ("fe80::/10", "Link-Local Unicast", "RFC 4291", False),
    ]
)

_UNICAST_V4 = Entry(ipaddress.ip_network("0.0.0.0/0"), "Unicast", "RFC 791", True)


class _Table:
    """Disjoint address intervals, each with the most specific entry covering it.

    Built once from the entries (widest first, each narrower one cut into the intervals it
    lies in), so a query is one bisect: O(log n) whatever the address, no per-entry scan.
    """

    def __init__(self, entries: Iterable[Entry], base: Entry) -> None:
        starts, owners = [0], [base]
        for entry in sorted(entries, key=lambda e: e.network.prefixlen):
            first = int(entry.network.network_address)
            last = int(entry.network.broadcast_address)
            # Owner of the address right after this block, before the block is laid over it.
            after = owners[bisect.bisect_right(starts, last) - 1]
            lo = bisect.bisect_left(starts, first)
            hi = bisect.bisect_right(starts, last)
            starts[lo:hi] = [first]
            owners[lo:hi] = [entry]
            if last + 1 < (1 << entry.network.max_prefixlen) and (
                lo + 1 >= len(starts) or starts[lo + 1] != last + 1
            ):
                starts.insert(lo + 1, last + 1)
                owners.insert(lo + 1, after)
        self._starts = starts
        self._owners = owners

    def owner(self, value: int) -> Entry:
        return self._owners[bisect.bisect_right(self._starts, value) - 1]


_V4 = _Table(IPV4, _UNICAST_V4)
_V6 = _Table(IPV6, IPV6[0])  # ::/0: all IPv6 space is reserved unless an entry says otherwise


def registry_entry(address: IPAddress) -> Entry:
    """The most specific registry entry that contains `address`."""
    table = _V4 if address.version == 4 else _V6
    return table.owner(int(address))


def not_public_reason(address: IPAddress) -> str | None:
    """None when `address` is public, else the registry entry that makes it not public."""
    entry = registry_entry(address)
    return None if entry.reachable else entry.reason


def is_public(address: IPAddress) -> bool:
    """True for a globally routable unicast address."""
    return registry_entry(address).reachable
