"""The public filter: IANA's special-purpose registries, most specific entry first (pure)."""

from __future__ import annotations

import ast
import ipaddress
import random
from pathlib import Path

import pytest

from services.geo.public import IPV4, IPV6, is_public, not_public_reason

# The cases issue 11 pins, and their verdicts.
NOT_PUBLIC = [
    "100.64.0.0",  # shared address space (CGNAT), first and last of 100.64.0.0/10
    "100.127.255.255",
    "192.0.0.0",  # IETF protocol assignments...
    "192.0.0.8",
    "192.0.0.11",
    "192.0.0.255",
    "198.18.0.1",  # benchmarking 198.18.0.0/15
    "198.19.255.255",
    "192.0.2.1",  # the three documentation ranges
    "198.51.100.7",
    "203.0.113.5",
    "224.0.0.1",  # multicast
    "239.255.255.255",
    "240.0.0.1",  # 240.0.0.0/4
    "255.255.255.254",
    "255.255.255.255",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "127.0.0.1",
    "169.254.1.1",
    "0.0.0.0",
    "0.1.2.3",
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:8.8.8.8",  # mapped even when the IPv4 address is public
    "2002::1",  # 6to4
    "2002:c000:204::1",
    "64:ff9b:1::1",  # local-use IPv4/IPv6 translation
    "3fff::1",  # documentation (RFC 9637)
    "3fff:fff:ffff::1",
    "5f00::1",  # SRv6 SIDs
    "2001:db8::1",
    "2001::1",  # Teredo
    "2001:2::1",  # benchmarking
    "2001:10::1",  # deprecated ORCHID
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "ff02::1",
    "::1",
    "::",
    "100::1",
    "4000::1",  # outside 2000::/3: not allocated as global unicast
]
PUBLIC = [
    "192.0.0.9",  # PCP anycast, global inside the non-global 192.0.0.0/24
    "192.0.0.10",  # TURN anycast
    "2001:3::1",  # AMT
    "2001:20::1",  # ORCHIDv2
    "2001:2f::1",
    "2001:1::1",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "172.15.255.255",
    "172.32.0.0",
    "192.31.196.1",  # AS112
    "2001:6b0:7::2",
    "2a00:1450:4001:80e::200e",
    "2620:4f:8000::1",
    "64:ff9b::808:808",  # the well-known NAT64 prefix is globally reachable (RFC 6052)
]


@pytest.mark.parametrize("text", NOT_PUBLIC)
def test_not_public(text):
    address = ipaddress.ip_address(text)
    assert not is_public(address)
    assert not_public_reason(address)


@pytest.mark.parametrize("text", PUBLIC)
def test_public(text):
    address = ipaddress.ip_address(text)
    assert is_public(address), not_public_reason(address)
    assert not_public_reason(address) is None


def test_reasons_name_the_registry_entry():
    assert not_public_reason(ipaddress.ip_address("100.64.1.1")) == (
        "Shared Address Space (RFC 6598)"
    )
    assert not_public_reason(ipaddress.ip_address("2002::1")) == "6to4 (RFC 3056)"
    assert "RFC 9637" in not_public_reason(ipaddress.ip_address("3fff::1"))


def _naive(address) -> bool:
    """Reference: scan every entry, keep the most specific containing one."""
    table = IPV4 if address.version == 4 else IPV6
    best = None
    for entry in table:
        if address in entry.network and (
            best is None or entry.network.prefixlen > best.network.prefixlen
        ):
            best = entry
    return True if best is None else best.reachable


def _edges():
    for entry in (*IPV4, *IPV6):
        net = entry.network
        first, last = int(net.network_address), int(net.broadcast_address)
        top = (1 << net.max_prefixlen) - 1
        for value in (first - 1, first, first + 1, last - 1, last, last + 1):
            if 0 <= value <= top:
                yield (
                    ipaddress.ip_address(value)
                    if net.version == 4
                    else ipaddress.IPv6Address(value)
                )


def test_the_bisect_table_agrees_with_a_scan_at_every_edge_and_at_random():
    rng = random.Random(11)
    samples = list(_edges())
    samples += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(20_000)]
    samples += [ipaddress.IPv6Address(rng.getrandbits(128)) for _ in range(20_000)]
    # random addresses inside IPv6 global unicast, where most real ones are
    samples += [ipaddress.IPv6Address((1 << 125) | rng.getrandbits(125)) for _ in range(20_000)]
    wrong = [a for a in samples if is_public(a) != _naive(a)]
    assert not wrong, wrong[:5]


def test_ipaddress_is_global_is_not_used():
    import services.geo as package

    for path in Path(package.__file__).parent.rglob("*.py"):
        names = {
            n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)
        }
        assert not names & {"is_global", "is_private", "is_reserved"}, path
