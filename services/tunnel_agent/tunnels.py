"""Opening, accepting, closing and sweeping tunnels: the agent's logic over netlink and peers.

Nothing here is remembered across restarts: every decision reads the kernel (names, aliases,
addresses). What lives in memory is only what is in flight: the VNIs and /30s being built
(so two requests, or a request and the sweep, never pick or remove the same one) and locks.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import Any

from services.common.logs import clip

from . import netlink
from .allocate import (
    MIN_MTU,
    ends,
    overlay_mtu,
    pick_subnet,
    pick_vni,
    subnet_of,
    used_subnets,
)
from .bodies import AcceptSpec, usable_underlay
from .config import TunnelAgentConfig
from .errors import BadPeer, InUse, PeerFailed, PeerTimeout, PoolExhausted
from .halves import Half, IPAddress, assemble
from .locks import KeyedLocks
from .naming import Lease, format_alias, new_id, parse_alias
from .netlink import HalfSpec, Netlink
from .peers import PeerClient, error_of

log = logging.getLogger("services.tunnel_agent")

# Picks per request before giving up when the peer keeps refusing what we pick (409).
MAX_ATTEMPTS = 16
# At most this many of its used VNIs and /30s a peer lists in a 409 (a bounded answer).
MAX_LISTED = 4096
# Concurrent orphan checks during one sweep.
SWEEP_CONCURRENCY = 8


def public(half: Half) -> dict:
    """The `POST`/`PUT` answer: `{"id","vni","local_ip","peer_ip","mtu","expires_at"}`."""
    assert half.lease is not None
    return {
        "id": half.lease.id,
        "vni": half.vni,
        "local_ip": str(half.local_ip),
        "peer_ip": str(half.peer_ip),
        "mtu": half.vxlan.mtu if half.vxlan else None,
        "expires_at": half.lease.expires_at,
    }


def answer(lease: Lease, vni: int, local_ip: Any, peer_ip: Any, mtu: int) -> dict:
    return {
        "id": lease.id,
        "vni": vni,
        "local_ip": str(local_ip),
        "peer_ip": str(peer_ip),
        "mtu": mtu,
        "expires_at": lease.expires_at,
    }


def listed_vnis(data: Any) -> set[int]:
    """The VNIs a peer's 409 says it uses (ignoring anything malformed)."""
    values = data.get("used_vnis") if isinstance(data, dict) else None
    if not isinstance(values, list):
        return set()
    return {v for v in values[:MAX_LISTED] if isinstance(v, int) and not isinstance(v, bool)}


def listed_subnets(data: Any) -> set[ipaddress.IPv4Network]:
    """The /30s a peer's 409 says it uses (ignoring anything malformed)."""
    values = data.get("used_subnets") if isinstance(data, dict) else None
    out: set[ipaddress.IPv4Network] = set()
    for text in values[:MAX_LISTED] if isinstance(values, list) else []:
        try:
            out.add(ipaddress.IPv4Network(text))
        except (ValueError, TypeError):
            continue
    return out


