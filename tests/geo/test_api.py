"""geo's HTTP API: host events, lookups, the hosts report, metrics, and a replaced database."""

from __future__ import annotations

import base64
import io
import os
import random
import shutil
import subprocess
import xmlrpc.client

import pytest

from testkit import async_wait_for

from .lab import ADMIN, expected, geo_lab, reader
from .mmdbs import city, write_mmdb

NET = "127.0.89"


def host(index: int, name: str, **template: str) -> dict:
    return {"name": name, "hostname": f"{NET}.{index}", "template": template}


def host_xml(lab, host_id: int) -> str:
    """The <HOST> document oned gives a hook as $TEMPLATE (one.host.info's body)."""
    proxy = xmlrpc.client.ServerProxy(lab.sim.rpc_url)
    try:
        ok, body, *_ = proxy.one.host.info(ADMIN, host_id, False)
    finally:
        proxy("close")()
    assert ok, body
    return body


def template_b64(lab, host_id: int) -> bytes:
    return base64.b64encode(host_xml(lab, host_id).encode())


def operator_update(lab, host_id: int, template: str) -> None:
    proxy = xmlrpc.client.ServerProxy(lab.sim.rpc_url)
    try:
        assert proxy.one.host.update(ADMIN, host_id, template, 1)[0] is True
    finally:
        proxy("close")()


async def test_a_host_event_is_applied_without_waiting_for_the_reconcile(tmp_path):
    fleet = {"hosts": [host(1, "late")]}
    async with geo_lab(tmp_path, fleet) as lab:
        assert "GEOLOCATION" not in lab.sim.template(0)
        operator_update(lab, 0, 'PUBLIC_IP = "193.0.6.139"')
        payload = template_b64(lab, 0)
        resp = await lab.client.post("/v1/events/host", data=payload)
        assert resp.status == 202 and await resp.json() == {"host_id": 0, "queued": True}
        coords = expected("193.0.6.139")[0]
        await async_wait_for(
            lambda: lab.sim.template(0).get("GEOLOCATION") == coords, what="the event applied"
        )
        assert lab.locator.reconciles["ok"] == 1  # the first one only: the event did it
        assert lab.locator.events["accepted"] == 1


async def test_events_for_one_host_are_coalesced_and_unknown_hosts_ignored(tmp_path):
    fleet = {"hosts": [host(1, "busy", PUBLIC_IP="193.0.6.139")]}
    async with geo_lab(tmp_path, fleet) as lab:
        lab.sim.reset_calls()
        # five hooks for one host before geo got to the first: one look at it
        assert [lab.locator.submit(0) for _ in range(5)] == [True, False, False, False, False]
        ghost = base64.b64encode(b"<HOST><ID>4242</ID><STATE>2</STATE></HOST>")
        resp = await lab.client.post("/v1/events/host", data=ghost)
        assert resp.status == 202 and (await resp.json())["host_id"] == 4242
        await async_wait_for(lambda: not lab.locator._tasks, what="events done")
        calls = lab.sim.calls()
        assert calls["one.host.info"] == 2  # host 0 once, and the ghost (no such host)
        assert "one.host.update" not in calls  # already current
        assert lab.locator.events["coalesced"] == 4
        assert 4242 not in lab.locator.reports


MALFORMED = [
    (b"", "empty body"),
    (b"%%%not base64%%%", "not base64"),
    (base64.b64encode(b"<VM><ID>0</ID></VM>"), "not a <HOST>"),
    (base64.b64encode(b"<HOST><STATE>2</STATE></HOST>"), "no integer ID"),
    (base64.b64encode(b"\x00\x01garbage"), "not a <HOST>"),
    (b"<HOST><ID>0</ID><STATE>2</STATE></HOST>", "not base64"),  # raw XML: one shape only
]


