"""geo against the simulator: what it writes into host templates, and what it never does.

Each test runs its own simulator (a real XML-RPC oned) with its own fleet, stand-in
tunnel_agents on the hosts' 127.0.88.x addresses, and geo in-process. Expected locations are
read from DB-IP City Lite directly (`expected`), never through geo.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import subprocess
import sys
import time
import xmlrpc.client

import pytest

from services.geo.dns import loop_resolver
from services.geo.public import is_public
from testkit import async_wait_for, free_port_on
from testkit import tunnel_standin as A
from testkit.tunnel_standin import entry, kernel_addresses

from .lab import ADMIN, expected, geo_lab

NET = "127.0.88"


def host(index: int, name: str, **template: str) -> dict:
    return {"name": name, "hostname": f"{NET}.{index}", "template": template}


def operator_update(lab, host_id: int, template: str) -> None:
    """What `onehost update --append` does: one.host.update(id, tmpl, 1) as oneadmin."""
    proxy = xmlrpc.client.ServerProxy(lab.sim.rpc_url)
    try:
        reply = proxy.one.host.update(ADMIN, host_id, template, 1)
    finally:
        proxy("close")()
    assert reply[0] is True, reply


def geo_attrs(template: dict) -> dict:
    return {k: v for k, v in template.items() if k.startswith("GEOLOCATION")}


async def test_a_public_ip_host_gets_the_database_location_written_once(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    fleet = {
        "hosts": [
            host(1, "stockholm", PUBLIC_IP="192.36.148.17"),
            host(2, "private", PUBLIC_IP="10.0.0.1 100.64.3.3 192.0.2.5 2001:db8::5 2002::1"),
            host(3, "internal"),
        ]
    }
    agents = {
        f"{NET}.2": [entry("10.0.0.2", "eth0"), entry("fe80::1", "eth0", 64, "link")],
        f"{NET}.3": [entry("172.16.5.5", "eth0"), entry("198.18.0.7", "eth1")],
    }
    async with geo_lab(tmp_path, fleet, agents) as lab:
        coords, country = expected("192.36.148.17")
        assert geo_attrs(lab.sim.template(0)) == {
            "GEOLOCATION": coords,
            "GEOLOCATION_COUNTRY": country,
            "GEOLOCATION_SOURCE": "one-geo",
        }
        assert country == "SE"
        # only private and special-purpose addresses: nothing at all
        assert geo_attrs(lab.sim.template(1)) == {}
        assert geo_attrs(lab.sim.template(2)) == {}
        calls = lab.sim.calls()
        assert calls["one.host.update"] == 1
        assert calls["one.hostpool.info"] == 1
        report = await lab.report(0)
        assert (report["outcome"], report["used_source"], report["written_by_geo"]) == (
            "written",
            "PUBLIC_IP",
            True,
        )
        private = await lab.report(1)
        assert private["outcome"] == "no_public_address"
        why = private["reason"]
        assert "Private-Use (RFC 1918)" in why and "agent: 2 addresses, none public" in why
        assert "dns: 1 address, none public (127.0.88.2: Loopback" in why
        internal = await lab.report(2)
        assert "Benchmarking (RFC 2544)" in internal["reason"]
        # the next reconciles write nothing, log nothing new
        lines = len(caplog.records)
        lab.sim.reset_calls()
        await lab.reconcile()
        await lab.reconcile()
        calls = lab.sim.calls()
        assert "one.host.update" not in calls and calls["one.hostpool.info"] == 2
        assert (await lab.report(0))["outcome"] == "unchanged"
        new = [r for r in caplog.records[lines:] if r.name.startswith("services.geo")]
        assert [r.getMessage() for r in new if r.levelno >= logging.INFO] == []
        assert caplog.text.count("host 1 ('private'): nothing written: no public address") == 1
        metrics = await (await lab.client.get("/metrics")).text()
        assert "one_cognit_geo_updates_written_total 1.0" in metrics
        assert 'one_cognit_geo_hosts{outcome="unchanged"} 1.0' in metrics
        assert 'one_cognit_geo_hosts{outcome="no_public_address"} 2.0' in metrics


async def test_two_cities_two_entries_in_order_and_the_first_country(tmp_path):
    warsaw, madrid, warsaw_too = "212.77.98.9", "130.206.1.1", "213.180.141.140"
    fleet = {
        "hosts": [
            host(1, "pl-es", PUBLIC_IP=f"{warsaw} {madrid} {warsaw_too}"),
            host(2, "es-pl", PUBLIC_IP=f"{madrid},{warsaw}"),
        ]
    }
    async with geo_lab(tmp_path, fleet) as lab:
        (w, pl), (m, es) = expected(warsaw), expected(madrid)
        assert expected(warsaw_too)[0] == w  # same city, same point: one entry
        assert (pl, es) == ("PL", "ES")
        first, second = lab.sim.template(0), lab.sim.template(1)
        assert first["GEOLOCATION"] == f"{w} {m}" and first["GEOLOCATION_COUNTRY"] == "PL"
        assert second["GEOLOCATION"] == f"{m} {w}" and second["GEOLOCATION_COUNTRY"] == "ES"
        report = await lab.report(0)
        assert [loc["city"] for loc in report["locations"]] == ["Warsaw", "Madrid", "Warsaw"]


async def test_ipv6_from_public_ip_and_from_the_agent(tmp_path):
    fleet = {"hosts": [host(1, "v6-template", PUBLIC_IP="2001:6b0:7::2"), host(2, "v6-agent")]}
    agents = {
        f"{NET}.2": [
            entry("::1", "lo", 128, "host"),
            entry("fe80::5054:ff:fe12:3456", "eth0", 64, "link"),
            entry("fd00:1::2", "eth0", 64, "global"),
            entry("2001:6a0::1", "eth0", 64, "global"),
        ]
    }
    async with geo_lab(tmp_path, fleet, agents) as lab:
        for host_id, ip in ((0, "2001:6b0:7::2"), (1, "2001:6a0::1")):
            coords, country = expected(ip)
            template = lab.sim.template(host_id)
            assert (template["GEOLOCATION"], template["GEOLOCATION_COUNTRY"]) == (coords, country)
        assert (await lab.report(1))["used_source"] == "agent"


async def test_agent_reports_a_public_interface(tmp_path):
    """Every address of every interface counts, not only the first of each (the seed's bug).

    This is the test to point at a real tunnel_agent once it is on main.
    """
    fleet = {"hosts": [host(1, "edge")]}
    agents = {
        f"{NET}.1": [
            entry("127.0.0.1", "lo", 8, "host"),
            entry("10.0.0.5", "eth0"),
            entry("193.166.3.2", "eth1"),
            entry("193.0.6.139", "eth1"),  # the second address of eth1
            entry("fe80::1", "eth1", 64, "link"),
        ]
    }
    async with geo_lab(tmp_path, fleet, agents) as lab:
        amsterdam, espoo = expected("193.0.6.139"), expected("193.166.3.2")
        template = lab.sim.template(0)
        # the stable order: by address, whatever order the agent listed them in
        assert template["GEOLOCATION"] == f"{amsterdam[0]} {espoo[0]}"
        assert template["GEOLOCATION_COUNTRY"] == amsterdam[1] == "NL"
        report = await lab.report(0)
        assert report["sources"] == {"PUBLIC_IP": "not set", "agent": "5 addresses, 2 public"}
        assert [a["interface"] for a in report["addresses"]] == [
            "lo",
            "eth0",
            "eth1",
            "eth1",
            "eth1",
        ]
        assert lab.agents.requests[f"{NET}.1"] == 1


async def test_the_real_tunnel_agent_serves_the_addresses(tmp_path, start_service):
    """The real tunnel_agent of this machine's namespace answers geo's question.

    What it reports must be every address the kernel has (`ip -j addr`), and geo must read
    all of them; whether one is public depends on the machine, and geo's verdict is checked
    against the registry table either way.
    """
    port = free_port_on([f"{NET}.50"])
    agent = start_service(
        [sys.executable, "-m", "services.tunnel_agent", "--listen", f"{NET}.50:{port}",
         "--insecure-no-auth", "--log-level", "warning"]
    )  # fmt: skip
    agent.wait_http(f"http://{NET}.50:{port}/healthz")
    kernel = {(a["interface"], a["address"]) for a in kernel_addresses()}
    fleet = {"hosts": [{"name": "this-machine", "hostname": f"{NET}.50"}]}
    async with geo_lab(tmp_path, fleet, agent_port=port) as lab:
        report = await lab.report(0)
        from_agent = [a for a in report["addresses"] if a["source"] == "agent"]
        assert {(a["interface"], a["address"]) for a in from_agent} == kernel, report["sources"]
        public = [a["address"] for a in report["addresses"] if a["public"]]
        assert all(is_public(ipaddress.ip_address(ip)) for ip in public)
        if report["used_source"] == "agent":
            assert report["outcome"] in ("written", "no_match")
        else:
            assert not any(a["public"] for a in from_agent)


@pytest.fixture
def netns():
    """A network namespace with public and private addresses on a veth (no dummy module here)."""
    name = f"geo-test-{time.monotonic_ns() % 10**9}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    try:
        for cmd in (
            ["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"],
            ["addr", "add", "10.20.0.2/24", "dev", "uplink0"],
            ["addr", "add", "192.36.148.17/24", "dev", "uplink0"],
            ["addr", "add", "2001:6b0:7::2/64", "dev", "uplink0", "nodad"],
            ["link", "set", "uplink0", "up"],
            ["link", "set", "lo", "up"],
        ):
            subprocess.run(["ip", "-n", name, *cmd], check=True, capture_output=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


async def test_addresses_read_from_a_real_kernel_namespace(tmp_path, netns):
    """The agent's reply built from the kernel's own address dump of a namespace."""
    served = kernel_addresses(netns)
    assert {a["address"] for a in served} >= {"10.20.0.2", "192.36.148.17", "2001:6b0:7::2"}
    fleet = {"hosts": [host(1, "netns-host")]}
    async with geo_lab(tmp_path, fleet, {f"{NET}.1": served}) as lab:
        stockholm, sunet = expected("192.36.148.17"), expected("2001:6b0:7::2")
        template = lab.sim.template(0)
        assert template["GEOLOCATION"].split() == list(dict.fromkeys([stockholm[0], sunet[0]]))
        assert template["GEOLOCATION_COUNTRY"] == "SE"


async def test_a_hand_set_location_survives_every_reconcile(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    fleet = {
        "hosts": [
            host(1, "by-hand", PUBLIC_IP="8.8.8.8", GEOLOCATION="59.3294,18.0687"),
            host(2, "marked", PUBLIC_IP="8.8.8.8", GEOLOCATION="1,2", GEOLOCATION_SOURCE="manual"),
            host(3, "country-only", PUBLIC_IP="8.8.8.8", GEOLOCATION_COUNTRY="SE"),
            host(4, "ours", PUBLIC_IP="212.77.98.9"),
        ]
    }
    async with geo_lab(tmp_path, fleet) as lab:
        before = [lab.sim.template(i) for i in range(3)]
        for _ in range(3):
            await lab.reconcile()
        assert [lab.sim.template(i) for i in range(3)] == before
        assert lab.sim.calls()["one.host.update"] == 1  # host 3 only
        for i in range(3):
            report = await lab.report(i)
            assert report["outcome"] == "operator" and not report["written_by_geo"]
            assert caplog.text.count(f"host {i} (") == 1  # said once, not every pass
        # an operator takes over a host geo located: geo leaves it from then on
        operator_update(lab, 3, 'GEOLOCATION = "48.8566,2.3522"\nGEOLOCATION_SOURCE = "manual"')
        lab.sim.reset_calls()
        await lab.reconcile()
        assert lab.sim.template(3)["GEOLOCATION"] == "48.8566,2.3522"
        assert "one.host.update" not in lab.sim.calls()
        assert (await lab.report(3))["outcome"] == "operator"
        # ...and gives it back by removing the marker's value
        operator_update(lab, 3, 'GEOLOCATION_SOURCE = "one-geo"')
        await lab.reconcile()
        assert lab.sim.template(3)["GEOLOCATION"] == expected("212.77.98.9")[0]


async def test_addresses_that_change_are_caught_by_the_reconcile(tmp_path):
    fleet = {"hosts": [host(1, "moving", PUBLIC_IP="192.36.148.17")]}
    async with geo_lab(tmp_path, fleet) as lab:
        assert lab.sim.template(0)["GEOLOCATION_COUNTRY"] == "SE"
        operator_update(lab, 0, 'PUBLIC_IP = "130.206.1.1"')
        await lab.reconcile()
        coords, country = expected("130.206.1.1")
        template = lab.sim.template(0)
        assert (template["GEOLOCATION"], template["GEOLOCATION_COUNTRY"]) == (coords, country)
        # no public address any more: the last location stays (nothing is written)
        operator_update(lab, 0, 'PUBLIC_IP = "10.1.1.1"')
        lab.sim.reset_calls()
        await lab.reconcile()
        assert lab.sim.template(0)["GEOLOCATION"] == coords
        assert "one.host.update" not in lab.sim.calls()


async def test_public_ip_garbage_costs_that_source_only(tmp_path, caplog):
    fleet = {
        "hosts": [
            host(1, "garbage", PUBLIC_IP="not-an-ip ,;, 999.1.1.1 <b>"),
            host(2, "huge", PUBLIC_IP="8.8.8.8 " * 20_000),
        ]
    }
    agents = {f"{NET}.1": [entry("193.166.3.2")], f"{NET}.2": [entry("193.0.6.139")]}
    async with geo_lab(tmp_path, fleet, agents) as lab:
        assert lab.sim.template(0)["GEOLOCATION"] == expected("193.166.3.2")[0]
        assert lab.sim.template(1)["GEOLOCATION"] == expected("193.0.6.139")[0]
        report = await lab.report(0)
        assert "not addresses: 'not-an-ip', '999.1.1.1', '<b>'" in report["sources"]["PUBLIC_IP"]
        assert report["used_source"] == "agent"
        assert "holds what is not an address" in caplog.text


async def test_bad_agents_cost_their_host_only(tmp_path):
    faults = [A.SLOW, A.GARBAGE, A.HUGE, A.HUGE_CHUNKED, A.DEEP, A.HTTP_500, A.WRONG_SHAPE, A.DOWN]
    faults += [A.SLOW, A.SLOW]
    hosts = [host(i + 1, f"bad-{i}-{fault}") for i, fault in enumerate(faults)]
    good = len(faults) + 1
    hosts.append(host(good, "good"))
    agents = {f"{NET}.{i + 1}": fault for i, fault in enumerate(faults)}
    agents[f"{NET}.{good}"] = [entry("10.0.0.9"), entry("212.77.98.9")]
    async with geo_lab(tmp_path, {"hosts": hosts}, agents, agent_timeout=1.0) as lab:
        # hosts are asked at the same time (the first pass, at start): three slow agents were
        # waiting together, so they cost one --agent-timeout, not three
        assert lab.agents.slow_most == 3
        assert lab.sim.template(good - 1)["GEOLOCATION"] == expected("212.77.98.9")[0]
        reasons = {}
        for i, fault in enumerate(faults):
            report = await lab.report(i)
            assert report["outcome"] == "no_public_address", (fault, report)
            assert "GEOLOCATION" not in lab.sim.template(i)
            reasons[fault] = report["sources"]["agent"]
        assert "no answer in 1s" in reasons[A.SLOW]
        assert "not JSON" in reasons[A.GARBAGE]
        assert "reply of 3145728 bytes, over 1048576" in reasons[A.HUGE]
        assert "over 1048576 bytes" in reasons[A.HUGE_CHUNKED]
        assert "nested too deeply" in reasons[A.DEEP]
        assert "HTTP 500" in reasons[A.HTTP_500]
        assert "scope" in reasons[A.WRONG_SHAPE]
        assert "Cannot connect" in reasons[A.DOWN] or "refused" in reasons[A.DOWN]
        metrics = await (await lab.client.get("/metrics")).text()
        for reason in ("timeout", "bad_reply", "too_large", "http_status", "unreachable"):
            assert f'one_cognit_geo_source_errors_total{{reason="{reason}",source="agent"}}' in (
                metrics
            ), reason


def _resolver(answers: dict[str, object]):
    """A DNS stand-in: names map to addresses, an exception, or "hang"; others: the real one."""

    async def resolve(name: str):
        answer = answers.get(name)
        if answer is None:
            loop = asyncio.get_running_loop()
            return await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        if answer == "hang":
            await asyncio.sleep(3600)
        if isinstance(answer, BaseException):
            raise answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 0)) for ip in answer]

    return resolve


async def test_dns_of_hostname_is_the_last_source(tmp_path):
    # A DNS stand-in answers the DNS source; agents' names resolve offline (lab.OfflineNames:
    # localhost, where no agent listens on the port), so nothing leaves the machine.
    fleet = {
        "hosts": [
            {"name": "named", "hostname": "localhost"},
            {"name": "no-dns", "hostname": "nowhere.geo.test"},
            {"name": "slow-dns", "hostname": "slow.geo.test"},
            {"name": "bad-name", "hostname": "bad name/x"},
        ]
    }
    resolver = _resolver(
        {
            "localhost": ["10.0.0.1", "212.77.98.9"],
            "nowhere.geo.test": socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "slow.geo.test": "hang",
        }
    )
    async with geo_lab(tmp_path, fleet, resolver=resolver) as lab:
        assert lab.sim.template(0)["GEOLOCATION"] == expected("212.77.98.9")[0]
        named = await lab.report(0)
        assert named["used_source"] == "dns" and "Cannot connect" in named["sources"]["agent"]
        nowhere = await lab.report(1)
        assert "does not resolve: Name or service not known" in nowhere["sources"]["dns"]
        slow = await lab.report(2)
        assert "did not resolve in 0.5s" in slow["sources"]["dns"]
        bad = await lab.report(3)
        assert "not a usable address" in bad["sources"]["agent"]
        assert "cannot be resolved" in bad["sources"]["dns"]
        for host_id in (1, 2, 3):
            assert "GEOLOCATION" not in lab.sim.template(host_id)


async def test_dns_through_the_machines_resolver(tmp_path):
    fleet = {"hosts": [{"name": "local", "hostname": "localhost"}]}
    async with geo_lab(tmp_path, fleet, resolver=loop_resolver) as lab:
        report = await lab.report(0)
        assert report["outcome"] == "no_public_address"
        assert "dns: " in report["reason"] and "Loopback (RFC 1122)" in report["reason"]


async def test_oned_refusing_the_update(tmp_path, caplog):
    fleet = {
        "hosts": [host(1, "refused", PUBLIC_IP="212.77.98.9")],
        "users": [{"name": "bob", "password": "bobpass"}],
    }
    async with geo_lab(tmp_path, fleet, through_proxy=True) as lab:
        lab.proxy.update_session = "bob:bobpass"
        await lab.reconcile()
        # the first pass (before the proxy refused) wrote; make it differ again
        operator_update(lab, 0, 'PUBLIC_IP = "130.206.1.1"')
        await lab.reconcile()
        report = await lab.report(0)
        assert report["outcome"] == "update_failed"
        assert "Not authorized" in report["reason"]
        assert lab.sim.template(0)["GEOLOCATION"] == expected("212.77.98.9")[0]
        assert "GEOLOCATION not written" in caplog.text
        health = await lab.client.get("/healthz")
        assert health.status == 200  # oned answered; it said no
        metrics = await (await lab.client.get("/metrics")).text()
        assert "one_cognit_geo_update_errors_total 1.0" in metrics
        # the next pass tries again, and succeeds once oned agrees
        lab.proxy.update_session = None
        await lab.reconcile()
        assert lab.sim.template(0)["GEOLOCATION"] == expected("130.206.1.1")[0]


async def test_healthz_is_503_while_oned_is_unreachable(tmp_path):
    fleet = {"hosts": [host(1, "h", PUBLIC_IP="212.77.98.9")]}
    async with geo_lab(tmp_path, fleet, through_proxy=True) as lab:
        assert (await lab.client.get("/healthz")).status == 200
        lab.proxy.down = True
        await lab.reconcile()
        resp = await lab.client.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and "HTTP 502" in body["reason"] and "oned" in body["failing"]
        lab.proxy.down = False
        await lab.reconcile()
        assert (await lab.client.get("/healthz")).status == 200


async def test_no_oned_at_all(tmp_path):
    fleet = {"hosts": [host(1, "h", PUBLIC_IP="212.77.98.9")]}
    closed = "http://127.0.0.1:1/RPC2"
    async with geo_lab(tmp_path, fleet, rpc_url=closed) as lab:
        resp = await lab.client.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and "cannot reach oned" in body["reason"]
        status, hosts = await lab.json("/v1/hosts")
        assert (status, hosts["hosts"]) == (200, [])
        assert lab.locator.reconciles["failed"] >= 1


async def test_the_reconcile_runs_every_interval(tmp_path):
    fleet = {"hosts": [host(1, "h", PUBLIC_IP="212.77.98.9")]}
    async with geo_lab(tmp_path, fleet, reconcile_interval=0.2) as lab:
        await async_wait_for(lambda: lab.locator.reconciles["ok"] >= 4, what="4 reconciles")
        calls = lab.sim.calls()
        assert calls["one.host.update"] == 1 and calls["one.hostpool.info"] >= 4
