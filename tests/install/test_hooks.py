"""Hooks through oned's API (the simulator): registered once, updated in oned's stored form,
deleted or restored by uninstall; oned missing, refusing or refusing us: nothing changed."""

from __future__ import annotations

import shutil
from pathlib import Path

from services.install.hookspec import hook_spec
from testkit import ROOT, get_json, http
from testkit.sim import Sim, start_sim
from tests.install.conftest import snapshot

HOOK_FILES = sorted((ROOT / "deploy/one/hooks").glob("discovery-*.hook")) + sorted(
    (ROOT / "deploy/one/hooks").glob("geo-*.tmpl")
)
SPECS = {s.name: s for s in (hook_spec(p.read_text(), p.name) for p in HOOK_FILES)}
OPERATORS = (
    'NAME = "ft-host-error"\nTYPE = state\nRESOURCE = HOST\nSTATE = ERROR\n'
    'COMMAND = "ft/host_error.rb"\nARGUMENTS = "$TEMPLATE -m -p 5"\n'
)


def pool(sim: Sim) -> dict[str, tuple]:
    """oned's hooks as the installer's adapter reads them: name -> (id, type, template)."""
    status, body = get_json(sim.control_url + "/v1/hooks")
    assert status == 200, body
    return {h["name"]: (h["id"], h["type"], h["template"]) for h in body["hooks"]}


def calls(sim: Sim, reset: bool = False) -> dict[str, int]:
    status, body = get_json(sim.control_url + "/calls")
    if reset:
        http("DELETE", sim.control_url + "/calls")
    return body["calls"]


def install(cli, root: Path, sim: Sim, auth: Path, *more: str):
    return cli(
        "install", "--frontend", "--root", str(root),
        "--one-xmlrpc", sim.rpc_url, "--one-auth", str(auth), *more,
    )  # fmt: skip


def uninstall(cli, root: Path, sim: Sim, auth: Path):
    return cli(
        "uninstall", "--root", str(root), "--one-xmlrpc", sim.rpc_url, "--one-auth", str(auth)
    )


def test_hooks_registered_once_and_deleted_by_name(cli, frontend, sim, auth):
    sim.raw("one.hook.allocate", OPERATORS)
    hooks_before, tree_before = pool(sim), snapshot(frontend)
    assert set(hooks_before) == {"ft-host-error"}
    result = install(cli, frontend, sim, auth)
    assert result.code == 0, result.out + result.err
    hooks = pool(sim)
    assert set(hooks) == {"ft-host-error", *SPECS}
    for name, spec in SPECS.items():
        hook_id, hook_type, template = hooks[name]
        assert hook_type == "state" and template == {k: str(v) for k, v in spec.stored.items()}
        assert f"register hook {name} (from deploy/one/hooks/" in result.out
    # The shims the hooks name are where oned runs them.
    for spec in SPECS.values():
        assert (frontend / "var/lib/one/remotes/hooks" / spec.stored["COMMAND"]).is_file()
    # Twice = once: no write to oned at all, the same pool and tree.
    tree, _ = snapshot(frontend), calls(sim, reset=True)
    again = install(cli, frontend, sim, auth)
    assert again.code == 0 and "nothing to change" in again.out
    assert set(calls(sim)) == {"one.hookpool.info"}
    assert pool(sim) == hooks and snapshot(frontend) == tree
    # Uninstall deletes exactly the hooks install registered, by name.
    result = uninstall(cli, frontend, sim, auth)
    assert result.code == 0, result.out + result.err
    assert pool(sim) == hooks_before and snapshot(frontend) == tree_before


def test_a_hook_of_ours_that_differs_is_updated_then_restored(cli, frontend, sim, auth):
    name = "one-cognit-discovery-vm-running"
    text = (ROOT / "deploy/one/hooks/discovery-vm-running.hook").read_text()
    sim.raw("one.hook.allocate", text.replace('TIMEOUT = "15"', 'TIMEOUT = "99"'))
    before = pool(sim)
    result = install(cli, frontend, sim, auth)
    assert result.code == 0, result.out + result.err
    assert f"update hook {name} (id {before[name][0]}): TIMEOUT differed" in result.out
    after = pool(sim)
    assert after[name][0] == before[name][0]  # the same hook, updated in place
    assert after[name][2]["TIMEOUT"] == "15"
    assert (after[name][2]["STATE"], after[name][2]["LCM_STATE"]) == ("ACTIVE", "RUNNING")
    assert uninstall(cli, frontend, sim, auth).code == 0
    assert pool(sim) == before  # put back as it was, not deleted


def test_oned_missing_or_refusing_us_stops_with_nothing_changed(cli, frontend, auth, tmp_path):
    before = snapshot(frontend)
    sim = start_sim("--hosts", "1")
    sim.service.close()
    result = install(cli, frontend, sim, auth)
    assert result.code == 1
    assert "cannot read oned's hooks" in result.err and "cannot reach oned" in result.err
    assert "nothing was changed" in result.err and snapshot(frontend) == before
    other = start_sim("--hosts", "1")
    try:
        wrong = tmp_path / "wrong_auth"
        wrong.write_text("oneadmin:wrong\n")
        result = install(cli, frontend, other, wrong)
        assert result.code == 1 and "authenticated" in result.err, result.err
        assert snapshot(frontend) == before and pool(other) == {}
        result = install(cli, frontend, other, tmp_path / "no_such_auth")
        assert result.code == 2 and "cannot read ONE_AUTH file" in result.err
    finally:
        other.service.close()


def source_copy(tmp_path: Path) -> Path:
    """A copy of the files install reads, to be changed by a test."""
    copy = tmp_path / "source"
    shutil.copytree(ROOT / "deploy", copy / "deploy")
    for shim in (ROOT / "services").glob("*/shim"):
        shutil.copytree(shim, copy / shim.relative_to(ROOT), symlinks=True)
    return copy


def test_a_hook_oned_refuses_undoes_the_whole_run(cli, frontend, sim, auth, tmp_path):
    source = source_copy(tmp_path)
    last = sorted((source / "deploy/one/hooks").glob("discovery-*.hook"))[-1]
    last.write_text(last.read_text().replace('NAME = "one-cognit-', 'NAME = "one&cognit-'))
    sim.raw("one.hook.allocate", OPERATORS)
    hooks_before, tree_before = pool(sim), snapshot(frontend)
    result = install(cli, frontend, sim, auth, "--source", str(source))
    assert result.code == 1
    assert "FAILED: one.hook.allocate: [one.hook.allocate] Invalid name." in result.out
    assert result.out.count("undo [") >= len(SPECS) - 1 + 3  # hooks, shims, the rename...
    assert "every change of this run was undone" in result.err
    assert pool(sim) == hooks_before and snapshot(frontend) == tree_before


def test_uninstall_needs_oned_only_for_hooks(cli, frontend, host, auth):
    sim = start_sim("--hosts", "1")
    try:
        assert install(cli, frontend, sim, auth).code == 0
        installed = snapshot(frontend)
    finally:
        sim.service.close()
    result = uninstall(cli, frontend, sim, auth)
    assert result.code == 1 and "cannot reach oned" in result.err
    assert snapshot(frontend) == installed
    # A host's part has no hook: no oned needed.
    assert cli("install", "--host", "--root", str(host)).code == 0
    assert (
        cli("uninstall", "--root", str(host), "--one-xmlrpc", "http://127.0.0.1:9/RPC2").code == 0
    )