async def test_a_malformed_event_is_400_and_writes_nothing(tmp_path):
    fleet = {"hosts": [host(1, "h")]}
    async with geo_lab(tmp_path, fleet) as lab:
        operator_update(lab, 0, 'PUBLIC_IP = "193.0.6.139"')
        lab.sim.reset_calls()
        for body, says in MALFORMED:
            resp = await lab.client.post("/v1/events/host", data=body)
            assert resp.status == 400, body
            assert says in (await resp.json())["error"], body
        assert lab.locator.events["accepted"] == 0 and not lab.locator._tasks
        assert lab.sim.calls() == {}
        assert "GEOLOCATION" not in lab.sim.template(0)


async def test_event_limits_methods_and_tokens(tmp_path):
    token = tmp_path / "geo.token"
    token.write_text("s3cret-token\n")
    fleet = {"hosts": [host(1, "h", PUBLIC_IP="193.0.6.139")]}
    async with geo_lab(tmp_path, fleet, token_file=token) as lab:
        payload = template_b64(lab, 0)
        resp = await lab.client.post("/v1/events/host", data=payload)
        assert resp.status == 401 and "bearer" in (await resp.json())["error"]
        wrong = {"Authorization": "Bearer nope"}
        assert (await lab.client.post("/v1/events/host", data=payload, headers=wrong)).status == 401
        right = {"Authorization": "Bearer s3cret-token"}
        assert (await lab.client.post("/v1/events/host", data=payload, headers=right)).status == 202
        # reads need no token
        assert (await lab.client.get("/v1/hosts")).status == 200
        big_body = io.BytesIO(b"A" * (1024 * 1024 + 8))
        big = await lab.client.post("/v1/events/host", data=big_body, headers=right)
        assert big.status == 413 and "error" in await big.json()
        assert (await lab.client.get("/v1/events/host")).status == 405
        assert (await lab.client.get("/v1/nothing")).status == 404


async def test_lookup_answers_as_the_database_does(tmp_path):
    rng = random.Random(5)
    sample = []
    while len(sample) < 300:
        ip = ".".join(str(rng.randrange(1, 224)) for _ in range(4))
        record = reader().get(ip)
        if record and record.get("location") and not ip.startswith(("10.", "127.", "100.")):
            sample.append(ip)
    sample += ["2001:6b0:7::2", "2a00:1450:4001:80e::200e", "192.0.0.9"]
    async with geo_lab(tmp_path, {"hosts": []}) as lab:
        for ip in sample:
            resp = await lab.client.get("/v1/lookup", params={"ip": ip})
            record = reader().get(ip)
            if ip == "192.0.0.9" and record is None:
                assert resp.status == 404  # global, and not in DB-IP
                continue
            body = await resp.json()
            assert resp.status == 200, (ip, body)
            assert body["ip"] == ip
            assert (body["latitude"], body["longitude"]) == (
                record["location"]["latitude"],
                record["location"]["longitude"],
            )
            assert body["city"] == record.get("city", {}).get("names", {}).get("en", "")
            assert body["country"] == record["country"]["iso_code"]
            assert "DB-IP" in body["database"] and "CC BY 4.0" in body["database"]
        for ip, reason in [
            ("10.1.2.3", "not_public"),
            ("100.64.0.1", "not_public"),
            ("203.0.113.5", "not_public"),
            ("2002::1", "not_public"),
            ("::ffff:8.8.8.8", "not_public"),
            ("2001:3::1", "not_found"),
        ]:
            resp = await lab.client.get("/v1/lookup", params={"ip": ip})
            body = await resp.json()
            assert resp.status == 404 and body["reason"] == reason, (ip, body)
            assert ip.split(":")[0] in body["error"] or reason == "not_public"
        for params in ({"ip": "garbage"}, {}, {"ip": ""}, {"ip": "8" * 100}, {"ip": "1.2.3.4/8"}):
            resp = await lab.client.get("/v1/lookup", params=params)
            assert resp.status == 400 and "error" in await resp.json(), params


