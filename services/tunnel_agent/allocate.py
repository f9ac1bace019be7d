"""Picking a VNI and an overlay /30 that are free, and the overlay arithmetic (pure)."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Set

from .naming import VNI_MAX

SUBNET_PREFIX = 30
# Bytes VXLAN adds around an inner Ethernet frame: outer IP header + UDP 8 + VXLAN 8 +
# inner Ethernet 14 (the overlay MTU counts from the inner IP header).
VXLAN_OVERHEAD = {4: 20 + 8 + 8 + 14, 6: 40 + 8 + 8 + 14}
MIN_MTU = 576
MAX_MTU = 65535


def overlay_mtu(underlay_mtu: int, family: int) -> int:
    """The overlay MTU over an underlay path of `underlay_mtu` bytes (IPv4 or IPv6 outer)."""
    return underlay_mtu - VXLAN_OVERHEAD[family]


def parse_vni_range(text: object) -> tuple[int, int]:
    """`LOW-HIGH` (inclusive) within 1..2^24-1, or ValueError."""
    low, sep, high = str(text).strip().partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ValueError(f"expected LOW-HIGH, got {text!r}")
    lo, hi = int(low), int(high)
    if not 1 <= lo <= hi <= VNI_MAX:
        raise ValueError(f"need 1 <= LOW <= HIGH <= {VNI_MAX}, got {text!r}")
    return lo, hi


def parse_pool(text: object) -> ipaddress.IPv4Network:
    """An IPv4 network holding at least one /30, or ValueError."""
    try:
        net = ipaddress.ip_network(str(text).strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"not a network: {exc}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValueError("the overlay pool is IPv4 (one /30 per tunnel); the underlay may be IPv6")
    if net.prefixlen > SUBNET_PREFIX:
        raise ValueError(f"{net} is smaller than one /{SUBNET_PREFIX}")
    return net


def subnet_of(address: ipaddress.IPv4Address) -> ipaddress.IPv4Network:
    """The /30 an overlay address belongs to."""
    return ipaddress.IPv4Network((int(address) & ~0b11, SUBNET_PREFIX))


def ends(subnet: ipaddress.IPv4Network) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """(source address, destination address) of a /30: its first and second hosts."""
    first = subnet.network_address + 1
    return first, first + 1


def pick_vni(rng: random.Random, low: int, high: int, used: Set[int]) -> int | None:
    """A random VNI in [low, high] not in `used`, or None when every one is taken.

    Random rather than lowest-free: two sources creating tunnels to the same peer at the same
    moment then rarely pick the same value, so the peer's 409 is the exception.
    """
    size = high - low + 1
    for _ in range(32):
        vni = rng.randint(low, high)
        if vni not in used:
            return vni
    if sum(1 for v in used if low <= v <= high) >= size:
        return None
    start = rng.randint(0, size - 1)
    for offset in range(size):
        vni = low + (start + offset) % size
        if vni not in used:
            return vni
    return None


def pick_subnet(
    rng: random.Random, pool: ipaddress.IPv4Network, used: Set[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network | None:
    """A random /30 of the pool not in `used`, or None when the pool is full."""
    count = 1 << (SUBNET_PREFIX - pool.prefixlen)
    base = int(pool.network_address)
    start = rng.randint(0, count - 1)
    for offset in range(count):
        index = (start + offset) % count
        subnet = ipaddress.IPv4Network((base + (index << 2), SUBNET_PREFIX))
        if subnet not in used:
            return subnet
    return None


def used_subnets(
    pool: ipaddress.IPv4Network, addresses: Iterable[ipaddress.IPv4Address]
) -> set[ipaddress.IPv4Network]:
    """The /30s of the pool that hold an address of this host (any interface)."""
    return {subnet_of(a) for a in addresses if a in pool}
