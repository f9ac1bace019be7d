"""Pure logic, no kernel, no server: names and aliases, allocation, MTU, bodies, assembly,
and the shim's option handling."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import ipaddress
import random

import pytest

from services.common.config import load_config
from services.common.errors import BadRequest, ConfigError
from services.tunnel_agent import allocate, bodies, naming
from services.tunnel_agent.config import TunnelAgentConfig
from services.tunnel_agent.halves import Address, Link, Route, Vxlan, assemble, conflicting_routes

from .test_shim import SHIM

ip = ipaddress.ip_address
net = ipaddress.ip_network


def load_shim():
    loader = importlib.machinery.SourceFileLoader("migrate_shim", str(SHIM))
    spec = importlib.util.spec_from_loader("migrate_shim", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


shim = load_shim()


# -- names and aliases -----------------------------------------------------------------------


def test_names_carry_the_vni_and_fit_ifnamsiz():
    assert naming.bridge_name(4096) == "ocbr4096"
    assert len(naming.vxlan_name(naming.VNI_MAX)) <= 15
    assert naming.parse_name("ocvx16777215") == ("vxlan", 16777215)
    assert naming.parse_name("ocbr4096") == ("bridge", 4096)
    for other in ("ocvx16777216", "ocbr04096", "ocbr", "eth0", "ocbr12a", "xocbr1", "ocvx0"):
        assert naming.parse_name(other) is None, other


def test_alias_round_trip_and_refusal_of_foreign_text():
    lease = naming.Lease("0123456789abcdef", 42, "src", 1_800_000_000, 1_799_996_400)
    text = naming.format_alias(lease)
    assert len(text.encode()) < 255
    assert naming.parse_alias(text) == lease
    for bad in (
        None,
        "",
        "uplink to rack 4",
        text.replace("src", "mid"),
        text + " x=1",
        text.replace("0123456789abcdef", "0123"),
    ):
        assert naming.parse_alias(bad) is None


def link(index, name, *, alias=None, group=0, master=None, kind="bridge", vni=None, remote=None):
    vx = Vxlan(vni, ip(remote), ip("10.0.0.1"), 4789, False) if vni else None
    return Link(index, name, kind, alias, group, master, 1450, True, vx)


def test_assemble_takes_only_our_interfaces_and_sees_incomplete_halves():
    alias = naming.format_alias(naming.Lease("00000000000000aa", 1, "src", 2_000_000_000, 1))
    links = [
        link(1, "eth0"),
        link(2, "ocbr4100", alias=alias),
        link(3, "ocvx4100", alias=alias, master=2, kind="vxlan", vni=4100, remote="10.0.0.2"),
        link(4, "ocbr4200"),  # the operator's: our name form, but no alias, no group
        link(5, "ocbr4300", group=naming.GROUP_MARK),  # left half-built by a killed agent
    ]
    addrs = [Address(2, "ocbr4100", ip("192.168.69.1"), 30, "inet", "global")]
    halves = {h.vni: h for h in assemble(links, addrs)}
    assert set(halves) == {4100, 4300}
    whole = halves[4100]
    assert whole.complete and whole.id == "00000000000000aa"
    assert (str(whole.local_ip), str(whole.peer_ip)) == ("192.168.69.1", "192.168.69.2")
    assert not whole.expired(1_999_999_999) and whole.expired(2_000_000_000)
    assert not halves[4300].complete


def test_pool_overlap_check_ignores_default_routes_and_our_own():
    pool = net("192.168.69.0/24")
    routes = [
        Route(net("0.0.0.0/0"), 2, 254, "unicast"),
        Route(net("192.168.69.0/30"), 9, 254, "unicast"),  # one of our halves
        Route(net("192.168.0.0/16"), 2, 254, "unicast"),
        Route(net("10.0.0.0/8"), 2, 254, "unicast"),
    ]
    clash = conflicting_routes(pool, routes, own={9})
    assert [str(r.dst) for r in clash] == ["192.168.0.0/16"]
    assert clash[0].describe({2: "eth0"}) == "192.168.0.0/16 dev eth0"


# -- allocation and MTU ----------------------------------------------------------------------


def test_overlay_mtu_is_the_underlay_minus_vxlan_overhead():
    assert allocate.overlay_mtu(1500, 4) == 1450
    assert allocate.overlay_mtu(1500, 6) == 1430
    assert allocate.overlay_mtu(9000, 4) == 8950


def test_ends_of_a_slash_30():
    assert allocate.ends(net("192.168.69.4/30")) == (ip("192.168.69.5"), ip("192.168.69.6"))
    assert allocate.subnet_of(ip("192.168.69.6")) == net("192.168.69.4/30")


def test_picks_never_hand_out_a_used_value_and_report_exhaustion():
    rng = random.Random(1)
    used = set(range(4096, 8191))
    assert allocate.pick_vni(rng, 4096, 8191, used) == 8191
    assert allocate.pick_vni(rng, 4096, 8191, used | {8191}) is None
    pool = net("10.0.0.0/28")  # four /30s
    taken = {net("10.0.0.0/30"), net("10.0.0.8/30"), net("10.0.0.12/30")}
    assert allocate.pick_subnet(rng, pool, taken) == net("10.0.0.4/30")
    assert allocate.pick_subnet(rng, pool, taken | {net("10.0.0.4/30")}) is None
    picks = {allocate.pick_vni(rng, 1, 1 << 24 - 1, set()) for _ in range(50)}
    assert len(picks) > 40  # random, so concurrent sources rarely collide


def test_used_subnets_are_the_slash_30s_holding_an_address_of_the_pool():
    pool = net("192.168.69.0/24")
    used = allocate.used_subnets(pool, [ip("192.168.69.6"), ip("10.1.1.1"), ip("192.168.69.1")])
    assert used == {net("192.168.69.4/30"), net("192.168.69.0/30")}


# -- flags -----------------------------------------------------------------------------------


def config(*argv):
    return load_config(TunnelAgentConfig, list(argv), prog="t", description="")


def test_flag_defaults_and_validation():
    c = config("--insecure-no-auth")
    assert str(c.listen) == "0.0.0.0:9933" and c.peer_port == 9933
    assert str(c.overlay_pool) == "192.168.69.0/24" and tuple(c.vni_range) == (4096, 8191)
    assert c.mtu == "auto" and c.fixed_mtu is None and c.lease_ttl == 3600
    assert config("--insecure-no-auth", "--mtu", "1400").fixed_mtu == 1400
    with pytest.raises(ConfigError, match="--token-file is required"):
        config()
    for bad in (
        ["--overlay-pool", "fd00::/64"],
        ["--overlay-pool", "10.0.0.0/31"],
        ["--overlay-pool", "10.0.0.1/24"],
        ["--vni-range", "0-10"],
        ["--vni-range", "9-3"],
        ["--vni-range", "1-16777216"],
        ["--mtu", "100"],
        ["--lease-ttl", "0"],
        ["--peer-timeout", "nan"],
    ):
        with pytest.raises(ConfigError):
            config("--insecure-no-auth", *bad)


# -- request bodies --------------------------------------------------------------------------


def test_open_body():
    assert bodies.parse_open({"vm_id": 42, "peer": "KVM-02.example."}) == (42, "kvm-02.example")
    assert bodies.parse_open({"vm_id": 0, "peer": "[2001:db8::1]"}) == (0, ip("2001:db8::1"))
    for bad, needle in (
        ([], "JSON object"),
        ({"peer": "x"}, "vm_id is missing"),
        ({"vm_id": True, "peer": "x"}, "not an integer"),
        ({"vm_id": -1, "peer": "x"}, "between"),
        ({"vm_id": 1}, "peer is missing"),
        ({"vm_id": 1, "peer": 5}, "not a string"),
        ({"vm_id": 1, "peer": "a b"}, "neither"),
        ({"vm_id": 1, "peer": "x" * 254}, "over 253"),
        ({"vm_id": 1, "peer": " "}, "empty"),
    ):
        with pytest.raises(BadRequest, match=needle):
            bodies.parse_open(bad)


def accept_body(**changes):
    body = {
        "vm_id": 1,
        "vni": 5000,
        "peer": "10.0.0.1",
        "local_ip": "192.168.69.6",
        "peer_ip": "192.168.69.5",
        "mtu": 1450,
        "expires_at": 2000,
        "created_at": 1000,
    }
    body.update(changes)
    return body


def test_accept_body_is_checked_against_the_pool_and_the_clock():
    pool = net("192.168.69.0/24")
    spec = bodies.parse_accept(accept_body(), pool, now=1500)
    assert (spec.vni, str(spec.local_ip), str(spec.peer)) == (5000, "192.168.69.6", "10.0.0.1")
    for change, needle in (
        ({"local_ip": "10.9.9.2", "peer_ip": "10.9.9.1"}, "outside"),
        ({"local_ip": "192.168.69.5", "peer_ip": "192.168.69.6"}, "first/second"),
        ({"peer": "127.0.0.1"}, "unicast"),
        ({"peer": "fe80::1"}, "unicast"),
        ({"vni": 0}, "between"),
        ({"mtu": 10}, "between"),
        ({"expires_at": 1400}, "past"),
        ({"peer": "nope"}, "not an IP"),
    ):
        with pytest.raises(BadRequest, match=needle):
            bodies.parse_accept(accept_body(**change), pool, now=1500)


# -- the shim's pure parts ------------------------------------------------------------------


def test_kvmrc_is_read_as_upstream_load_env_reads_it():
    text = (
        "export LANG=C\n"
        "# comment\n"
        "#MIGRATE_OPTIONS=--unsafe\n"
        'MIGRATE_OPTIONS="--unsafe --compressed"\n'
        "SYNC_TIME=yes # trailing comment\n"
        "ONE_COGNIT_TUNNEL_FALLBACK='fail'\n"
        "\n"
        "not a line\n"
    )
    assert shim.parse_kvmrc(text) == {
        "LANG": "C",
        "MIGRATE_OPTIONS": "--unsafe --compressed",
        "SYNC_TIME": "yes",
        "ONE_COGNIT_TUNNEL_FALLBACK": "fail",
    }


def test_overlay_options_replace_the_operators_and_keep_the_rest():
    ours = shim.overlay_options("192.168.69.6", shared=False)
    assert ours == [
        "--migrateuri",
        "tcp://192.168.69.6",
        "--listen-address",
        "192.168.69.6",
        "--disks-uri",
        "tcp://192.168.69.6",
    ]
    assert shim.overlay_options("192.168.69.6", shared=True)[-1] == "192.168.69.6"
    assert shim.overlay_options("fd00::2", shared=None)[1] == "tcp://[fd00::2]"
    merged = shim.merge_options(
        "--unsafe --migrateuri tcp://a --disks-port 49000 --listen-address=0.0.0.0 --compressed",
        ours,
    )
    assert merged == "--unsafe --compressed " + " ".join(ours)
    with pytest.raises(ValueError):
        shim.overlay_options("192.168.69.6; rm -rf /", shared=True)


def test_virsh_rewrite_touches_migrate_only():
    ours = ["--migrateuri", "tcp://192.168.69.6"]
    argv = [
        "--connect",
        "qemu:///system",
        "migrate",
        "--live",
        "--migrateuri",
        "tcp://x",
        "one-1",
        "qemu+ssh://kvm-b/system",
    ]
    assert shim.rewrite_virsh(argv, ours) == [
        "--connect",
        "qemu:///system",
        "migrate",
        *ours,
        "--live",
        "one-1",
        "qemu+ssh://kvm-b/system",
    ]
    for other in (["--connect", "qemu:///system", "resume", "one-1"], ["-r", "dumpxml", "x"], []):
        assert shim.rewrite_virsh(other, ours) == other


def test_action_data_and_leading_flags():
    from .standins import action_xml

    assert shim.action_facts(action_xml(7, shared=False)) == (7, False)
    assert shim.action_facts(action_xml(7, shared=True)) == (7, True)
    assert shim.action_facts(b"<not xml") == (None, None)
    assert shim.split_flags(["--fallback", "fail", "one-1", "b"]) == (
        {"ONE_COGNIT_TUNNEL_FALLBACK": "fail"},
        ["one-1", "b"],
    )
    assert shim.split_flags(["one-1", "--fallback", "fail"])[1] == ["one-1", "--fallback", "fail"]
