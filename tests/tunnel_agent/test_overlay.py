"""A tunnel between two hosts in network namespaces carries real traffic, then leaves nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit import wait_for
from testkit.netns import Lab

from .probes import Capture, ping, tcp_stream


class Pair:
    def __init__(self, lab: Lab, family: int = 4, mtu: int = 1500) -> None:
        (self.a, self.ip_a), (self.b, self.ip_b) = lab.hosts(2, family=family, mtu=mtu)
        self.A, self.B = lab.agents((self.a, self.b))


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with Lab() as lab:
        yield Pair(lab)


def names(ns) -> set[str]:
    return {n for n in ns.link_names() if n.startswith("oc")}


def test_tunnel_carries_ping_df_1400_and_a_tcp_stream_as_vxlan(pair):
    status, t = pair.A.request("POST", "/v1/tunnels", {"vm_id": 42, "peer": pair.ip_b})
    assert status == 201, t
    assert set(t) == {"id", "vni", "local_ip", "peer_ip", "mtu", "expires_at"}
    assert 4096 <= t["vni"] <= 8191 and t["mtu"] == 1500 - 50
    vni = t["vni"]
    bridge, vxlan = f"ocbr{vni}", f"ocvx{vni}"
    assert names(pair.a) == names(pair.b) == {bridge, vxlan}
    # Both ends as SPEC says: VXLAN to the peer's underlay address, port 4789, learning off.
    for ns, remote in ((pair.a, pair.ip_b), (pair.b, pair.ip_a)):
        info = ns.link(vxlan)
        data = info["linkinfo"]["info_data"]
        assert data["id"] == vni and data["port"] == 4789 and data["remote"] == remote
        assert data["learning"] is False
        assert info["master"] == bridge and info["mtu"] == t["mtu"]
        assert ns.link(bridge)["mtu"] == t["mtu"]
        assert info["ifalias"].startswith(f"one-cognit-tunnel id={t['id']} vm=42 ")
    # The overlay answers: the addresses ping each other, 1400 bytes with DF pass.
    assert wait_for(lambda: ping(pair.a, t["peer_ip"]), 5, "ping over the overlay")
    assert ping(pair.b, t["local_ip"])
    assert ping(pair.a, t["peer_ip"], size=1400)
    assert ping(pair.a, t["peer_ip"], size=t["mtu"])
    with pytest.raises(OSError):  # one byte over the overlay MTU cannot leave with DF
        ping(pair.a, t["peer_ip"], size=t["mtu"] + 1)
    # 32 MB of TCP to the destination's overlay address travel as VXLAN on the underlay.
    before = [
        ns.link(dev)["stats64"] for ns, dev in ((pair.a, vxlan), (pair.b, vxlan), (pair.b, "u1b"))
    ]
    nbytes = 32 << 20
    with Capture(pair.b, "u1b") as cap:
        assert tcp_stream(pair.a, pair.b, t["peer_ip"], nbytes) == nbytes
    after = [
        ns.link(dev)["stats64"] for ns, dev in ((pair.a, vxlan), (pair.b, vxlan), (pair.b, "u1b"))
    ]
    assert after[0]["tx"]["bytes"] - before[0]["tx"]["bytes"] >= nbytes  # into VXLAN at a
    assert after[1]["rx"]["bytes"] - before[1]["rx"]["bytes"] >= nbytes  # out of VXLAN at b
    assert after[2]["rx"]["bytes"] - before[2]["rx"]["bytes"] >= nbytes  # over the underlay
    # What crossed the underlay was UDP 4789 with this tunnel's VNI (a capture may miss
    # frames when the machine is busy, hence a share and not the total).
    assert cap.vxlan_bytes.get(vni, 0) >= nbytes // 2, cap.vxlan_packets
    assert cap.bare_tcp_to.get(t["peer_ip"], 0) == 0  # nothing to the overlay went bare
    # The agent reports the counters it reads from the kernel.
    listed = {x["id"]: x for x in pair.A.tunnels()}[t["id"]]
    assert listed["counters"]["tx_bytes"] >= nbytes and listed["state"] == "up"
    # DELETE removes both ends, and again is harmless.
    status, gone = pair.A.request("DELETE", f"/v1/tunnels/{t['id']}")
    assert status == 200 and gone == {"id": t["id"], "local": "deleted", "peer": "deleted"}
    assert names(pair.a) == names(pair.b) == set()
    status, again = pair.A.request("DELETE", f"/v1/tunnels/{t['id']}")
    assert status == 200 and again["local"] == "absent"
    with pytest.raises(OSError):  # no route to the overlay any more
        ping(pair.a, t["peer_ip"], timeout=0.3)


def test_same_vm_and_peer_returns_the_existing_tunnel_with_a_renewed_lease(pair):
    status, first = pair.A.request("POST", "/v1/tunnels", {"vm_id": 7, "peer": pair.ip_b})
    assert status == 201
    status, again = pair.A.request("POST", "/v1/tunnels", {"vm_id": 7, "peer": pair.ip_b})
    assert status == 200
    assert {k: again[k] for k in ("id", "vni", "local_ip", "peer_ip", "mtu")} == {
        k: first[k] for k in ("id", "vni", "local_ip", "peer_ip", "mtu")
    }
    assert again["expires_at"] >= first["expires_at"]
    dst = {x["id"]: x for x in pair.B.tunnels()}[first["id"]]
    assert dst["expires_at"] == again["expires_at"] and dst["role"] == "dst"
    # Another VM to the same peer is another tunnel, with its own VNI and /30.
    status, other = pair.A.request("POST", "/v1/tunnels", {"vm_id": 8, "peer": pair.ip_b})
    assert status == 201 and other["vni"] != first["vni"]
    assert other["local_ip"].rsplit(".", 1)[0] != first["local_ip"] or (
        int(other["local_ip"].rsplit(".", 1)[1]) // 4
        != int(first["local_ip"].rsplit(".", 1)[1]) // 4
    )
    for t in (first, other):
        assert pair.B.request("DELETE", f"/v1/tunnels/{t['id']}")[0] == 200  # either end may close
    assert names(pair.a) == names(pair.b) == set()


def test_ipv6_underlay_and_the_route_mtu(lab):
    (a, ip_a), (b, ip_b) = lab.hosts(2, family=6, mtu=1500)
    A, _B = lab.agents((a, b), host="::")  # peers reach each other over IPv6
    status, t = A.request("POST", "/v1/tunnels", {"vm_id": 1, "peer": ip_b})
    assert status == 201, t
    assert t["mtu"] == 1500 - 70
    assert a.link(f"ocvx{t['vni']}")["linkinfo"]["info_data"]["remote6"] == ip_b
    assert wait_for(lambda: ping(a, t["peer_ip"], size=1400), 5, "ping over an IPv6 underlay")
    with Capture(b, "u1b") as cap:
        assert tcp_stream(a, b, t["peer_ip"], 4 << 20) == 4 << 20
    assert cap.vxlan_bytes.get(t["vni"], 0) >= 2 << 20
    assert b.link(f"ocvx{t['vni']}")["stats64"]["rx"]["bytes"] >= 4 << 20
    assert A.request("DELETE", f"/v1/tunnels/{t['id']}")[0] == 200
    # A route with its own MTU (a path with a smaller MTU) sets the overlay's.
    a.ip("-6", "route", "add", f"{ip_b}/128", "dev", "u1a", "mtu", "1400")
    status, t = A.request("POST", "/v1/tunnels", {"vm_id": 2, "peer": ip_b})
    assert status == 201 and t["mtu"] == 1400 - 70
    assert A.request("DELETE", f"/v1/tunnels/{t['id']}")[0] == 200


def test_peer_by_host_name_and_the_smaller_mtu_of_both_ends(lab):
    (a, ip_a), (b, ip_b) = lab.hosts(2, mtu=9000)
    lab.hosts_file(a, {"kvm-b": ip_b})
    b.ip("route", "add", f"{ip_a}/32", "dev", "u1b", "mtu", "1500")  # b's way back is smaller
    A, _B = lab.agents((a, b))
    status, t = A.request("POST", "/v1/tunnels", {"vm_id": 3, "peer": "kvm-b"})
    assert status == 201, t
    assert t["mtu"] == 1500 - 50
    assert a.link(f"ocvx{t['vni']}")["mtu"] == b.link(f"ocvx{t['vni']}")["mtu"] == 1450
    assert A.request("DELETE", f"/v1/tunnels/{t['id']}")[0] == 200