class Tunnels:
    """The tunnel halves of this host and the operations on them."""

    def __init__(
        self,
        config: TunnelAgentConfig,
        nl: Netlink,
        peers: Callable[[], PeerClient],
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.nl = nl
        self._peers = peers
        self.clock = clock
        self.rng = rng or random.Random()
        self._alloc = asyncio.Lock()
        self._pairs = KeyedLocks()
        self._ids = KeyedLocks()
        self._vnis = KeyedLocks()
        self._reserved_vnis: set[int] = set()
        self._reserved_subnets: set[ipaddress.IPv4Network] = set()
        self.creating: dict[str, int] = {}  # tunnel id -> VNI, while its half is being built
        self.counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        self.halves: list[Half] = []  # the last read of the kernel (metrics, /healthz)
        self._doomed: dict[int, asyncio.Future[bool]] = {}
        self._deleter: asyncio.Task | None = None

    # -- reading ---------------------------------------------------------------------------

    async def read(self) -> list[Half]:
        """Our halves as the kernel has them now (a full read; refreshes the index)."""
        links, addresses = await self.nl.run(netlink.read_state)
        self.halves = assemble(links, addresses)
        return self.halves

    async def reread(self, vni: int) -> Half | None:
        """One VNI's half as the kernel has it now, updating the index (targeted read)."""
        return self._index(vni, *await self.nl.run(netlink.read_half, vni))

    async def build(self, spec: HalfSpec) -> Half | None:
        """Build a half and put it in the index (one trip to the netlink thread)."""
        return self._index(spec.vni, *await self.nl.run(netlink.create_and_read, spec))

    def _index(self, vni: int, links: list, addresses: list) -> Half | None:
        found = assemble(links, addresses)
        half = found[0] if found else None
        self.halves = [h for h in self.halves if h.vni != vni] + ([half] if half else [])
        return half

    async def find(self, tunnel_id: str, *, thorough: bool = False) -> Half | None:
        """The half with this id: looked up in the index and checked in the kernel; with
        `thorough`, a miss is confirmed by a full read (a peer's orphan check relies on it)."""
        for half in list(self.halves):
            if half.id == tunnel_id:
                current = await self.reread(half.vni)
                if current is not None and current.id == tunnel_id:
                    return current
        if thorough:
            for half in await self.read():
                if half.id == tunnel_id:
                    return half
        return None

    def in_use(self) -> dict:
        """What this host uses or is building, for a refused peer to avoid all at once."""
        vnis = {h.vni for h in self.halves} | self._reserved_vnis
        subnets = {subnet_of(h.local_ip) for h in self.halves if h.local_ip}
        subnets |= self._reserved_subnets
        return {
            "used_vnis": sorted(vnis)[:MAX_LISTED],
            "used_subnets": [str(s) for s in sorted(subnets)][:MAX_LISTED],
        }

    async def addresses(self) -> list[dict]:
        _links, addresses = await self.nl.run(netlink.read_state)
        return [a.as_json() for a in addresses]

    # -- peers -----------------------------------------------------------------------------

    async def resolve(self, ref: IPAddress | str) -> IPAddress:
        """The peer's underlay address (a name is resolved, bounded by --peer-timeout)."""
        if isinstance(ref, str):
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.config.peer_timeout):
                    infos = await loop.getaddrinfo(ref, None, type=socket.SOCK_STREAM)
            except TimeoutError:
                raise PeerTimeout(f"resolving {clip(ref)} took over the peer timeout") from None
            except (OSError, UnicodeError) as exc:
                reason = getattr(exc, "strerror", None) or exc
                raise BadPeer(f"cannot resolve peer {clip(ref)}: {reason}") from None
            if not infos:
                raise BadPeer(f"cannot resolve peer {clip(ref)}")
            address = ipaddress.ip_address(str(infos[0][4][0]).split("%")[0])
        else:
            address = ref
        if not usable_underlay(address):
            raise BadPeer(f"peer {address} is not a unicast address another host can have")
        return address

    def overlay_mtu(self, path: netlink.Path, peer: IPAddress) -> int:
        mtu = self.config.fixed_mtu or overlay_mtu(path.mtu, peer.version)
        if mtu < MIN_MTU:
            raise BadPeer(f"the path to {peer} has MTU {path.mtu}: too small for an overlay")
        return mtu

    async def _forget_remote(self, peer: IPAddress, tunnel_id: str) -> None:
        """Best effort: remove a half we asked the peer to build (its sweep covers a failure)."""
        try:
            await self._peers().call("DELETE", peer, f"/v1/tunnels/{tunnel_id}?scope=local")
        except PeerFailed as exc:
            log.warning("could not remove the peer's half of %s: %s", tunnel_id, exc)

    # -- allocation ------------------------------------------------------------------------

    async def _reserve(
        self, skip_vnis: set[int], skip_subnets: set[ipaddress.IPv4Network]
    ) -> tuple[int, ipaddress.IPv4Network]:
        """A VNI and a /30 free here and not yet refused by the peer, held until released."""
        low, high = self.config.vni_range
        async with self._alloc:
            taken = self._reserved_vnis | skip_vnis
            candidates: list[int] = []
            for _ in range(16):
                vni = pick_vni(self.rng, low, high, taken | set(candidates))
                if vni is None:
                    break
                candidates.append(vni)
            vni, addresses = await self.nl.run(netlink.probe, candidates)
            if vni is None:
                raise PoolExhausted(f"no free VNI left in --vni-range {low}-{high}")
            used = used_subnets(self.config.overlay_pool, addresses)
            subnet = pick_subnet(
                self.rng, self.config.overlay_pool, used | self._reserved_subnets | skip_subnets
            )
            if subnet is None:
                raise PoolExhausted(
                    f"no free /30 left in --overlay-pool {self.config.overlay_pool}"
                )
            self._reserved_vnis.add(vni)
            self._reserved_subnets.add(subnet)
            return vni, subnet

    async def _hold(self, vni: int, subnet: ipaddress.IPv4Network) -> None:
        """Reserve exactly this VNI and /30 (a peer's PUT), or InUse naming which is taken."""
        async with self._alloc:
            free, addresses = await self.nl.run(netlink.probe, [vni])
            if vni in self._reserved_vnis or free is None:
                raise InUse(f"VNI {vni} is in use on this host", "vni")
            if subnet in self._reserved_subnets or subnet in used_subnets(subnet, addresses):
                raise InUse(f"subnet {subnet} is in use on this host", "subnet")
            self._reserved_vnis.add(vni)
            self._reserved_subnets.add(subnet)

    def _release(self, vni: int, subnet: ipaddress.IPv4Network) -> None:
        self._reserved_vnis.discard(vni)
        self._reserved_subnets.discard(subnet)

    # -- open (source side) ----------------------------------------------------------------

    async def open(self, vm_id: int, ref: IPAddress | str) -> tuple[dict, bool]:
        """`POST /v1/tunnels`: (answer, created); the same (vm_id, peer) returns the existing
        tunnel with its lease renewed on both ends."""
        peer = await self.resolve(ref)
        path = await self.nl.run(netlink.path_to, peer)
        async with self._pairs.hold((vm_id, peer)):
            now = self.clock()
            for known in list(self.halves):
                lease = known.lease
                if (
                    lease is not None
                    and lease.role == "src"
                    and lease.vm_id == vm_id
                    and known.underlay_peer == peer
                ):
                    half = await self.reread(known.vni)
                    if half is not None and half.complete and not half.expired(now):
                        return await self._renew(half), False
            mtu = self.overlay_mtu(path, peer)
            skip_vnis: set[int] = set()
            skip_subnets: set[ipaddress.IPv4Network] = set()
            for _attempt in range(MAX_ATTEMPTS):
                vni, subnet = await self._reserve(skip_vnis, skip_subnets)
                try:
                    done = await self._open_once(
                        vm_id, peer, path, mtu, vni, subnet, skip_vnis, skip_subnets
                    )
                finally:
                    self._release(vni, subnet)
                if done is not None:
                    return done, True
            raise PoolExhausted(
                f"peer {peer} refused {MAX_ATTEMPTS} VNI/subnet picks in a row as in use"
            )

    async def _open_once(
        self,
        vm_id: int,
        peer: IPAddress,
        path: netlink.Path,
        mtu: int,
        vni: int,
        subnet: ipaddress.IPv4Network,
        skip_vnis: set[int],
        skip_subnets: set[ipaddress.IPv4Network],
    ) -> dict | None:
        """One try: the peer's half, then ours. None when either end found a value in use."""
        now = int(self.clock())
        lease = Lease(new_id(), vm_id, "src", now + self.config.lease_ttl, now)
        local_ip, peer_ip = ends(subnet)
        body = {
            "vm_id": vm_id,
            "vni": vni,
            "peer": str(path.local),
            "local_ip": str(peer_ip),
            "peer_ip": str(local_ip),
            "mtu": mtu,
            "expires_at": lease.expires_at,
            "created_at": lease.created_at,
        }
        self.creating[lease.id] = vni
        try:
            try:
                status, data = await self._peers().call(
                    "PUT", peer, f"/v1/tunnels/{lease.id}", body
                )
            except PeerTimeout:
                # It may have built its half after we stopped waiting.
                await asyncio.shield(self._forget_remote(peer, lease.id))
                raise
            if status == 409:
                what = data.get("conflict") if isinstance(data, dict) else None
                self.counts[("conflict", str(what))] += 1
                if what != "subnet":
                    skip_vnis.add(vni)
                if what != "vni":
                    skip_subnets.add(subnet)
                skip_vnis.update(listed_vnis(data))
                skip_subnets.update(listed_subnets(data))
                log.info(
                    "peer %s has %s of VNI %s / %s in use; picking again", peer, what, vni, subnet
                )
                return None
            if status not in (200, 201):
                raise PeerFailed(f"peer agent {peer} refused the tunnel: {error_of(status, data)}")
            agreed = data.get("mtu") if isinstance(data, dict) else None
            if (
                isinstance(agreed, bool)
                or not isinstance(agreed, int)
                or not (MIN_MTU <= agreed <= mtu)
            ):
                await asyncio.shield(self._forget_remote(peer, lease.id))
                raise PeerFailed(f"peer agent {peer} answered an unusable MTU {agreed!r}")
            spec = HalfSpec(vni, format_alias(lease), agreed, local_ip, path.local, peer)
            try:
                await self.build(spec)
            except InUse:
                await asyncio.shield(self._forget_remote(peer, lease.id))
                skip_vnis.add(vni)
                return None
            except BaseException:
                await asyncio.shield(self._forget_remote(peer, lease.id))
                raise
        finally:
            self.creating.pop(lease.id, None)
        log.info(
            "tunnel %s up: vm %s to %s, VNI %s, %s <-> %s, MTU %s",
            lease.id,
            vm_id,
            peer,
            vni,
            local_ip,
            peer_ip,
            agreed,
        )
        return answer(lease, vni, local_ip, peer_ip, agreed)

    async def _renew(self, half: Half) -> dict:
        """Extend an existing source half's lease on the peer (which re-creates a lost half)
        and here."""
        lease, vx = half.lease, half.vxlan
        assert lease is not None and vx is not None and vx.vxlan is not None
        peer = vx.vxlan.remote
        assert peer is not None and half.local_ip is not None
        renewed = lease.renewed(int(self.clock()) + self.config.lease_ttl)
        body = {
            "vm_id": lease.vm_id,
            "vni": half.vni,
            "peer": str(vx.vxlan.local),
            "local_ip": str(half.peer_ip),
            "peer_ip": str(half.local_ip),
            "mtu": vx.mtu,
            "expires_at": renewed.expires_at,
            "created_at": lease.created_at,
        }
        async with self._vnis.hold(half.vni):
            status, data = await self._peers().call("PUT", peer, f"/v1/tunnels/{lease.id}", body)
            if status not in (200, 201):
                raise PeerFailed(f"peer agent {peer} refused the renewal: {error_of(status, data)}")
            await self.nl.run(netlink.set_alias, half.vni, format_alias(renewed))
            await self.reread(half.vni)
        return answer(renewed, half.vni, half.local_ip, half.peer_ip, vx.mtu)

    # -- accept (destination side) ---------------------------------------------------------

    async def accept(self, tunnel_id: str, spec: AcceptSpec) -> tuple[dict, bool]:
        """`PUT /v1/tunnels/<id>` from the source's agent: build (or renew) our half."""
        path = await self.nl.run(netlink.path_to, spec.peer)
        async with self._ids.hold(tunnel_id):
            existing = await self.find(tunnel_id)
            if existing is not None:
                return await self._accept_again(existing, spec), False
            mtu = min(spec.mtu, self.overlay_mtu(path, spec.peer))
            subnet = subnet_of(spec.local_ip)
            await self._hold(spec.vni, subnet)
            self.creating[tunnel_id] = spec.vni
            lease = Lease(tunnel_id, spec.vm_id, "dst", spec.expires_at, spec.created_at)
            try:
                await self.build(
                    HalfSpec(
                        spec.vni, format_alias(lease), mtu, spec.local_ip, path.local, spec.peer
                    )
                )
            finally:
                self.creating.pop(tunnel_id, None)
                self._release(spec.vni, subnet)
        log.info(
            "tunnel %s accepted: vm %s from %s, VNI %s, %s <-> %s, MTU %s",
            tunnel_id,
            spec.vm_id,
            spec.peer,
            spec.vni,
            spec.local_ip,
            spec.peer_ip,
            mtu,
        )
        return answer(lease, spec.vni, spec.local_ip, spec.peer_ip, mtu), True

    async def _accept_again(self, half: Half, spec: AcceptSpec) -> dict:
        lease = half.lease
        assert lease is not None
        same = (
            half.complete
            and lease.role == "dst"
            and half.vni == spec.vni
            and half.local_ip == spec.local_ip
            and half.underlay_peer == spec.peer
        )
        if not same:
            raise InUse(f"tunnel {lease.id} exists here with other parameters", "id")
        renewed = lease.renewed(max(lease.expires_at, spec.expires_at))
        async with self._vnis.hold(half.vni):
            await self.nl.run(netlink.set_alias, half.vni, format_alias(renewed))
            await self.reread(half.vni)
        return public(Half(half.vni, half.bridge, half.vxlan, renewed, half.local_ip))

    # -- close -----------------------------------------------------------------------------

    async def close(self, tunnel_id: str, *, both: bool) -> dict:
        """`DELETE /v1/tunnels/<id>`: remove our half and (unless scope=local) the peer's.

        Idempotent: an id found nowhere answers `"local": "absent"`.
        """
        half = await self.find(tunnel_id, thorough=True)
        if half is None:
            self.counts[("delete", "absent")] += 1
            return {"id": tunnel_id, "local": "absent", "peer": "unknown"}
        peer = half.underlay_peer

        async def local() -> str:
            async with self._vnis.hold(half.vni):
                gone = await self._delete(half.vni)
                await self.reread(half.vni)
            return "deleted" if gone else "absent"

        async def remote() -> str:
            if not both or peer is None:
                return "skipped"
            try:
                status, data = await self._peers().call(
                    "DELETE", peer, f"/v1/tunnels/{tunnel_id}?scope=local"
                )
            except PeerFailed as exc:
                return f"failed: {exc.message}"
            if status != 200:
                return f"failed: {error_of(status, data)}"
            return str(data.get("local")) if isinstance(data, dict) else "deleted"

        local_result, peer_result = await asyncio.gather(local(), remote())
        result = "deleted" if peer_result in ("deleted", "absent", "skipped") else "peer_failed"
        self.counts[("delete", result)] += 1
        log.info("tunnel %s closed: here %s, peer %s", tunnel_id, local_result, peer_result)
        return {"id": tunnel_id, "local": local_result, "peer": peer_result}

    async def _delete(self, vni: int) -> bool:
        """Remove a half's interfaces; deletes that arrive together go in one batch."""
        future = self._doomed.get(vni)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._doomed[vni] = future
        if self._deleter is None or self._deleter.done():
            self._deleter = asyncio.get_running_loop().create_task(self._delete_batches())
        return await asyncio.shield(future)

    async def _delete_batches(self) -> None:
        await asyncio.sleep(0)  # let the deletes of this loop iteration join the batch
        while self._doomed:
            batch, self._doomed = self._doomed, {}
            try:
                gone = await self.nl.run(netlink.delete_halves, list(batch))
            except Exception as exc:
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
            else:
                for vni, future in batch.items():
                    if not future.done():
                        future.set_result(gone.get(vni, False))

    # -- sweep -----------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Remove halves whose lease expired, halves left incomplete, and halves whose peer
        no longer has the matching half (once past --orphan-grace)."""
        now = self.clock()
        check: list[Half] = []
        for half in await self.read():
            if half.vni in self._reserved_vnis:
                continue  # being built right now
            if not half.complete:
                await self._remove(half, "incomplete")
            elif half.expired(now):
                await self._remove(half, "expired")
            elif half.lease and now - half.lease.created_at >= self.config.orphan_grace:
                check.append(half)
        limit = asyncio.Semaphore(SWEEP_CONCURRENCY)

        async def check_one(half: Half) -> None:
            async with limit:
                if await self._orphaned(half):
                    await self._remove(half, "orphaned")

        await asyncio.gather(*(check_one(h) for h in check))
        self.counts[("sweep",)] += 1
        await self.read()

    async def _orphaned(self, half: Half) -> bool:
        """True when the peer's agent answers that it has no matching half."""
        peer, lease = half.underlay_peer, half.lease
        if peer is None or lease is None:
            return False
        try:
            status, data = await self._peers().call("GET", peer, f"/v1/tunnels/{lease.id}")
        except PeerFailed as exc:
            log.debug("orphan check of %s: %s; keeping it until its lease ends", lease.id, exc)
            return False
        if status == 404:
            return True
        if status == 200 and isinstance(data, dict):
            return data.get("vni") != half.vni
        return False

    async def _remove(self, half: Half, reason: str) -> None:
        """Remove one half found by the sweep, after checking again under its lock."""
        async with self._vnis.hold(half.vni):
            if half.vni in self._reserved_vnis:
                return
            links = await self.nl.run(netlink.read_half_links, half.vni)
            if not links:
                return
            if half.lease is not None:
                current = [parse_alias(link.alias) for link in links]
                if reason == "expired" and any(
                    lease is not None and lease.expires_at > self.clock() for lease in current
                ):
                    return  # renewed meanwhile
            await self._delete(half.vni)
            await self.reread(half.vni)
        self.counts[("removed", reason)] += 1
        log.info(
            "removed %s tunnel half VNI %s (id %s, vm %s)",
            reason,
            half.vni,
            half.id,
            half.lease.vm_id if half.lease else "?",
        )
