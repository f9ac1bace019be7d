"""One refresh cycle in-process, against stored oned replies served over real XML-RPC.

The simulator always keeps a host's VMS list in step with its VMs; real oned answers the two
pool calls a moment apart, so a VM can run on a host whose list (read first) lacks it. These
stored replies reproduce that, to prove such a host is still asked.
"""

from __future__ import annotations

import re
import xmlrpc.client

import aiohttp
import pytest
from aiohttp import web

from services.common.health import Health
from services.common.oned import Oned
from services.common.periodic import Periodic
from services.vm_exporter import refresh
from services.vm_exporter.carbon import Intensity
from services.vm_exporter.carbon_sources import OperatorFile, load_grid
from services.vm_exporter.config import ExporterConfig
from services.vm_exporter.refresh import Refresher, StateBox
from testkit import ROOT, async_wait_for, free_port, free_port_on
from testkit.agent_replies import agent_json
from tests.vm_exporter.servers import HttpAgent, send

FIXTURES = ROOT / "tests" / "fixtures" / "one"
GRID = load_grid()
NET = "127.0.80"


def _replies() -> dict[str, str]:
    vms = (FIXTURES / "vmpool_infoextended.xml").read_text()
    hosts = (FIXTURES / "hostpool_info.xml").read_text()
    # Agents on loopback addresses; host 1's VMS list read before 52 and 524 landed there.
    for n in (1, 2, 3, 4):
        hosts = hosts.replace(f"<HOSTNAME><![CDATA[node{n}]]>", f"<HOSTNAME><![CDATA[{NET}.{n}]]>")
    hosts = re.sub(r"(<ID>1</ID><NAME>node2.*?)<VMS>.*?</VMS>", r"\1<VMS/>", hosts, flags=re.S)
    assert hosts.count("<VMS/>") == 2  # host 1's, and host 3's (which runs nothing)
    # node3 has no TEMPLATE/HOSTNAME and is reached by NAME: keep it on loopback too.
    hosts = hosts.replace("<NAME>node3</NAME>", f"<NAME>{NET}.3</NAME>")
    return {"one.vmpool.infoextended": vms, "one.hostpool.info": hosts}


