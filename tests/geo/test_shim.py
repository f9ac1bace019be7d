"""The host hook shim as oned runs it: a process posting $TEMPLATE to a real geo."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sys
import time
import xmlrpc.client

from testkit import ROOT, async_wait_for, free_port

from .lab import ADMIN, expected, geo_lab

SHIM = ROOT / "services" / "geo" / "shim" / "host_hook"
HOOK_TEMPLATE = ROOT / "deploy" / "one" / "hooks" / "geo-host.tmpl"
NET = "127.0.90"


async def run_shim(
    args: list[str], *, stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run the shim with only the environment given (plus PATH), as a hook would."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SHIM),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=30)
    return proc.returncode, out.decode(), err.decode()


def template_b64(lab, host_id: int) -> str:
    proxy = xmlrpc.client.ServerProxy(lab.sim.rpc_url)
    try:
        ok, body, *_ = proxy.one.host.info(ADMIN, host_id, False)
    finally:
        proxy("close")()
    return base64.b64encode(body.encode()).decode()


FLEET = {
    "hosts": [
        {"name": "a", "hostname": f"{NET}.1", "template": {"PUBLIC_IP": "193.0.6.139"}},
        {"name": "b", "hostname": f"{NET}.2", "template": {"PUBLIC_IP": "130.206.1.1"}},
    ]
}


async def test_the_shim_posts_the_template_from_argv_or_stdin(tmp_path):
    async with geo_lab(tmp_path, FLEET) as lab:
        env = {"ONE_COGNIT_GEO_URL": lab.url, "http_proxy": "http://127.0.0.1:1"}
        code, out, err = await run_shim([template_b64(lab, 0)], env=env)
        assert (code, out.strip(), err) == (0, "one-geo: host 0 queued", "")
        code, out, err = await run_shim([], stdin=template_b64(lab, 1).encode() + b"\n", env=env)
        assert (code, out.strip(), err) == (0, "one-geo: host 1 queued", "")
        await async_wait_for(lambda: lab.locator.events["accepted"] == 2, what="both events")
        await async_wait_for(lambda: not lab.locator._tasks, what="both applied")
        assert lab.sim.template(1)["GEOLOCATION"] == expected("130.206.1.1")[0]


async def test_the_shim_reads_geos_token_file(tmp_path):
    token = tmp_path / "geo.token"
    token.write_text("t0ken\n")
    async with geo_lab(tmp_path, FLEET, token_file=token) as lab:
        payload = template_b64(lab, 0)
        code, _, err = await run_shim([payload], env={"ONE_COGNIT_GEO_URL": lab.url})
        assert code == 1 and "HTTP 401" in err and "bearer" in err
        env = {"ONE_COGNIT_GEO_URL": lab.url, "ONE_COGNIT_GEO_TOKEN_FILE": str(token)}
        code, out, err = await run_shim([payload], env=env)
        assert code == 0, err
        env["ONE_COGNIT_GEO_TOKEN_FILE"] = str(tmp_path / "missing")
        code, _, err = await run_shim([payload], env=env)
        assert code == 1 and "cannot read token file" in err


async def test_the_shim_fails_clearly_on_bad_input_and_without_geo(tmp_path):
    async with geo_lab(tmp_path, FLEET) as lab:
        env = {"ONE_COGNIT_GEO_URL": lab.url}
        for args, stdin, says in [
            (["%%% not base64"], b"", "not base64"),
            ([], b"", "no $TEMPLATE"),
            ([], b"A" * (3 * 1024 * 1024), "over"),
        ]:
            code, out, err = await run_shim(args, stdin=stdin, env=env)
            assert code == 1 and says in err and out == "", (says, err)
            assert len(err.strip().splitlines()) == 1
        # geo answers 400 for what is base64 but no host: its reason is passed on
        garbage = base64.b64encode(b"<VM/>").decode()
        code, _, err = await run_shim([garbage], env=env)
        assert code == 1 and "HTTP 400" in err and "not a <HOST>" in err
        assert lab.locator.events["accepted"] == 0
        bad_timeout = {**env, "ONE_COGNIT_GEO_TIMEOUT": "soon"}
        code, _, err = await run_shim([template_b64(lab, 0)], env=bad_timeout)
        assert code == 1 and "ONE_COGNIT_GEO_TIMEOUT" in err
    payload = base64.b64encode(b"<HOST><ID>0</ID><STATE>2</STATE></HOST>").decode()
    closed = {"ONE_COGNIT_GEO_URL": f"http://127.0.0.1:{free_port()}"}
    code, _, err = await run_shim([payload], env=closed)
    assert code == 1 and "cannot reach one-geo" in err
    # a geo that accepts and never answers: the shim gives up at its deadline
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        env = {"ONE_COGNIT_GEO_URL": f"http://127.0.0.1:{port}", "ONE_COGNIT_GEO_TIMEOUT": "1"}
        started = time.monotonic()
        code, _, err = await run_shim([payload], env=env)
        assert code == 1 and "did not answer within 1 s" in err
        assert time.monotonic() - started < 10


async def test_the_hook_template_fires_the_shim_when_a_host_enters_monitored(tmp_path):
    """deploy/one/hooks/geo-host.tmpl registered as is, run by the simulator's hook manager."""
    hooks = tmp_path / "hooks"
    (hooks / "one-cognit").mkdir(parents=True)
    (hooks / "one-cognit" / "geo_host_hook").symlink_to(SHIM)
    port = free_port()
    fleet = {"hosts": [{"name": "edge", "hostname": f"{NET}.9"}]}
    async with geo_lab(
        tmp_path,
        fleet,
        geo_port=port,
        sim_args=("--hook-dir", str(hooks)),
        sim_env={"ONE_COGNIT_GEO_URL": f"http://127.0.0.1:{port}"},
    ) as lab:
        proxy = xmlrpc.client.ServerProxy(lab.sim.rpc_url)
        try:
            ok, hook_id, *_ = proxy.one.hook.allocate(ADMIN, HOOK_TEMPLATE.read_text())
            assert ok, hook_id
            assert proxy.one.host.update(ADMIN, 0, 'PUBLIC_IP = "212.77.98.9"', 1)[0]
        finally:
            proxy("close")()
        assert "GEOLOCATION" not in lab.sim.template(0)
        lab.sim.control("POST", "/v1/hosts/0/state", {"state": "DISABLED"})
        lab.sim.control("POST", "/v1/hosts/0/state", {"state": "MONITORED"})
        coords = expected("212.77.98.9")[0]
        await async_wait_for(
            lambda: lab.sim.template(0).get("GEOLOCATION") == coords,
            timeout=20,
            what="GEOLOCATION written through the hook",
        )

        def executions() -> list[dict]:
            path = f"/v1/hooks/executions?hook_id={hook_id}"
            return lab.sim.control("GET", path)[1]["executions"]

        # the shim is still exiting when geo has written: wait for the hook's record
        (record,) = await async_wait_for(executions, what="the hook's execution record")
        assert record["code"] == 0, record
        assert lab.locator.reconciles["ok"] == 1  # the hook did it, not a reconcile
        assert lab.sim.template(0)["GEOLOCATION_SOURCE"] == "one-geo"
