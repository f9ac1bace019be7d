"""Faults: a killed agent, a peer down or slow, a half removed by hand, many at once, no token."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import time

from testkit import wait_for

from .probes import ping


def ours(ns) -> set[str]:
    return {n for n in ns.link_names() if n.startswith(("ocbr", "ocvx"))}


def set_alias(ns, name: str, **changes: str) -> None:
    fields = dict(f.split("=", 1) for f in ns.link(name)["ifalias"].split()[1:])
    fields.update(changes)
    text = "one-cognit-tunnel " + " ".join(f"{k}={v}" for k, v in fields.items())
    ns.ip("link", "set", "dev", name, "alias", text)


def test_killed_agent_restarts_finds_its_tunnels_and_removes_expired_and_broken_ones(lab):
    (a, ip_a), (b, ip_b) = lab.hosts(2)
    A, B = lab.agents((a, b))
    tunnels = [A.request("POST", "/v1/tunnels", {"vm_id": i, "peer": ip_b})[1] for i in (1, 2)]
    keep, expire = tunnels
    A.kill()
    # While it is down: one tunnel's lease runs out (written by hand, as time would), an
    # agent killed between "create" and "set alias" left a bare marked bridge, and the
    # operator has a bridge whose name looks like ours.
    for name in (f"ocbr{expire['vni']}", f"ocvx{expire['vni']}"):
        set_alias(a, name, exp=str(int(time.time()) - 5))
    a.ip("link", "add", "ocbr5000", "group", str(0x6F6E6563), "type", "bridge")
    a.ip("link", "add", "ocbr6000", "type", "bridge")
    A2 = lab.agent(a)
    removed = "one_cognit_tunnel_agent_sweep_removed_total"
    wait_for(
        lambda: (
            A2.metric(removed, reason="expired") == 1
            and A2.metric(removed, reason="incomplete") == 1
        ),
        10,
        "the start-up sweep to remove the expired half and the half-built leftover",
    )
    assert ours(a) == {f"ocbr{keep['vni']}", f"ocvx{keep['vni']}", "ocbr6000"}
    listed = A2.tunnels()
    assert [(t["id"], t["vni"], t["role"], t["state"]) for t in listed] == [
        (keep["id"], keep["vni"], "src", "up")
    ]
    # It serves the tunnel it found: it still carries traffic, and DELETE closes both ends.
    assert wait_for(lambda: ping(a, keep["peer_ip"], size=1400), 5, "ping after restart")
    assert A2.request("DELETE", f"/v1/tunnels/{keep['id']}")[1]["peer"] == "deleted"
    assert ours(a) == {"ocbr6000"}  # the operator's bridge is never touched
    # The peer's half of the expired tunnel goes with its own lease (or the orphan check).
    assert {t["id"] for t in B.tunnels()} == {expire["id"]}


def test_peer_down_or_silent_fails_in_bounded_time_and_leaves_nothing(lab):
    (a, ip_a), (b, ip_b) = lab.hosts(2)
    A = lab.agent(a, "--peer-timeout", "1")
    started = time.monotonic()
    status, body = A.request("POST", "/v1/tunnels", {"vm_id": 1, "peer": ip_b})
    assert status == 502 and "unreachable" in body["error"], body
    assert time.monotonic() - started < 1.5
    # A peer that accepts the connection and never answers.
    silent = b.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind((ip_b, 9933))
    silent.listen(8)
    try:
        started = time.monotonic()
        status, body = A.request("POST", "/v1/tunnels", {"vm_id": 1, "peer": ip_b})
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert status == 504 and "did not answer" in body["error"], body
    assert elapsed < 4  # the PUT's second, the best-effort DELETE's second, and slack
    assert ours(a) == ours(b) == set()
    assert A.tunnels() == []


def test_bad_peers_get_4xx(lab):
    (a, ip_a), (b, ip_b) = lab.hosts(2)
    A = lab.agent(a)
    cases = {
        ip_a: "address of this host",
        "127.0.0.1": "not a unicast address",
        "no-such-host.invalid": "cannot resolve",
        "10.99.0.1": "no route",
        "not a host!": "neither an IP address nor a host name",
    }
    for peer, needle in cases.items():
        status, body = A.request("POST", "/v1/tunnels", {"vm_id": 1, "peer": peer})
        assert status == 400 and needle in body["error"], (peer, body)
    assert A.metric(
        "one_cognit_tunnel_agent_tunnel_creates_total", role="src", result="bad_request"
    ) == len(cases)
    assert ours(a) == set()


def test_peer_half_deleted_by_hand_is_an_orphan_and_expiry_ends_tunnels(lab):
    (a, ip_a), (b, ip_b) = lab.hosts(2)
    flags = ("--sweep-interval", "0.2", "--orphan-grace", "0", "--lease-ttl", "3")
    A, B = lab.agents((a, b), *flags)
    _, t = A.request("POST", "/v1/tunnels", {"vm_id": 5, "peer": ip_b})
    b.ip("link", "del", f"ocvx{t['vni']}")
    b.ip("link", "del", f"ocbr{t['vni']}")
    wait_for(
        lambda: A.metric("one_cognit_tunnel_agent_sweep_removed_total", reason="orphaned") == 1,
        5,
        "the sweep to remove the source's orphaned half",
    )
    assert not ours(a)
    # An unrenewed lease ends: both halves go within the lease plus a sweep.
    _, t = A.request("POST", "/v1/tunnels", {"vm_id": 6, "peer": ip_b})
    assert ours(a) and ours(b)
    wait_for(lambda: not ours(a) and not ours(b), 8, "both halves to expire")
    wait_for(
        lambda: (
            A.metric("one_cognit_tunnel_agent_tunnels", role="src") == 0
            and A.metric("one_cognit_tunnel_agent_tunnels_past_lease") == 0
        ),
        5,
        "the metrics to show no tunnel left",
    )


def test_32_concurrent_tunnels_from_two_sources_to_one_peer(lab):
    hosts = lab.hosts(3)
    (a, ip_a), (b, ip_b), (c, ip_c) = hosts
    # A small VNI range and pool: the two sources must collide at B and pick again.
    flags = ("--vni-range", "4096-4159", "--overlay-pool", "10.250.0.0/24")
    A, B, C = lab.agents((a, b, c), *flags)
    jobs = [(A, vm) for vm in range(16)] + [(C, vm) for vm in range(16, 32)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(
            pool.map(
                lambda j: j[0].request("POST", "/v1/tunnels", {"vm_id": j[1], "peer": ip_b}), jobs
            )
        )
    assert [s for s, _ in results] == [201] * 32, [r for r in results if r[0] != 201]
    made = [body for _, body in results]
    at_b = B.tunnels()
    assert len(at_b) == 32 and all(t["state"] == "up" and t["role"] == "dst" for t in at_b)
    assert len({t["vni"] for t in at_b}) == 32
    subnets = {ipaddress.ip_network(f"{t['local_ip']}/30", strict=False) for t in at_b}
    assert len(subnets) == 32
    assert {t["id"] for t in at_b} == {t["id"] for t in made}
    by_id = {t["id"]: t for t in at_b}
    for t in made:  # both ends agree
        assert (by_id[t["id"]]["vni"], by_id[t["id"]]["local_ip"]) == (t["vni"], t["peer_ip"])
    conflicts = sum(
        agent.metric("one_cognit_tunnel_agent_allocation_conflicts_total", what=w)
        for agent in (A, C)
        for w in ("vni", "subnet", "None")
    )
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        closed = list(
            pool.map(
                lambda j: j[0].request("DELETE", f"/v1/tunnels/{j[1]['id']}"),
                zip([A] * 16 + [C] * 16, made, strict=True),
            )
        )
    assert all(s == 200 and b["local"] == "deleted" == b["peer"] for s, b in closed), closed
    assert ours(a) == ours(b) == ours(c) == set()
    print(f"re-picks after the peer's 409: {conflicts:g}")


def test_missing_or_wrong_token_is_401_and_creates_nothing(lab):
    (a, ip_a), (b, ip_b) = lab.hosts(2)
    A, B = lab.agents((a, b))
    body = {"vm_id": 1, "peer": ip_b}
    for token in (None, "wrong-token"):
        status, reply = A.request("POST", "/v1/tunnels", body, token=token)
        assert status == 401 and reply == {"error": "missing or wrong bearer token"}
    put = {
        "vm_id": 1,
        "vni": 5000,
        "peer": ip_a,
        "local_ip": "192.168.69.2",
        "peer_ip": "192.168.69.1",
        "mtu": 1450,
        "expires_at": int(time.time()) + 60,
        "created_at": int(time.time()),
    }
    assert B.request("PUT", "/v1/tunnels/0123456789abcdef", put, token=None)[0] == 401
    assert B.request("PUT", "/v1/tunnels/0123456789abcdef", put, token="nope")[0] == 401
    # Agents with different tokens cannot make tunnels with each other.
    B.service.stop()
    lab.agent(b, token="another-token-entirely")
    status, reply = A.request("POST", "/v1/tunnels", body)
    assert status == 502 and "401" in reply["error"]
    assert ours(a) == ours(b) == set()
    assert B.request("GET", "/v1/addresses", token=None)[0] == 200  # reading needs no token