async def _serve(replies: dict[str, str], calls: list):
    async def rpc(request: web.Request) -> web.Response:
        params, method = xmlrpc.client.loads(await request.read())
        calls.append((method, params))
        body = xmlrpc.client.dumps(([True, replies[method], 0],), methodresponse=True)
        return web.Response(text=body, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/RPC2", rpc)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/RPC2"


async def _refresh_once(url: str, port: int) -> tuple[StateBox, Health]:
    """One real refresh against the oned at `url`, agents on `port`."""
    config = ExporterConfig(one_xmlrpc=url, agent_port=port, agent_timeout=1.0)
    box, health = StateBox(), Health("vm_exporter")
    async with aiohttp.ClientSession() as oned_http, aiohttp.ClientSession() as agent_http:
        oned = Oned(oned_http, url, "oneadmin:pw", timeout=5)
        refresher = Refresher(
            config, oned, agent_http, box, health, GRID, OperatorFile(None, GRID, health)
        )
        await refresher.once()
    return box, health


@pytest.fixture
async def oned():
    calls: list = []
    runner, url = await _serve(_replies(), calls)
    yield url, calls
    await runner.cleanup()


async def test_running_vm_missing_from_its_hosts_list_is_still_measured(oned):
    url, calls = oned
    port = free_port_on([f"{NET}.1", f"{NET}.2"])
    agents = [
        HttpAgent(
            f"{NET}.1",
            port,
            {"/api/v1/vms": lambda h: send(h, agent_json({42: (4_000_000, 10)}), "text/json")},
        ),
        HttpAgent(
            f"{NET}.2",
            port,
            {"/api/v1/vms": lambda h: send(h, agent_json({524: (9_000_000, 10)}), "text/json")},
        ),
    ]
    try:
        box, health = await _refresh_once(url, port)
    finally:
        for agent in agents:
            agent.close()
    snap = box.state.snapshot
    assert snap is not None and box.state.status.oned_up
    assert snap.vm_power_uw[42] == 4_000_000
    assert snap.vm_power_uw[524] == 9_000_000  # host 1 asked although its list was empty
    assert snap.vm_power_uw[52] == 0  # host 1 answered without it
    assert 60 not in snap.vm_power_uw  # node3 (OFFLINE, nothing listens): unknown
    assert dict(snap.host_source_up) == {0: 1, 1: 1, 2: 0}
    assert sorted(m for m, _ in calls) == ["one.hostpool.info", "one.vmpool.infoextended"]
    assert [p for m, p in calls if m == "one.vmpool.infoextended"] == [
        ("oneadmin:pw", -2, -1, -1, -1)
    ]
    assert health.healthy and b"opennebula_vm_power_consumption_uW" in box.state.text


@pytest.mark.parametrize("name", ["..", "x" * 64 + ".lan", "node3/metrics", "node 3"])
async def test_a_host_name_that_is_no_address_costs_that_host_only(name):
    # An operator's typo in one host's NAME/HOSTNAME once escaped as a ValueError from the
    # resolver and failed every refresh, while oned_up and /healthz still said all was well.
    replies = _replies()
    replies["one.hostpool.info"] = replies["one.hostpool.info"].replace(
        f"<NAME>{NET}.3</NAME>", f"<NAME>{name}</NAME>"
    )
    runner, url = await _serve(replies, [])
    port = free_port_on([f"{NET}.1"])
    agent = HttpAgent(
        f"{NET}.1",
        port,
        {"/api/v1/vms": lambda h: send(h, agent_json({42: (4_000_000, 10)}), "text/json")},
    )
    try:
        box, health = await _refresh_once(url, port)
    finally:
        agent.close()
        await runner.cleanup()
    snap = box.state.snapshot
    assert snap is not None and box.state.status.oned_up
    assert snap.vm_power_uw[42] == 4_000_000  # the other hosts are unaffected
    assert 60 not in snap.vm_power_uw  # VM 60 runs on the misnamed host: unknown
    assert snap.host_source_up[2] == 0
    assert dict(box.state.status.agent_errors)[(2, "bad_address")] == 1


async def test_an_unexpected_failure_is_reported_not_served_as_fresh(oned, monkeypatch):
    url, _ = oned
    broken = True
    real_render = refresh.render

    def render(snapshot):
        if broken:
            raise RuntimeError("a bug")
        return real_render(snapshot)

    monkeypatch.setattr(refresh, "render", render)
    config = ExporterConfig(one_xmlrpc=url, agent_port=1, agent_timeout=0.5, refresh_interval=0.05)
    box, health = StateBox(), Health("vm_exporter")
    async with aiohttp.ClientSession() as oned_http, aiohttp.ClientSession() as agent_http:
        oned = Oned(oned_http, url, "oneadmin:pw", timeout=5)
        refresher = Refresher(
            config, oned, agent_http, box, health, GRID, OperatorFile(None, GRID, health)
        )
        # As the app runs it: on the shared periodic helper.
        async with Periodic("refresh", refresher.step, config.refresh_interval, health=health):
            await async_wait_for(
                lambda: box.state.status.refreshes.get("error", 0) >= 2, what="two failed cycles"
            )
            assert "refresh failed: RuntimeError: a bug" in health.report()["failing"]["refresh"]
            assert box.state.snapshot is None
            broken = False
            await async_wait_for(lambda: health.healthy, what="recovery")
            assert box.state.snapshot is not None and box.state.status.refreshes["ok"] >= 1


async def test_carbon_counters_follow_each_hosts_intensity_and_its_source(tmp_path, caplog):
    # host 0 (Sweden) has an unusable figure of its own, host 1 is in Poland, host 2 has the
    # operator's figure in the --carbon-data file.
    replies = _replies()
    replies["one.hostpool.info"] = (
        replies["one.hostpool.info"]
        .replace(
            f"<HOSTNAME><![CDATA[{NET}.1]]></HOSTNAME>",
            f"<HOSTNAME><![CDATA[{NET}.1]]></HOSTNAME><CARBON_INTENSITY><![CDATA[-40]]>"
            "</CARBON_INTENSITY><GEOLOCATION_COUNTRY><![CDATA[SE]]></GEOLOCATION_COUNTRY>",
        )
        .replace(
            f"<HOSTNAME><![CDATA[{NET}.2]]></HOSTNAME>",
            f"<HOSTNAME><![CDATA[{NET}.2]]></HOSTNAME>"
            "<GEOLOCATION_COUNTRY><![CDATA[pl]]></GEOLOCATION_COUNTRY>",
        )
    )
    data = tmp_path / "carbon.yaml"
    data.write_text("hosts:\n  '2': 99\nyear: 2025\n")
    runner, url = await _serve(replies, [])
    port = free_port_on([f"{NET}.1", f"{NET}.2"])

    def growing(vm_id: int, step_uj: int):
        """An agent whose VM draws `step_uj` and whose host draws 3 x that per request."""
        asked = {"n": 0}

        def route(handler) -> None:
            asked["n"] += 1
            n = asked["n"]
            send(handler, agent_json({vm_id: (1, n * step_uj)}, host_energy_uj=n * 3 * step_uj))

        return route

    wh = 3_600_000_000  # uJ; a refresh apart, more than 100 kW would not be added
    agents = [
        HttpAgent(f"{NET}.1", port, {"/api/v1/vms": growing(42, wh)}),
        HttpAgent(f"{NET}.2", port, {"/api/v1/vms": growing(524, wh)}),
    ]
    config = ExporterConfig(
        one_xmlrpc=url, agent_port=port, agent_timeout=1.0, carbon_data=data, refresh_interval=60
    )
    box, health = StateBox(), Health("vm_exporter")
    try:
        async with aiohttp.ClientSession() as oned_http, aiohttp.ClientSession() as agent_http:
            oned = Oned(oned_http, url, "oneadmin:pw", timeout=5)
            operator = OperatorFile(data, GRID, health)
            refresher = Refresher(config, oned, agent_http, box, health, GRID, operator)
            await refresher.once()  # baselines
            await refresher.once()
    finally:
        for agent in agents:
            agent.close()
        await runner.cleanup()
    snap = box.state.snapshot
    se, pl = GRID.countries["SE"][0], GRID.countries["PL"][0]
    assert snap.intensity[0] == Intensity(se, "country", "SE", "2023")
    assert snap.intensity[1] == Intensity(pl, "country", "PL", "2023")
    assert snap.intensity[2] == Intensity(99.0, "data_file", "", "2025")
    assert snap.intensity[3].source == "world"
    # One Wh per VM and three per host between the two refreshes, each at its host's rate.
    assert snap.vm_carbon_g[42] == pytest.approx(se / 1000)
    assert snap.vm_carbon_g[524] == pytest.approx(pl / 1000)
    assert snap.host_carbon_g == pytest.approx({0: 3 * se / 1000, 1: 3 * pl / 1000})
    assert snap.vm_carbon_g[52] == 0.0  # not listed: draws nothing
    assert 60 not in snap.vm_carbon_g  # its host's agent never answered: no series
    text = box.state.text.decode()
    assert (
        'opennebula_host_carbon_intensity_info{one_host_id="2",source="data_file",'
        'country="",year="2025"} 1'
    ) in text
    warned = [r.getMessage() for r in caplog.records if "CARBON_INTENSITY" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(
        "host 0 ('node1.cognit.lan'): CARBON_INTENSITY '-40'"
    )
