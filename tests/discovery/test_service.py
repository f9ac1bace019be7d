"""discovery in-process against the real simulator: reconcile, events, files, faults.

Each test runs its own discovery (create_app on a real port) with its own prometheus.yml and
sd-dir; tests that change the cloud start their own simulator.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import stat
import subprocess
import xmlrpc.client
from pathlib import Path

import aiohttp
import pytest

from services.discovery.files import backups_of
from testkit import async_wait_for, free_port
from testkit.prometheus import PROMTOOL
from tests.discovery.conftest import FLEET, Setup, serving, start_sim

ADMIN = "oneadmin:opennebula"


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> object:
    """A simulator for tests that only read the cloud."""
    sim = start_sim(tmp_path_factory.mktemp("sim"), "--fleet", str(FLEET))
    yield sim
    sim.service.close()


async def get(url: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def post(
    url: str, body: bytes | str | io.BytesIO, token: str | None = None
) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status, await r.json()


async def reconciled(discovery, n: int = 1) -> None:
    await async_wait_for(
        lambda: discovery.stats.reconciles["ok"] + discovery.stats.reconciles["oned_error"] >= n,
        timeout=20,
        what=f"{n} reconcile(s)",
    )


def sd(setup: Setup, job: str) -> list[dict]:
    return json.loads((setup.sd_dir / f"{job}.json").read_text())


def ids(groups: list[dict], label: str) -> list[str]:
    return [g["labels"][label] for g in groups]


def vm_xml(sim, vm_id: int) -> bytes:
    """The VM as oned shows it now (what a hook's $TEMPLATE holds), base64."""
    with xmlrpc.client.ServerProxy(sim.rpc_url) as proxy:
        ok, body, *_ = proxy.one.vm.info(ADMIN, vm_id, False)
    assert ok, body
    return base64.b64encode(body.encode())


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line == name:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_reconcile_writes_every_job_and_patches_prometheus_yml_once(setup, shared):
    original = setup.prometheus_config.read_text()
    async with serving(setup.config(shared)) as (url, discovery):
        await reconciled(discovery)
        scaph = sd(setup, "scaphandre")
        # kvm-c is OFFLINE; kvm-d is DISABLED and still runs VMs, so it keeps its target.
        assert [g["targets"] for g in scaph] == [
            ["127.0.20.1:8080"],
            ["127.0.20.2:8080"],
            ["127.0.20.4:8080"],
        ]
        assert scaph[0]["labels"] == {
            "one_host_id": "0",
            "one_host_name": "kvm-a",
            "one_cluster_id": "0",
        }
        sr = sd(setup, "sr_exporter")
        assert {g["labels"]["one_vm_id"]: g["targets"] for g in sr} == {
            "1": ["127.0.21.1:9100"],
            "2": ["[::1]:9101"],
            "3": ["127.0.21.33:9200", "[::1]:9201"],
        }
        assert sr[0]["labels"] == {
            "one_vm_id": "1",
            "one_vm_name": "web-1",
            "one_host_id": "0",
            "service_id": "3",
            "role_name": "web",
            "flavour": "4",
        }
        assert sd(setup, "one_vm_exporter") == [{"targets": ["127.0.0.1:9925"], "labels": {}}]
        status, body = await get(url + "/v1/targets")
        assert status == 200 and body["synced"] and body["jobs"]["sr_exporter"] == sr
        # prometheus.yml: the original, then three file_sd jobs; one backup of the original.
        patched = setup.prometheus_config.read_text()
        assert patched.startswith(original)
        assert f'files: ["{setup.sd_dir}/sr_exporter.json"]' in patched
        (saved,) = backups_of(setup.prometheus_config)
        assert saved.read_text() == original
        # Another reconcile with nothing new rewrites nothing.
        stamps = {
            p: p.stat().st_mtime_ns for p in [setup.prometheus_config, *setup.sd_dir.iterdir()]
        }
        await discovery.reconcile()
        assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
        assert len(backups_of(setup.prometheus_config)) == 1
        status, text = await get(url + "/metrics")
        assert metric(text, 'one_cognit_discovery_targets{job="sr_exporter"}') == 4
        assert metric(text, 'one_cognit_discovery_targets{job="scaphandre"}') == 3
        assert metric(text, "one_cognit_discovery_invalid_values_total") == 1  # VM 6
        assert (
            metric(
                text,
                'one_cognit_discovery_config_writes_total{file="prometheus_config",result="ok"}',
            )
            == 1
        )
        assert metric(text, 'one_cognit_discovery_reloads_total{result="failed"}') == 0
        assert metric(text, "one_cognit_discovery_last_reconcile_success_timestamp_seconds") > 0
        checked = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert (await get(url + "/healthz"))[0] == 200


async def test_events_look_at_the_object_now_and_bad_payloads_change_nothing(setup, tmp_path):
    sim = start_sim(tmp_path, "--fleet", str(FLEET))
    try:
        async with serving(setup.config(sim)) as (url, discovery):
            await reconciled(discovery)
            running_template = vm_xml(sim, 1)  # what a RUNNING hook would carry
            before = (setup.sd_dir / "sr_exporter.json").read_bytes()
            for body, why in (
                (b"%%%", "not base64"),
                (base64.b64encode(b"<VM><ID>1</ID>"), "not a <VM> document"),
                (base64.b64encode(b"<HOST><ID>0</ID><STATE>8</STATE></HOST>"), "got <HOST>"),
                (b"", "empty body"),
            ):
                status, reply = await post(url + "/v1/events/vm", body)
                assert status == 400 and why in reply["error"], reply
            assert (setup.sd_dir / "sr_exporter.json").read_bytes() == before
            status, reply = await post(
                url + "/v1/events/vm",
                base64.b64encode(b"<VM><ID>9999</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>"),
            )
            assert (status, reply["result"], reply["targets"]) == (200, "gone", [])
            assert (setup.sd_dir / "sr_exporter.json").read_bytes() == before

            # Powered off: the RUNNING template arriving late must not bring the target back.
            assert sim.control("POST", "/v1/vms/1/poweroff")[0] == 200
            status, reply = await post(url + "/v1/events/vm", running_template)
            assert (status, reply["result"]) == (200, "removed")
            assert "1" not in ids(sd(setup, "sr_exporter"), "one_vm_id")
            status, reply = await post(url + "/v1/events/vm", running_template)
            assert (status, reply["result"]) == (200, "unchanged")  # idempotent

            assert sim.control("POST", "/v1/vms/1/resume")[0] == 200
            status, reply = await post(url + "/v1/events/vm", vm_xml(sim, 1))
            assert (status, reply["result"], reply["targets"]) == (
                200,
                "added",
                ["127.0.21.1:9100"],
            )
            assert "1" in ids(sd(setup, "sr_exporter"), "one_vm_id")

            # Terminated: oned still lists it as DONE, it loses its target.
            assert sim.control("POST", "/v1/vms/3/terminate")[0] == 200
            status, reply = await post(url + "/v1/events/vm", vm_xml(sim, 3))
            assert reply["result"] == "removed"
            assert ids(sd(setup, "sr_exporter"), "one_vm_id") == ["1", "2"]

            # A host going OFFLINE loses its agent target; back to MONITORED, it returns.
            host = base64.b64encode(b"<HOST><ID>1</ID><STATE>2</STATE></HOST>")
            assert sim.control("POST", "/v1/hosts/kvm-b/state", {"state": "OFFLINE"})[0] == 200
            status, reply = await post(url + "/v1/events/host", host)
            assert (status, reply["result"]) == (200, "removed")
            assert ids(sd(setup, "scaphandre"), "one_host_name") == ["kvm-a", "kvm-d"]
            assert sim.control("POST", "/v1/hosts/kvm-b/state", {"state": "MONITORED"})[0] == 200
            status, reply = await post(url + "/v1/events/host", host)
            assert (reply["result"], reply["targets"]) == ("added", ["127.0.20.2:8080"])
            status, text = await get(url + "/metrics")
            assert (
                metric(text, 'one_cognit_discovery_events_total{kind="vm",result="invalid"}') == 4
            )
            assert (
                metric(text, 'one_cognit_discovery_events_total{kind="vm",result="removed"}') == 2
            )
            status, reply = await post(url + "/v1/events/disk", running_template)
            assert status == 404
    finally:
        sim.service.close()


async def test_a_burst_of_events_for_one_vm_reads_oned_at_most_twice(setup, tmp_path):
    sim = start_sim(tmp_path, "--fleet", str(FLEET))
    try:
        async with serving(setup.config(sim)) as (url, discovery):
            await reconciled(discovery)
            stale = vm_xml(sim, 2)
            assert sim.control("POST", "/v1/vms/2/poweroff")[0] == 200
            sim.control("DELETE", "/calls")
            replies = await asyncio.gather(*(post(url + "/v1/events/vm", stale) for _ in range(20)))
            assert {status for status, _ in replies} == {200}
            assert "2" not in ids(sd(setup, "sr_exporter"), "one_vm_id")
            calls = sim.control("GET", "/calls")[1]["calls"]
            assert calls.get("one.vm.info", 0) <= 2, calls
            assert set(calls) <= {"one.vm.info"}  # never a pool read per event
    finally:
        sim.service.close()


async def test_the_event_routes_require_the_token_when_one_is_set(setup, shared, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    async with serving(setup.config(shared, "--token-file", str(token))) as (url, discovery):
        await reconciled(discovery)
        body = base64.b64encode(b"<VM><ID>5</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>")
        assert (await post(url + "/v1/events/vm", body))[0] == 401
        assert (await post(url + "/v1/events/vm", body, token="wrong"))[0] == 401
        status, reply = await post(url + "/v1/events/vm", body, token="s3cret")
        assert (status, reply["result"]) == (200, "unchanged")
        assert (await get(url + "/v1/targets"))[0] == 200  # reads need no token


async def test_oned_down_keeps_the_last_targets_and_says_so(setup, tmp_path):
    sim = start_sim(tmp_path, "--fleet", str(FLEET))
    async with serving(setup.config(sim)) as (url, discovery):
        await reconciled(discovery)
        before = {p.name: p.read_bytes() for p in setup.sd_dir.glob("*.json")}
        sim.service.close()
        await discovery.reconcile()
        status, health = await get(url + "/healthz")
        assert status == 503 and "oned" in health["failing"], health
        assert {p.name: p.read_bytes() for p in setup.sd_dir.glob("*.json")} == before
        assert (await get(url + "/v1/targets"))[1]["jobs"]["sr_exporter"]
        status, reply = await post(url + "/v1/events/vm", vm_xml_offline(1))
        assert status == 503 and "cannot read vm 1 from oned" in reply["error"]
        status, text = await get(url + "/metrics")
        assert metric(text, "one_cognit_discovery_oned_up") == 0
        assert metric(text, 'one_cognit_discovery_reconciles_total{result="oned_error"}') == 1


def vm_xml_offline(vm_id: int) -> bytes:
    xml = f"<VM><ID>{vm_id}</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>"
    return base64.b64encode(xml.encode())


async def test_started_while_oned_is_down_nothing_is_written_until_it_answers(setup):
    config = setup.config(None, "--mode", "http_sd", rpc=f"http://127.0.0.1:{free_port()}/RPC2")
    original = setup.prometheus_config.read_bytes()
    async with serving(config) as (url, discovery):
        await reconciled(discovery)
        assert not discovery.synced
        status, health = await get(url + "/healthz")
        assert status == 503 and "cannot reach oned" in health["failing"]["oned"]
        # An empty list would make Prometheus drop every target it has: 503 keeps them.
        assert (await get(url + "/v1/sd/scaphandre"))[0] == 503
        status, reply = await post(url + "/v1/events/vm", vm_xml_offline(4))
        assert (status, reply["result"]) == (202, "queued")
        assert setup.prometheus_config.read_bytes() == original
        assert not setup.sd_dir.exists()


async def test_http_sd_serves_each_job_and_the_config_points_at_it(setup, shared, tmp_path):
    async with serving(setup.config(shared, "--mode", "http_sd")) as (url, discovery):
        await reconciled(discovery)
        async with aiohttp.ClientSession() as s, s.get(url + "/v1/sd/sr_exporter") as r:
            assert r.status == 200 and r.content_type == "application/json"
            assert ids(await r.json(), "one_vm_id") == ["1", "2", "3"]
        assert (await get(url + "/v1/sd/node_exporter"))[0] == 404  # not owned
        assert (await get(url + "/v1/sd/nonsense"))[0] == 404
        text = setup.prometheus_config.read_text()
        assert f'url: "{url}/v1/sd/scaphandre"' in text and 'refresh_interval: "15s"' in text
        assert not setup.sd_dir.exists()
    empty = start_sim(tmp_path, "--hosts", "0", "--vms-per-host", "0")
    try:
        async with serving(setup.config(empty, "--mode", "http_sd")) as (url, discovery):
            await reconciled(discovery)
            async with aiohttp.ClientSession() as s, s.get(url + "/v1/sd/sr_exporter") as r:
                assert (r.status, await r.text()) == (200, "[]\n")
    finally:
        empty.service.close()


async def test_static_mode_writes_targets_into_prometheus_yml(setup, tmp_path):
    sim = start_sim(tmp_path, "--fleet", str(FLEET))
    try:
        async with serving(setup.config(sim, "--mode", "static")) as (url, discovery):
            await reconciled(discovery)
            import yaml

            jobs = {
                j["job_name"]: j
                for j in yaml.safe_load(setup.prometheus_config.read_text())["scrape_configs"]
            }
            assert ids(jobs["sr_exporter"]["static_configs"], "one_vm_id") == ["1", "2", "3"]
            assert sim.control("POST", "/v1/vms/2/poweroff")[0] == 200
            await post(url + "/v1/events/vm", vm_xml_offline(2))
            jobs = {
                j["job_name"]: j
                for j in yaml.safe_load(setup.prometheus_config.read_text())["scrape_configs"]
            }
            assert ids(jobs["sr_exporter"]["static_configs"], "one_vm_id") == ["1", "3"]
            assert len(backups_of(setup.prometheus_config)) == 2
            assert not setup.sd_dir.exists()
    finally:
        sim.service.close()


# -- the operator's file and directories in bad shape -------------------------------------------


async def health_of(url: str, check: str) -> str:
    status, health = await get(url + "/healthz")
    assert status == 503, health
    return health["failing"][check]


async def test_missing_config_is_not_created_and_sd_files_are_still_written(setup, shared):
    setup.prometheus_config.unlink()
    async with serving(setup.config(shared)) as (url, discovery):
        await reconciled(discovery)
        reason = await health_of(url, "prometheus_config")
        assert "does not exist" in reason and str(setup.prometheus_config) in reason
        assert not setup.prometheus_config.exists()
        assert sd(setup, "sr_exporter")
        # Events still reach the sd files (the config problem is /healthz's to report).
        status, reply = await post(url + "/v1/events/vm", vm_xml(shared, 2))
        assert (status, reply["result"]) == (200, "unchanged")
        # The operator creates it: the next reconcile patches it.
        setup.prometheus_config.write_text("scrape_configs: []\n")
        await discovery.reconcile()
        assert "sr_exporter.json" in setup.prometheus_config.read_text()
        assert (await get(url + "/healthz"))[0] == 200


async def test_unreadable_config_is_reported_and_left_alone(setup, shared):
    setup.prometheus_config.write_bytes(b"global:\n  external_labels: {site: 'M\xfcnchen'}\n")
    async with serving(setup.config(shared)) as (url, discovery):
        await reconciled(discovery)
        assert "not UTF-8" in await health_of(url, "prometheus_config")
        assert setup.prometheus_config.read_bytes().endswith(b"M\xfcnchen'}\n")


async def test_an_already_invalid_config_is_never_touched(setup, shared):
    broken = "global:\n  scrape_interval: banana\nscrape_configs: []\n"
    setup.prometheus_config.write_text(broken)
    async with serving(setup.config(shared)) as (url, discovery):
        await reconciled(discovery)
        reason = await health_of(url, "prometheus_config")
        assert "already invalid" in reason and "banana" in reason
        assert setup.prometheus_config.read_text() == broken
        assert backups_of(setup.prometheus_config) == []
        setup.prometheus_config.write_text(broken.replace("banana", "15s"))
        await discovery.reconcile()
        assert "sr_exporter.json" in setup.prometheus_config.read_text()


async def test_a_change_promtool_rejects_never_reaches_the_file(setup, shared):
    original = setup.prometheus_config.read_bytes()
    config = setup.config(shared, "--mode", "http_sd", "--http-sd-url", "http://bad host:1")
    async with serving(config) as (url, discovery):
        await reconciled(discovery)
        reason = await health_of(url, "prometheus_config")
        assert "promtool rejected" in reason and "the old one is kept" in reason
        assert setup.prometheus_config.read_bytes() == original
        assert backups_of(setup.prometheus_config) == []
        assert [
            p.name for p in setup.prometheus_config.parent.iterdir() if p.suffix == ".new"
        ] == []
        status, text = await get(url + "/metrics")
        assert metric(text, 'one_cognit_discovery_config_checks_total{result="failed"}') == 1
        assert (
            metric(
                text,
                'one_cognit_discovery_config_writes_total{file="prometheus_config",result="failed"}',
            )
            >= 1
        )


async def test_a_failing_promtool_leaves_the_file_alone(setup, shared, tmp_path):
    promtool = tmp_path / "promtool"
    promtool.write_text("#!/bin/sh\necho 'error: promtool crashed' >&2\nexit 3\n")
    promtool.chmod(0o755)
    original = setup.prometheus_config.read_bytes()
    async with serving(setup.config(shared, "--promtool", str(promtool))) as (url, discovery):
        await reconciled(discovery)
        assert "promtool crashed" in await health_of(url, "prometheus_config")
        assert setup.prometheus_config.read_bytes() == original


async def test_an_sd_dir_that_cannot_be_written_is_reported_then_recovered(setup, shared):
    setup.sd_dir.write_text("a file where the directory should be\n")
    async with serving(setup.config(shared)) as (url, discovery):
        await reconciled(discovery)
        assert "cannot write" in await health_of(url, "sd_dir")
        status, text = await get(url + "/metrics")
        assert (
            metric(text, 'one_cognit_discovery_config_writes_total{file="file_sd",result="failed"}')
            >= 1
        )
        setup.sd_dir.unlink()
        await discovery.reconcile()
        assert sd(setup, "scaphandre") and (await get(url + "/healthz"))[0] == 200


async def test_reload_command_runs_only_when_prometheus_yml_changes(setup, shared, tmp_path):
    log = tmp_path / "reloads"
    command = f"sh -c 'echo reloaded >> {log}'"
    config = setup.config(shared, "--reload", "command", "--reload-command", command)
    async with serving(config) as (url, discovery):
        await reconciled(discovery)
        await discovery.reconcile()
        assert log.read_text() == "reloaded\n"
    failing = setup.config(
        shared, "--reload", "command", "--reload-command", "false", "--jobs", "node_exporter"
    )
    async with serving(failing) as (url, discovery):
        await reconciled(discovery)
        assert "exited 1" in await health_of(url, "reload")


async def test_backups_are_kept_only_on_change_and_at_most_five(setup, shared):
    for n in range(7):
        async with serving(
            setup.config(shared, "--agent-port", str(9000 + n), "--mode", "static")
        ) as (url, d):
            await reconciled(d)
    saved = backups_of(setup.prometheus_config)
    assert len(saved) == 5
    assert "127.0.20.1:9005" in saved[-1].read_text()
    assert os.stat(saved[-1]).st_mode & stat.S_IRUSR


def test_paths_in_config_are_absolute(setup) -> None:
    assert Path(setup.config(None).sd_dir).is_absolute()


async def test_an_event_racing_a_reconcile_converges_on_oneds_truth(setup, tmp_path):
    sim = start_sim(tmp_path, "--fleet", str(FLEET))
    try:
        async with serving(setup.config(sim)) as (url, discovery):
            await reconciled(discovery)
            stale = vm_xml(sim, 1)
            for action in ("poweroff", "resume", "poweroff"):
                reconcile = asyncio.create_task(discovery.reconcile())
                await asyncio.to_thread(sim.control, "POST", f"/v1/vms/1/{action}")
                status, _ = await post(url + "/v1/events/vm", stale)
                assert status == 200
                await reconcile
                await asyncio.gather(*discovery._tasks)  # the second looks, if any
                up = action == "resume"
                assert ("1" in ids(sd(setup, "sr_exporter"), "one_vm_id")) == up, action
    finally:
        sim.service.close()


async def test_a_body_over_1_mib_is_413(setup, shared):
    async with serving(setup.config(shared)) as (url, discovery):
        status, reply = await post(url + "/v1/events/vm", io.BytesIO(b"A" * (1024 * 1024 + 4)))
        assert status == 413 and "1048576" in reply["error"]


def test_every_hook_template_registers_as_oned_takes_it(shared):
    from tests.discovery.conftest import HOOKS, register_hooks

    ids_ = register_hooks(shared)
    assert len(ids_) == len(list(HOOKS.glob("discovery-*.hook"))) == 10
    status, body = shared.control("GET", "/v1/hooks")
    hooks = {h["name"]: h["template"] for h in body["hooks"] if h["id"] in ids_}
    assert all(
        t["ARGUMENTS_STDIN"] == "yes" and t["ARGUMENTS"] == "$TEMPLATE" for t in hooks.values()
    )
    vm = {(t["STATE"], t["LCM_STATE"]) for t in hooks.values() if t["RESOURCE"] == "VM"}
    assert vm == {
        ("ACTIVE", "RUNNING"),
        ("POWEROFF", "LCM_INIT"),
        ("SUSPENDED", "LCM_INIT"),
        ("STOPPED", "LCM_INIT"),
        ("UNDEPLOYED", "LCM_INIT"),
        ("DONE", "LCM_INIT"),
        ("ACTIVE", "UNKNOWN"),
    }
    host = {t["STATE"] for t in hooks.values() if t["RESOURCE"] == "HOST"}
    assert host == {"MONITORED", "DISABLED", "OFFLINE"}
    for name, t in hooks.items():
        kind = "vm" if t["RESOURCE"] == "VM" else "host"
        assert t["COMMAND"] == f"one-cognit/discovery_{kind}_hook", name
    for hook_id in ids_:
        shared.one().hook.delete(hook_id)
