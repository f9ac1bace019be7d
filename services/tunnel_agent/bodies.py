"""Request bodies checked before anything is touched: each field's type, range and meaning."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from services.common.errors import BadRequest

from .allocate import MAX_MTU, MIN_MTU, SUBNET_PREFIX, ends, subnet_of
from .halves import IPAddress
from .naming import VNI_MAX

MAX_VM_ID = 2**31 - 1
MAX_PEER = 253
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$"
)


def _int(body: dict, field: str, low: int, high: int) -> int:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        what = "missing" if value is None else f"a {type(value).__name__}, not an integer"
        raise BadRequest(f"{field} is {what}")
    if not low <= value <= high:
        raise BadRequest(f"{field} must be between {low} and {high}, got {value}")
    return value


def _object(body: Any, shape: str) -> dict:
    if not isinstance(body, dict):
        raise BadRequest(f"expected a JSON object {shape}")
    return body


def parse_peer(value: Any) -> IPAddress | str:
    """An IP address, or a host name to resolve; BadRequest for anything else."""
    if not isinstance(value, str):
        what = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise BadRequest(f"peer is {what}")
    text = value.strip()
    if not text:
        raise BadRequest("peer is empty")
    if len(text) > MAX_PEER:
        raise BadRequest(f"peer is over {MAX_PEER} characters")
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not _HOSTNAME.match(text):
        raise BadRequest("peer is neither an IP address nor a host name")
    return text.rstrip(".").lower()


def parse_open(body: Any) -> tuple[int, IPAddress | str]:
    """`POST /v1/tunnels {"vm_id", "peer"}`: (vm_id, peer address or name)."""
    body = _object(body, '{"vm_id": N, "peer": "<host name or IP>"}')
    return _int(body, "vm_id", 0, MAX_VM_ID), parse_peer(body.get("peer"))


@dataclasses.dataclass(frozen=True)
class AcceptSpec:
    """A source's `PUT /v1/tunnels/<id>`: the half it asks this host to hold."""

    vm_id: int
    vni: int
    peer: IPAddress  # the source's underlay address: our VXLAN's remote
    local_ip: ipaddress.IPv4Address  # our overlay address
    peer_ip: ipaddress.IPv4Address  # the source's overlay address
    mtu: int
    expires_at: int
    created_at: int


def _address(body: dict, field: str) -> IPAddress:
    value = body.get(field)
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be an IP address string")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise BadRequest(f"{field} is not an IP address: {value[:60]!r}") from None


def parse_accept(body: Any, pool: ipaddress.IPv4Network, now: float) -> AcceptSpec:
    """Check a peer's PUT body against this agent's pool and the clock."""
    body = _object(body, "describing a tunnel half")
    vm_id = _int(body, "vm_id", 0, MAX_VM_ID)
    vni = _int(body, "vni", 1, VNI_MAX)
    peer = _address(body, "peer")
    if not usable_underlay(peer):
        raise BadRequest(f"peer {peer} is not a unicast address another host can have")
    local_ip, peer_ip = _address(body, "local_ip"), _address(body, "peer_ip")
    if not isinstance(local_ip, ipaddress.IPv4Address) or local_ip not in pool:
        raise BadRequest(f"local_ip {local_ip} is outside this agent's --overlay-pool {pool}")
    subnet = subnet_of(local_ip)
    if subnet.prefixlen != SUBNET_PREFIX or ends(subnet) != (peer_ip, local_ip):
        raise BadRequest(f"peer_ip/local_ip must be the first/second host of one /{SUBNET_PREFIX}")
    mtu = _int(body, "mtu", MIN_MTU, MAX_MTU)
    expires_at = _int(body, "expires_at", 1, 2**40)
    created_at = _int(body, "created_at", 1, 2**40)
    if expires_at <= now:
        raise BadRequest("expires_at is in the past (are the hosts' clocks in sync?)")
    return AcceptSpec(vm_id, vni, peer, local_ip, peer_ip, mtu, expires_at, created_at)


def usable_underlay(address: IPAddress) -> bool:
    """An address another host can have and VXLAN can reach without naming an interface."""
    return not (
        address.is_loopback
        or address.is_unspecified
        or address.is_multicast
        or address.is_link_local
        or address.is_reserved
        or (
            isinstance(address, ipaddress.IPv4Address)
            and address == ipaddress.IPv4Address("255.255.255.255")
        )
    )
