"""The shared oned adapter against the real simulator (and bad peers): every call services make."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from services.common.errors import OneError
from services.common.oned import AUTHENTICATION, NO_EXISTS, Oned
from services.common.oned.templates import TemplateValueError
from testkit import ROOT, free_port
from testkit.sim import Sim, start_sim

ADMIN = "oneadmin:opennebula"
FLEET = ROOT / "tests" / "fixtures" / "sim" / "fleet.yaml"


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    sim = start_sim("--fleet", str(FLEET))
    yield sim
    sim.service.close()


async def test_version_and_pools(sim: Sim) -> None:
    async with Oned.connect(sim.rpc_url, ADMIN, timeout=5) as oned:
        assert (await oned.version()).count(".") == 2
        vms = {vm.id: vm for vm in (await oned.vm_pool()).items}
        hosts = {h.name: h for h in (await oned.host_pool()).items}
    assert set(vms) == {7, 8, 9, 11}  # DONE (10) is not in the pool
    assert set(hosts) == {"edge-a", "edge-b", "edge-c"}


async def test_the_vm_fields_discovery_needs(sim: Sim) -> None:
    async with Oned.connect(sim.rpc_url, ADMIN, timeout=5) as oned:
        vms = {vm.id: vm for vm in (await oned.vm_pool()).items}
        hosts = {h.name: h for h in (await oned.host_pool()).items}
    web = vms[7]
    assert (web.name, web.state, web.lcm_state) == ("web-7", 3, 3)
    assert (web.host_id, web.hostname) == (hosts["edge-a"].id, "edge-a")
    assert (web.context_ip, web.context_ip6) == ("10.1.0.7", "2001:db8::7")
    assert [(n.ip, n.ip6) for n in web.nics] == [("10.1.0.7", "2001:db8::7"), ("192.168.50.7", "")]
    assert web.prometheus_exporter == "9100"
    assert (web.service_id, web.role_name, web.flavours) == ("12", "frontend", 4.0)
    v6 = vms[11]
    assert (v6.context_ip, v6.context_ip6) == ("", "fd00:1::11")
    assert [n.ip6 for n in v6.nics] == ["fd00:1::11"]
    assert v6.prometheus_exporter is None and v6.service_id is None
    assert vms[8].flavours_text == "gpu.large" and vms[8].flavours == -1
    assert vms[8].state == 8  # POWEROFF


async def test_the_host_fields_geo_and_discovery_need(sim: Sim) -> None:
    async with Oned.connect(sim.rpc_url, ADMIN, timeout=5) as oned:
        hosts = {h.name: h for h in (await oned.host_pool()).items}
    a, b, c = hosts["edge-a"], hosts["edge-b"], hosts["edge-c"]
    assert a.hostname == "127.0.3.1"  # TEMPLATE/HOSTNAME (NAME when absent: test_pools)
    assert b.hostname == b.attr("HOSTNAME")
    assert b.attr("PUBLIC_IP") == "8.8.8.8" and a.attr("PUBLIC_IP") is None
    assert c.state == 4  # DISABLED
    assert {h.cluster_id for h in hosts.values()} == {0}


async def test_single_object_reads(sim: Sim) -> None:
    async with Oned.connect(sim.rpc_url, ADMIN, timeout=5) as oned:
        vm = await oned.vm(7)
        host = await oned.host(vm.host_id)
        with pytest.raises(OneError) as missing:
            await oned.vm(987654)
        with pytest.raises(OneError) as no_host:
            await oned.host(987654)
    assert (vm.id, vm.name, vm.context_ip) == (7, "web-7", "10.1.0.7")
    assert host.name == "edge-a"
    assert missing.value.code == NO_EXISTS and "987654" in missing.value.message
    assert no_host.value.code == NO_EXISTS


async def test_host_update_merges_and_keeps_the_rest(sim: Sim) -> None:
    async with Oned.connect(sim.rpc_url, ADMIN, timeout=5) as oned:
        hosts = {h.name: h for h in (await oned.host_pool()).items}
        host_id = hosts["edge-b"].id
        tricky = 'a "quoted" <value> & more\\'
        assert (
            await oned.host_update(
                host_id, {"GEOLOCATION": "59.3294,18.0687", "NOTE": tricky}, merge=True
            )
            == host_id
        )
        after = await oned.host(host_id)
    assert after.attr("GEOLOCATION") == "59.3294,18.0687"
    assert after.attr("NOTE") == tricky  # XML carries what the text syntax cannot
    assert after.attr("PUBLIC_IP") == "8.8.8.8"  # merge kept the rest


async def test_hooks_allocate_list_update_delete(sim: Sim) -> None:
    template = {
        "NAME": "oc-test-hook",
        "TYPE": "state",
        "RESOURCE": "VM",
        "ON": "RUNNING",
        "COMMAND": "/bin/true",
        "ARGUMENTS": "$TEMPLATE",
    }
    async with Oned.connect(sim.rpc_url, ADMIN, timeout=5) as oned:
        hook_id = await oned.hook_allocate(template)
        hooks = {h.name: h for h in (await oned.hook_pool()).items}
        assert hooks["oc-test-hook"].id == hook_id
        assert hooks["oc-test-hook"].type == "state"
        assert hooks["oc-test-hook"].template["COMMAND"] == "/bin/true"
        assert await oned.hook_update(hook_id, {"COMMAND": "/bin/false"}, merge=True) == hook_id
        hooks = {h.name: h for h in (await oned.hook_pool()).items}
        assert hooks["oc-test-hook"].template["COMMAND"] == "/bin/false"
        assert hooks["oc-test-hook"].template["ARGUMENTS"] == "$TEMPLATE"  # merge kept it
        assert await oned.hook_delete(hook_id) == hook_id
        assert "oc-test-hook" not in {h.name for h in (await oned.hook_pool()).items}


def test_templates_refuse_what_oned_cannot_store() -> None:
    from services.common.oned.templates import template_xml

    assert template_xml({"a_b": "x<y"}) == "<TEMPLATE><A_B>x&lt;y</A_B></TEMPLATE>"
    for bad in ({"1A": "x"}, {"A-B": "x"}, {"": "x"}, {"A": "bell\x07"}):
        with pytest.raises(TemplateValueError):
            template_xml(bad)


async def test_refused_calls_carry_oneds_error_code(sim: Sim) -> None:
    async with Oned.connect(sim.rpc_url, "oneadmin:wrong", timeout=5) as bad:
        with pytest.raises(OneError) as auth:
            await bad.host_pool()
    assert auth.value.code == AUTHENTICATION and auth.value.status == 503


async def test_unreachable_oned_is_a_one_error() -> None:
    async with Oned.connect(f"http://127.0.0.1:{free_port()}/RPC2", "a:b", timeout=2) as oned:
        with pytest.raises(OneError, match="cannot reach oned"):
            await oned.version()


async def test_a_hanging_oned_costs_the_timeout_not_forever() -> None:
    """pyone's timeout= is not enforced; this adapter's deadline is."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hang() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_hang, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    started = time.monotonic()
    try:
        async with Oned.connect(f"http://127.0.0.1:{port}/RPC2", "a:b", timeout=0.5) as oned:
            with pytest.raises(OneError, match="no answer"):
                await oned.version()
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()
