"""The HTTP contract in-process (create_app + aiohttp's test client): auth, bad bodies, routes.

Every request here is refused before any interface is made; the app only reads this host's
links, addresses and routes at start (the pool is one no route of a test machine uses).
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.common.config import load_config
from services.common.errors import ConfigError
from services.tunnel_agent.app import create_app
from services.tunnel_agent.config import TunnelAgentConfig
from testkit import run

TOKEN = "http-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POOL = "198.18.254.0/24"


def config(tmp_path, *flags: str) -> TunnelAgentConfig:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    argv = ["--token-file", str(token), "--overlay-pool", POOL, "--listen", "127.0.0.1:1", *flags]
    return load_config(TunnelAgentConfig, argv, prog="t", description="")


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(config(tmp_path)))) as c:
        yield c


async def test_state_changing_calls_need_the_token(client):
    for method, path in (
        ("POST", "/v1/tunnels"),
        ("PUT", "/v1/tunnels/0123456789abcdef"),
        ("DELETE", "/v1/tunnels/0123456789abcdef"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            resp = await client.request(
                method, path, json={"vm_id": 1, "peer": "x"}, headers=headers
            )
            assert resp.status == 401, (method, headers)
            assert await resp.json() == {"error": "missing or wrong bearer token"}
    for path in ("/v1/tunnels", "/v1/addresses", "/healthz", "/metrics"):
        assert (await client.get(path)).status == 200


@pytest.mark.parametrize(
    "raw, needle",
    [
        (b"", "body is empty"),
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"vm_id": "42", "peer": "kvm-b"}', "vm_id is a str"),
        (b'{"vm_id": 42}', "peer is missing"),
        (b'{"vm_id": 42, "peer": "kvm b; rm"}', "neither an IP address nor a host name"),
        (b"[" * 100_000 + b"]" * 100_000, ""),  # nested too deep for json: still a 400
    ],
)
async def test_bad_post_bodies_are_400(client, raw, needle):
    resp = await client.post("/v1/tunnels", data=raw, headers=AUTH)
    assert resp.status == 400
    assert needle in (await resp.json())["error"]


async def test_bad_put_bodies_and_ids(client):
    body = {
        "vm_id": 1,
        "vni": 5000,
        "peer": "10.0.0.1",
        "local_ip": "192.168.69.6",
        "peer_ip": "192.168.69.5",
        "mtu": 1450,
        "expires_at": 2**33,
        "created_at": 1,
    }
    resp = await client.put("/v1/tunnels/0123456789abcdef", json=body, headers=AUTH)
    assert (
        resp.status == 400 and "outside this agent's --overlay-pool" in (await resp.json())["error"]
    )
    resp = await client.put("/v1/tunnels/NOT-AN-ID", json=body, headers=AUTH)
    assert resp.status == 404
    resp = await client.get("/v1/tunnels/0123456789abcdef")
    assert resp.status == 404 and "no tunnel" in (await resp.json())["error"]
    resp = await client.delete("/v1/tunnels/0123456789abcdef?scope=sideways", headers=AUTH)
    assert resp.status == 400
    resp = await client.delete("/v1/tunnels/0123456789abcdef", headers=AUTH)
    assert resp.status == 200
    assert await resp.json() == {"id": "0123456789abcdef", "local": "absent", "peer": "unknown"}


async def test_unknown_routes_wrong_methods_and_big_bodies(client):
    resp = await client.get("/v1/nothing")
    assert resp.status == 404 and "no route" in (await resp.json())["error"]
    resp = await client.patch("/v1/tunnels", headers=AUTH)
    assert resp.status == 405
    resp = await client.post("/v1/addresses", headers=AUTH)
    assert resp.status == 405
    resp = await client.post("/v1/tunnels", data=io.BytesIO(b"x" * (1024 * 1024 + 1)), headers=AUTH)
    assert resp.status == 413


async def test_addresses_are_every_address_of_every_interface_as_iproute2_shows_them(client):
    body = await (await client.get("/v1/addresses")).json()
    ours = {
        (a["interface"], a["address"], a["prefixlen"], a["family"], a["scope"])
        for a in body["addresses"]
    }
    shown = json.loads(
        subprocess.run(
            ["ip", "-j", "address", "show"], capture_output=True, text=True, check=True
        ).stdout
    )
    theirs = {
        (link["ifname"], a["local"], a["prefixlen"], a["family"], a["scope"])
        for link in shown
        for a in link.get("addr_info", [])
    }
    assert ours == theirs and ours
    assert set(body["addresses"][0]) == {"interface", "address", "prefixlen", "family", "scope"}


async def test_metrics_pass_promtool(client):
    text = await (await client.get("/metrics")).text()
    for name in (
        'one_cognit_tunnel_agent_tunnels{role="src"} 0.0',
        "one_cognit_tunnel_agent_tunnels_past_lease 0.0",
        'one_cognit_tunnel_agent_tunnel_creates_total{result="created",role="src"} 0.0',
        'one_cognit_tunnel_agent_sweep_removed_total{reason="orphaned"} 0.0',
        'one_cognit_tunnel_agent_sweeps_total{result="ok"}',
    ):
        assert name in text, name
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_refuses_to_start_without_a_token_or_with_a_pool_on_a_route(tmp_path):
    with pytest.raises(ConfigError, match="token-file is required"):
        load_config(TunnelAgentConfig, [], prog="t", description="")
    (tmp_path / "empty").write_text("\n")
    done = run([*AGENT, "--token-file", str(tmp_path / "empty")])
    assert done.returncode == 2 and "is empty" in done.stderr
    # This host's own route (192.0.2.0/24 or whatever eth0 has) inside the pool: refused.
    routes = json.loads(run(["ip", "-j", "-4", "route", "show"]).stdout)
    route = next(r for r in routes if r["dst"] != "default")
    done = run([*AGENT, "--insecure-no-auth", "--overlay-pool", route["dst"]])
    assert done.returncode == 2
    assert f"overlaps route(s) of this host: {route['dst']}" in done.stderr


AGENT = [".venv/bin/python", "-m", "services.tunnel_agent", "--listen", "127.0.0.1:1"]


def test_help_lists_every_flag_with_its_default():
    out = run([*AGENT, "--help"]).stdout
    flat = " ".join(out.split())
    for flag, default in (
        ("--listen", "0.0.0.0:9933"),
        ("--token-file", "none"),
        ("--overlay-pool", "192.168.69.0/24"),
        ("--vni-range", "4096-8191"),
        ("--mtu", "auto"),
        ("--lease-ttl", "3600"),
        ("--peer-port", "9933"),
        ("--peer-timeout", "5.0"),
        ("--sweep-interval", "60.0"),
        ("--orphan-grace", "30.0"),
        ("--insecure-no-auth, --no-insecure-no-auth", "False"),
    ):
        # The first "(default: ...)" after the flag's own entry (past the usage lines).
        entry = flat.index(f" {flag} ", flat.index("options:"))
        shown = flat[flat.index("(default: ", entry) :].split(")")[0]
        assert shown == f"(default: {default}", (flag, shown)
