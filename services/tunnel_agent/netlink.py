"""The kernel side over rtnetlink (pyroute2): read links, addresses, routes; build halves.

pyroute2's IPRoute is blocking and not meant to be shared between threads, so one worker
thread owns one IPRoute and runs every netlink operation in turn: the event loop never waits
on the kernel (a dump of hundreds of interfaces takes tens of milliseconds to parse), and two
operations never interleave on the socket. No OVS, no `ip`, no shell-outs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import errno
import ipaddress
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .allocate import SUBNET_PREFIX
from .errors import BadPeer, InUse, KernelError
from .halves import Address, IPAddress, Link, Route, Vxlan, owned
from .naming import DOOMED_GROUP, GROUP_MARK, bridge_name, vxlan_name

T = TypeVar("T")

VXLAN_PORT = 4789
IFF_UP = 0x1
# iproute2's names for address scopes (/etc/iproute2/rt_scopes); others print as numbers.
SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}
ROUTE_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
    10: "nat",
}


@dataclasses.dataclass(frozen=True)
class Path:
    """How this host reaches a peer: our source address, the interface, the path MTU."""

    local: IPAddress
    oif: int
    mtu: int


@dataclasses.dataclass(frozen=True)
class HalfSpec:
    """Everything needed to build one half in one go."""

    vni: int
    alias: str
    mtu: int
    local_ip: ipaddress.IPv4Address
    underlay_local: IPAddress
    underlay_peer: IPAddress


def _attr(msg: Any, *path: str) -> Any:
    """A nested netlink attribute (`IFLA_LINKINFO`, `IFLA_INFO_KIND`, ...), None when absent."""
    node = msg
    for name in path:
        if node is None:
            return None
        node = node.get_attr(name)
    return node


def _ip(text: Any) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text) if text else None
    except ValueError:
        return None


def _link(msg: Any) -> Link:
    kind = _attr(msg, "IFLA_LINKINFO", "IFLA_INFO_KIND") or ""
    vxlan = None
    if kind == "vxlan":
        data = _attr(msg, "IFLA_LINKINFO", "IFLA_INFO_DATA")
        if data is not None:
            vxlan = Vxlan(
                vni=data.get_attr("IFLA_VXLAN_ID") or 0,
                remote=_ip(data.get_attr("IFLA_VXLAN_GROUP") or data.get_attr("IFLA_VXLAN_GROUP6")),
                local=_ip(data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6")),
                port=data.get_attr("IFLA_VXLAN_PORT") or 0,
                learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")),
            )
    stats = msg.get_attr("IFLA_STATS64") or {}
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME") or "",
        kind=kind,
        alias=msg.get_attr("IFLA_IFALIAS"),
        group=msg.get_attr("IFLA_GROUP") or 0,
        master=msg.get_attr("IFLA_MASTER"),
        mtu=msg.get_attr("IFLA_MTU") or 0,
        up=bool(msg["flags"] & IFF_UP),
        vxlan=vxlan,
        rx_bytes=stats.get("rx_bytes", 0),
        tx_bytes=stats.get("tx_bytes", 0),
        rx_packets=stats.get("rx_packets", 0),
        tx_packets=stats.get("tx_packets", 0),
    )


def read_links(ipr: IPRoute) -> list[Link]:
    """Every interface of this host."""
    return [_link(m) for m in ipr.link("dump")]


def read_addresses(ipr: IPRoute, links: list[Link] | None = None) -> list[Address]:
    """Every address of every interface, with its interface's name and iproute2's scope name."""
    names = {link.index: link.name for link in (links if links is not None else read_links(ipr))}
    out = []
    for msg in ipr.addr("dump"):
        family = FAMILIES.get(msg["family"])
        address = _ip(msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"))
        if family is None or address is None:
            continue
        out.append(
            Address(
                index=msg["index"],
                interface=names.get(msg["index"], str(msg["index"])),
                address=address,
                prefixlen=msg["prefixlen"],
                family=family,
                scope=SCOPES.get(msg["scope"], str(msg["scope"])),
            )
        )
    return out


def read_state(ipr: IPRoute) -> tuple[list[Link], list[Address]]:
    """Links and addresses read together (one link dump serves both)."""
    links = read_links(ipr)
    return links, read_addresses(ipr, links)


def read_routes(ipr: IPRoute) -> list[Route]:
    """Every IPv4 route of every table."""
    out = []
    for msg in ipr.route("dump", family=socket.AF_INET):  # every table
        dst = msg.get_attr("RTA_DST") or "0.0.0.0"
        try:
            net = ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False)
        except ValueError:
            continue
        table = msg.get_attr("RTA_TABLE") or msg["table"]
        out.append(Route(net, msg.get_attr("RTA_OIF"), table, ROUTE_TYPES.get(msg["type"], "?")))
    return out


def path_to(ipr: IPRoute, peer: IPAddress) -> Path:
    """Our source address, interface and path MTU toward `peer` (the route's MTU, else the
    interface's), or BadPeer when there is no route."""
    try:
        reply = ipr.route("get", dst=str(peer))
    except NetlinkError as exc:
        raise BadPeer(f"no route to {peer}: {exc.args[1] if len(exc.args) > 1 else exc}") from None
    msg = list(reply)[0]
    oif = msg.get_attr("RTA_OIF")
    if msg["type"] == 2:
        raise BadPeer(f"{peer} is an address of this host, not a peer")
    if msg["type"] != 1 or oif is None:
        raise BadPeer(f"no unicast route to {peer}")
    local = _ip(msg.get_attr("RTA_PREFSRC"))
    metrics = msg.get_attr("RTA_METRICS")
    mtu = metrics.get_attr("RTAX_MTU") if metrics is not None else None
    if not mtu:
        mtu = list(ipr.link("get", index=oif))[0].get_attr("IFLA_MTU")
    if local is None:
        local = _first_address(ipr, oif, peer.version)
    if local is None:
        raise BadPeer(f"no {('IPv4', 'IPv6')[peer.version == 6]} address to reach {peer} from")
    return Path(local, oif, int(mtu))


def _first_address(ipr: IPRoute, index: int, version: int) -> IPAddress | None:
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    for msg in ipr.addr("dump", family=family, index=index):
        if msg["scope"] == 0:
            return _ip(msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"))
    return None


def _get(ipr: IPRoute, name: str) -> Link | None:
    try:
        return _link(list(ipr.link("get", ifname=name))[0])
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def read_v4_addresses(ipr: IPRoute) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address of this host (no link dump: cheap enough for each allocation)."""
    out = []
    for msg in ipr.addr("dump", family=socket.AF_INET):
        address = _ip(msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"))
        if isinstance(address, ipaddress.IPv4Address):
            out.append(address)
    return out


def first_free_vni(ipr: IPRoute, candidates: list[int]) -> int | None:
    """The first candidate VNI whose interface names nobody uses (targeted lookups, no dump).

    An operator's own VXLAN device holding the VNI is found later: the kernel refuses ours
    with EEXIST, which the caller treats like a conflict and picks again.
    """
    for vni in candidates:
        if _get(ipr, bridge_name(vni)) is None and _get(ipr, vxlan_name(vni)) is None:
            return vni
    return None


def probe(ipr: IPRoute, candidates: list[int]) -> tuple[int | None, list[ipaddress.IPv4Address]]:
    """One trip for an allocation: the first free candidate VNI and this host's IPv4
    addresses (each trip to the netlink thread costs a hop through the event loop)."""
    return first_free_vni(ipr, candidates), read_v4_addresses(ipr)


def read_half_links(ipr: IPRoute, vni: int) -> list[Link]:
    """The interfaces of one VNI that are ours (targeted: no dump)."""
    found = (_get(ipr, bridge_name(vni)), _get(ipr, vxlan_name(vni)))
    return [link for link in found if link is not None and owned(link)]


def read_half(ipr: IPRoute, vni: int) -> tuple[list[Link], list[Address]]:
    """One VNI's interfaces of ours and their addresses (targeted: no link dump)."""
    links = read_half_links(ipr, vni)
    names = {link.index: link.name for link in links}
    addresses = []
    for msg in ipr.addr("dump", family=socket.AF_INET):
        if msg["index"] in names:
            address = _ip(msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"))
            if address is not None:
                scope = SCOPES.get(msg["scope"], str(msg["scope"]))
                addresses.append(
                    Address(
                        msg["index"], names[msg["index"]], address, msg["prefixlen"], "inet", scope
                    )
                )
    return links, addresses


def create_half(ipr: IPRoute, spec: HalfSpec) -> None:
    """Bridge with the overlay address + VXLAN to the peer (dstport 4789, learning off).

    Anything created before a failure is removed again, so a refused half leaves nothing.
    """
    bridge, vxlan = bridge_name(spec.vni), vxlan_name(spec.vni)
    created: list[str] = []
    try:
        try:
            ipr.link("add", ifname=bridge, kind="bridge", group=GROUP_MARK, mtu=spec.mtu)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise InUse(f"interface {bridge} already exists", "vni") from None
            raise
        created.append(bridge)
        b = _index(ipr, bridge)
        ipr.link("set", index=b, ifalias=spec.alias)
        remote = {4: "vxlan_group", 6: "vxlan_group6"}[spec.underlay_peer.version]
        local = {4: "vxlan_local", 6: "vxlan_local6"}[spec.underlay_local.version]
        try:
            ipr.link(
                "add",
                ifname=vxlan,
                kind="vxlan",
                group=GROUP_MARK,
                mtu=spec.mtu,
                master=b,
                vxlan_id=spec.vni,
                vxlan_port=VXLAN_PORT,
                vxlan_learning=0,
                **{remote: str(spec.underlay_peer), local: str(spec.underlay_local)},
            )
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise InUse(f"VXLAN {spec.vni} or {vxlan} already exists", "vni") from None
            raise
        created.append(vxlan)
        v = _index(ipr, vxlan)
        ipr.link("set", index=v, ifalias=spec.alias)
        ipr.addr("add", index=b, address=str(spec.local_ip), prefixlen=SUBNET_PREFIX)
        ipr.link("set", index=v, state="up")
        ipr.link("set", index=b, state="up")
    except BaseException:
        for name in reversed(created):
            _delete_if_ours(ipr, name)
        raise


def _index(ipr: IPRoute, name: str) -> int:
    link = _get(ipr, name)
    if link is None:
        raise KernelError(f"{name} vanished right after it was created")
    return link.index


def _delete_if_ours(ipr: IPRoute, name: str) -> bool:
    link = _get(ipr, name)
    if link is None or not owned(link):
        return False
    try:
        ipr.link("del", index=link.index)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise
        return False
    return True


def create_and_read(ipr: IPRoute, spec: HalfSpec) -> tuple[list[Link], list[Address]]:
    """create_half, then read_half, in one trip to the netlink thread."""
    create_half(ipr, spec)
    return read_half(ipr, spec.vni)


def delete_half(ipr: IPRoute, vni: int) -> bool:
    """Remove both interfaces of a half (only if they are ours); True when anything went."""
    return delete_halves(ipr, [vni])[vni]


def delete_halves(ipr: IPRoute, vnis: list[int]) -> dict[int, bool]:
    """Remove the interfaces of several halves at once (only ours); True per VNI that had any.

    Each is moved to DOOMED_GROUP, then the group goes in one request (one batch in the
    kernel). An agent killed in between leaves them marked: its sweep removes them.
    """
    found: dict[int, bool] = {}
    for vni in vnis:
        links = read_half_links(ipr, vni)
        for link in links:
            ipr.link("set", index=link.index, group=DOOMED_GROUP)
        found[vni] = bool(links)
    if any(found.values()):
        ipr.link("del", index=0, group=DOOMED_GROUP)
    return found


def set_alias(ipr: IPRoute, vni: int, alias: str) -> None:
    """Write a new lease on both interfaces of a half."""
    for link in read_half_links(ipr, vni):
        ipr.link("set", index=link.index, ifalias=alias)


class Netlink:
    """One thread, one IPRoute: every netlink operation runs there, one at a time."""

    def __init__(self, factory: Callable[[], IPRoute] = IPRoute) -> None:
        self._factory = factory
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="netlink")
        self._ipr: IPRoute | None = None

    def _call(self, fn: Callable[..., T], args: tuple) -> T:
        if self._ipr is None:
            self._ipr = self._factory()
        try:
            return fn(self._ipr, *args)
        except NetlinkError as exc:
            reason = exc.args[1] if len(exc.args) > 1 else str(exc)
            raise KernelError(f"netlink {fn.__name__}: {reason}") from None

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(ipr, *args)` and wait (start-up only: never from the event loop)."""
        return self._executor.submit(self._call, fn, args).result()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(ipr, *args)` on the netlink thread without blocking the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args)

    def close(self) -> None:
        def _close() -> None:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

        self._executor.submit(_close).result()
        self._executor.shutdown(wait=True)
