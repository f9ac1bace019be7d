"""Address sources read from hostile text: PUBLIC_IP and the agent's reply (pure)."""

from __future__ import annotations

import ipaddress
import json

import pytest

from services.geo.addresses import (
    MAX_ADDRESSES,
    AddressesError,
    from_resolver,
    parse_agent_addresses,
    parse_public_ip,
    public_in_order,
)
from testkit.tunnel_standin import entry


def ips(addresses) -> list[str]:
    return [str(a.address) for a in addresses]


def test_public_ip_keeps_the_operators_order_and_says_what_is_not_an_address():
    addresses, bad = parse_public_ip(" 212.77.98.9  130.206.1.1,10.0.0.1;2001:6b0:7::2 ")
    assert ips(addresses) == ["212.77.98.9", "130.206.1.1", "10.0.0.1", "2001:6b0:7::2"]
    assert bad == []
    assert [a.public for a in addresses] == [True, True, False, True]
    assert addresses[2].why_not == "Private-Use (RFC 1918)"
    assert ips(public_in_order(addresses, keep_order=True)) == [
        "212.77.98.9",
        "130.206.1.1",
        "2001:6b0:7::2",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "999.1.1.1",
        "1.2.3",
        "010.1.1.1",  # leading zeros: refused, not read as octal or decimal
        "8.8.8.8/24",
        "::ffff::1",
        "<script>",
        "\x00\x1b[31m",
        "1" * 500,
    ],
)
def test_public_ip_garbage_is_reported_not_used(text):
    addresses, bad = parse_public_ip(f"{text} 8.8.8.8")
    assert ips(addresses) == ["8.8.8.8"]
    assert len(bad) == 1 and len(bad[0]) <= 60


def test_public_ip_duplicates_zones_and_sizes():
    addresses, bad = parse_public_ip("8.8.8.8 8.8.8.8 fe80::1%eth0 2001:6b0:7::2%1")
    assert ips(addresses) == ["8.8.8.8", "fe80::1", "2001:6b0:7::2"]
    assert bad == []
    many = " ".join(str(ipaddress.IPv4Address(0x08000000 + i)) for i in range(MAX_ADDRESSES + 50))
    addresses, _ = parse_public_ip(many)
    assert len(addresses) == MAX_ADDRESSES
    addresses, bad = parse_public_ip("8.8.8.8 " * 20_000)
    assert addresses == [] and "over" in bad[0]
    assert parse_public_ip("") == ([], [])
    assert parse_public_ip(" , ; ") == ([], [])


def test_agent_reply_every_address_of_every_interface():
    body = json.dumps(
        {
            "addresses": [
                entry("127.0.0.1", "lo", 8, "host"),
                entry("::1", "lo", 128, "host"),
                entry("10.0.0.5", "eth0"),
                entry("193.0.6.139", "eth1"),
                entry("193.166.3.2", "eth1"),  # a second address on the same interface
                entry("fe80::1", "eth1", 64, "link"),
                entry("2001:6a0::1", "eth1", 64, "global"),
            ]
        }
    )
    addresses = parse_agent_addresses(body)
    assert ips(addresses) == [
        "127.0.0.1",
        "::1",
        "10.0.0.5",
        "193.0.6.139",
        "193.166.3.2",
        "fe80::1",
        "2001:6a0::1",
    ]
    assert [a.interface for a in addresses][3:5] == ["eth1", "eth1"]
    # the stable order: IPv4 before IPv6, then by value, whatever order the agent used
    public = public_in_order(reversed(addresses), keep_order=False)
    assert ips(public) == ["193.0.6.139", "193.166.3.2", "2001:6a0::1"]


def test_agent_scope_names_it_does_not_know_are_kept():
    addresses = parse_agent_addresses(json.dumps({"addresses": [entry("8.8.8.8", scope="200")]}))
    assert ips(addresses) == ["8.8.8.8"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe garbage", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[]", "expected"),
        (b'{"addresses": {}}', "expected"),
        (b'{"addresses": [1]}', "must be an object"),
        (json.dumps({"addresses": [{**entry("8.8.8.8"), "family": "inet6"}]}), "not family"),
        (json.dumps({"addresses": [{**entry("8.8.8.8"), "family": "ipx"}]}), "inet or inet6"),
        (json.dumps({"addresses": [{**entry("8.8.8.8"), "address": "x"}]}), "not an IP"),
        (json.dumps({"addresses": [{**entry("8.8.8.8"), "address": 134744072}]}), "string"),
        (json.dumps({"addresses": [{**entry("8.8.8.8"), "prefixlen": 33}]}), "prefixlen"),
        (json.dumps({"addresses": [{**entry("8.8.8.8"), "prefixlen": True}]}), "prefixlen"),
        (json.dumps({"addresses": [{**entry("8.8.8.8"), "prefixlen": "24"}]}), "prefixlen"),
        (json.dumps({"addresses": [{**entry("8.8.8.8"), "interface": "x" * 100}]}), "interface"),
        (json.dumps({"addresses": [{**entry("8.8.8.8"), "scope": None}]}), "scope"),
        (json.dumps({"addresses": [entry("8.8.8.8")] * (MAX_ADDRESSES + 1)}), "over"),
    ],
)
def test_agent_reply_off_its_shape_is_refused_whole(body, says):
    with pytest.raises(AddressesError, match=says):
        parse_agent_addresses(body)


def test_resolver_answers_become_dns_addresses():
    import socket

    infos = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("212.77.98.9", 0)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:6a0::1", 0, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("212.77.98.9", 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("nonsense", 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, ""),
    ]
    addresses = from_resolver(infos)
    assert ips(addresses) == ["212.77.98.9", "2001:6a0::1"]
    assert {a.source for a in addresses} == {"dns"}