async def test_hosts_report_and_metrics_pass_promtool(tmp_path):
    fleet = {
        "hosts": [
            host(1, "se", PUBLIC_IP="192.36.148.17"),
            host(2, "pinned", GEOLOCATION="1,2"),
            host(3, "nothing"),
        ]
    }
    async with geo_lab(tmp_path, fleet) as lab:
        status, body = await lab.json("/v1/hosts")
        assert status == 200 and "DB-IP" in body["database"]
        se, pinned, nothing = body["hosts"]
        assert se["template"]["GEOLOCATION"] == expected("192.36.148.17")[0]
        assert se["found"]["GEOLOCATION_COUNTRY"] == "SE"
        assert se["addresses"] == [
            {"address": "192.36.148.17", "source": "PUBLIC_IP", "public": True}
        ]
        assert (pinned["outcome"], pinned["written_by_geo"]) == ("operator", False)
        assert pinned["template"] == {"GEOLOCATION": "1,2"}
        assert nothing["outcome"] == "no_public_address"
        assert nothing["addresses"][0] == {
            "address": f"{NET}.3",
            "source": "dns",
            "public": False,
            "why_not_public": "Loopback (RFC 1122)",
        }
        await lab.client.get("/v1/lookup", params={"ip": "8.8.8.8"})
        metrics = await (await lab.client.get("/metrics")).text()
        for line in (
            'one_cognit_geo_lookups_total{result="found"}',
            'one_cognit_geo_hosts{outcome="written"} 1.0',
            'one_cognit_geo_hosts{outcome="operator"} 1.0',
            "one_cognit_geo_updates_written_total 1.0",
            "one_cognit_geo_database_build_timestamp_seconds 1.680308777e+09",
            'one_cognit_geo_reconciles_total{result="ok"} 1.0',
            "one_cognit_geo_database_ok 1.0",
        ):
            assert line in metrics, line
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.skip("promtool is not installed (make test installs it)")
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=metrics, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_a_replaced_database_is_used_without_a_restart(tmp_path):
    mmdb = write_mmdb(tmp_path / "city.mmdb", {"192.36.148.0/24": city(1, 2, "Old", "AA")})
    fleet = {"hosts": [host(1, "h", PUBLIC_IP="192.36.148.17")]}
    async with geo_lab(tmp_path, fleet, mmdb=mmdb, mmdb_check_interval=0.05) as lab:
        assert lab.sim.template(0)["GEOLOCATION"] == "1.0000,2.0000"
        assert "GeoLite2" in (await lab.json("/v1/hosts"))[1]["database"]
        # a new version, moved into place atomically
        write_mmdb(mmdb, {"192.36.148.0/24": city(3, 4, "New", "BB")})

        async def lookup_country() -> str:
            return (await lab.json("/v1/lookup?ip=192.36.148.17"))[1].get("country", "")

        database = lab.locator.database
        await async_wait_for(lambda: database.reloads["ok"] == 1, what="the new file read")
        assert await lookup_country() == "BB"
        await lab.reconcile()
        template = lab.sim.template(0)
        assert (template["GEOLOCATION"], template["GEOLOCATION_COUNTRY"]) == ("3.0000,4.0000", "BB")
        # a broken replacement: the last good one stays and /healthz says so
        broken = tmp_path / "broken"
        broken.write_bytes(os.urandom(4096))
        os.replace(broken, mmdb)
        await async_wait_for(lambda: database.problem, what="the broken file noticed")
        resp = await lab.client.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and "still using the database built" in body["reason"]
        assert await lookup_country() == "BB"
        metrics = await (await lab.client.get("/metrics")).text()
        assert "one_cognit_geo_database_ok 0.0" in metrics
        assert 'one_cognit_geo_database_reloads_total{result="failed"} 1.0' in metrics
        write_mmdb(mmdb, {"192.36.148.0/24": city(5, 6, "Newer", "CC")})
        await async_wait_for(lambda: database.reloads["ok"] == 2, what="the fixed file read")
        assert (await lab.client.get("/healthz")).status == 200
        assert await lookup_country() == "CC"
