"""What the netlink adapter reads, and the pure assembly of those records into tunnel halves.

The agent keeps no state file: every answer about tunnels is built here from a fresh read of
the kernel's links and addresses, so a restarted agent sees exactly what the old one left.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable

from .allocate import SUBNET_PREFIX, ends, subnet_of
from .naming import DOOMED_GROUP, GROUP_MARK, Lease, parse_alias, parse_name

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclasses.dataclass(frozen=True)
class Vxlan:
    """The VXLAN attributes of a link (IFLA_VXLAN_*)."""

    vni: int
    remote: IPAddress | None
    local: IPAddress | None
    port: int
    learning: bool


@dataclasses.dataclass(frozen=True)
class Link:
    """One network interface as netlink reports it."""

    index: int
    name: str
    kind: str
    alias: str | None
    group: int
    master: int | None
    mtu: int
    up: bool
    vxlan: Vxlan | None = None
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0


@dataclasses.dataclass(frozen=True)
class Address:
    """One address of one interface; `scope` is named as iproute2 names it."""

    index: int
    interface: str
    address: IPAddress
    prefixlen: int
    family: str
    scope: str

    def as_json(self) -> dict:
        return {
            "interface": self.interface,
            "address": str(self.address),
            "prefixlen": self.prefixlen,
            "family": self.family,
            "scope": self.scope,
        }


@dataclasses.dataclass(frozen=True)
class Route:
    """One route: destination, output interface (None for blackholes and the like), table."""

    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    oif: int | None
    table: int
    kind: str

    def describe(self, names: dict[int, str]) -> str:
        dev = f" dev {names.get(self.oif, self.oif)}" if self.oif else ""
        table = "" if self.table == 254 else f" table {self.table}"
        kind = "" if self.kind == "unicast" else f"{self.kind} "
        return f"{kind}{self.dst}{dev}{table}"


def owned(link: Link) -> bool:
    """Ours: a name of our form AND our alias or our creation-time group mark."""
    if parse_name(link.name) is None:
        return False
    return parse_alias(link.alias) is not None or link.group in (GROUP_MARK, DOOMED_GROUP)


@dataclasses.dataclass(frozen=True)
class Half:
    """This host's end of one tunnel: a bridge and a VXLAN device, as found in the kernel."""

    vni: int
    bridge: Link | None
    vxlan: Link | None
    lease: Lease | None
    local_ip: ipaddress.IPv4Address | None

    @property
    def complete(self) -> bool:
        """Both devices, the VXLAN enslaved to the bridge, a lease and the overlay address."""
        return (
            self.bridge is not None
            and self.vxlan is not None
            and self.vxlan.vxlan is not None
            and self.vxlan.master == self.bridge.index
            and self.lease is not None
            and self.local_ip is not None
            and self.bridge.group != DOOMED_GROUP
        )

    @property
    def id(self) -> str | None:
        return self.lease.id if self.lease else None

    @property
    def peer_ip(self) -> ipaddress.IPv4Address | None:
        """The other end's overlay address (the other host of the /30)."""
        if self.local_ip is None:
            return None
        first, second = ends(subnet_of(self.local_ip))
        return second if self.local_ip == first else first

    @property
    def underlay_peer(self) -> IPAddress | None:
        return self.vxlan.vxlan.remote if self.vxlan and self.vxlan.vxlan else None

    def expired(self, now: float) -> bool:
        return self.lease is not None and self.lease.expires_at <= now

    def as_json(self, now: float) -> dict:
        """The `GET /v1/tunnels` entry of this half."""
        vx = self.vxlan
        lease = self.lease
        return {
            "id": self.id,
            "vni": self.vni,
            "vm_id": lease.vm_id if lease else None,
            "role": lease.role if lease else None,
            "local_ip": str(self.local_ip) if self.local_ip else None,
            "peer_ip": str(self.peer_ip) if self.peer_ip else None,
            "prefixlen": SUBNET_PREFIX,
            "mtu": vx.mtu if vx else (self.bridge.mtu if self.bridge else None),
            "expires_at": lease.expires_at if lease else None,
            "created_at": lease.created_at if lease else None,
            "expired": self.expired(now),
            "state": "up" if self.complete else "incomplete",
            "underlay": {
                "local": str(vx.vxlan.local) if vx and vx.vxlan and vx.vxlan.local else None,
                "peer": str(self.underlay_peer) if self.underlay_peer else None,
            },
            "interfaces": {
                "bridge": self.bridge.name if self.bridge else None,
                "vxlan": vx.name if vx else None,
            },
            "counters": {
                "rx_bytes": vx.rx_bytes if vx else 0,
                "tx_bytes": vx.tx_bytes if vx else 0,
                "rx_packets": vx.rx_packets if vx else 0,
                "tx_packets": vx.tx_packets if vx else 0,
            },
        }


def assemble(links: Iterable[Link], addresses: Iterable[Address]) -> list[Half]:
    """Group our interfaces by VNI into halves, with the lease and overlay address of each."""
    bridges: dict[int, Link] = {}
    vxlans: dict[int, Link] = {}
    for link in links:
        parsed = parse_name(link.name)
        if parsed is None or not owned(link):
            continue
        kind, vni = parsed
        (bridges if kind == "bridge" else vxlans)[vni] = link
    by_index: dict[int, list[Address]] = {}
    for addr in addresses:
        by_index.setdefault(addr.index, []).append(addr)
    halves = []
    for vni in sorted(set(bridges) | set(vxlans)):
        bridge, vxlan = bridges.get(vni), vxlans.get(vni)
        lease = None
        for link in (bridge, vxlan):
            if link is not None and (parsed := parse_alias(link.alias)) is not None:
                lease = lease or parsed
        local_ip = None
        if bridge is not None:
            for addr in by_index.get(bridge.index, []):
                if isinstance(addr.address, ipaddress.IPv4Address) and (
                    addr.prefixlen == SUBNET_PREFIX
                ):
                    local_ip = addr.address
                    break
        halves.append(Half(vni, bridge, vxlan, lease, local_ip))
    return halves


def conflicting_routes(
    pool: ipaddress.IPv4Network, routes: Iterable[Route], own: set[int]
) -> list[Route]:
    """Routes that overlap the overlay pool, other than default routes and our own halves'."""
    return [
        r
        for r in routes
        if isinstance(r.dst, ipaddress.IPv4Network)
        and r.dst.prefixlen > 0
        and r.oif not in own
        and r.dst.overlaps(pool)
    ]
