"""The planner, without a file or oned: what install and uninstall decide to do (pure)."""

from __future__ import annotations

import json

import pytest

from services.common.oned import Hook
from services.install.hookspec import hook_spec
from services.install.manifest import Entry, Manifest, ManifestError, parse_manifest, sha256
from services.install.plan import (
    DIRECTORY,
    MISSING,
    PathState,
    Want,
    WantHook,
    ancestors,
    plan_install,
    plan_uninstall,
)
from services.install.steps import (
    AllocateHook,
    CopyFile,
    DeleteHook,
    MakeDir,
    Move,
    RemoveDir,
    RemoveFile,
    UpdateHook,
    WriteFile,
    WriteManifest,
)

MANIFEST = "/var/lib/one-cognit/install-manifest.json"
BACKUPS = "/var/lib/one-cognit/backup"
KVM = "/var/lib/one/remotes/vmm/kvm"
SHIM = b"#!/usr/bin/env python3\n# wrapper\n"
DRIVER = b"#!/bin/bash\n# OpenNebula's migrate\n"


def tree(*dirs: str, **files: tuple[bytes, int]) -> dict[str, PathState]:
    """Path states: the directories given (and their parents), files as path=(content, mode)."""
    out: dict[str, PathState] = {}
    for d in dirs:
        for p in [*ancestors(d + "/x")]:
            out[p] = DIRECTORY
    for path, (content, mode) in files.items():
        out[path] = PathState("file", content, mode)
    return out


def install(wants=(), hooks=(), paths=None, registered=None, manifest=None):
    return plan_install(
        "frontend",
        list(wants),
        list(hooks),
        paths or {},
        registered or {},
        manifest or Manifest(),
        manifest_path=MANIFEST,
        backup_dir=BACKUPS,
    )


def uninstall(manifest, paths, registered=None, roles=("frontend", "host")):
    return plan_uninstall(roles, paths, registered or {}, manifest, manifest_path=MANIFEST)


def run(paths: dict[str, PathState], steps) -> dict[str, PathState]:
    """What the file steps leave on the (pure) tree."""
    out = dict(paths)
    for step in steps:
        if isinstance(step, MakeDir):
            out[step.path] = DIRECTORY
        elif isinstance(step, Move):
            out[step.to], out[step.path] = out[step.path], MISSING
        elif isinstance(step, CopyFile):
            out[step.to] = out[step.path]
        elif isinstance(step, WriteFile):
            out[step.path] = PathState("file", step.content, step.mode)
        elif isinstance(step, WriteManifest):
            out[step.path] = (
                MISSING if step.content is None else PathState("file", step.content, 0o644)
            )
        elif isinstance(step, RemoveFile):
            out[step.path] = MISSING
        elif isinstance(step, RemoveDir) and not any(
            p.startswith(step.path + "/") and s.kind != "missing" for p, s in out.items()
        ):
            out[step.path] = MISSING
    return out


def existing(paths):
    return {p: s for p, s in paths.items() if s.kind != "missing"}


MIGRATE = Want(
    "frontend",
    "tunnel_agent",
    f"{KVM}/migrate",
    SHIM,
    0o755,
    "wrapper",
    keep_original="migrate_default",
)
UNIT = Want(
    "frontend", "authd", "/etc/systemd/system/one-authd.service", b"[Unit]\n", 0o644, "unit"
)


def test_fresh_install_renames_the_driver_once_and_records_everything():
    before = tree(KVM, "/etc/systemd/system", **{f"{KVM}/migrate": (DRIVER, 0o755)})
    plan = install([MIGRATE, UNIT], paths=before)
    assert not plan.conflicts
    assert [type(s).__name__ for s in plan.steps] == [
        "Move", "WriteFile", "WriteFile", "MakeDir", "WriteManifest",
    ]  # fmt: skip
    assert plan.steps[0] == Move(f"{KVM}/migrate", f"{KVM}/migrate_default", plan.steps[0].why)
    assert plan.steps[3] == MakeDir("/var/lib/one-cognit", 0o755)
    assert [e.kind for e in plan.manifest.entries] == ["rename", "file", "file", "dir"]
    assert parse_manifest(plan.steps[-1].content) == plan.manifest
    after = run(before, plan.steps)
    assert after[f"{KVM}/migrate_default"].content == DRIVER
    assert after[f"{KVM}/migrate"].content == SHIM
    # Twice = once: nothing left to do, the manifest is not rewritten.
    again = install([MIGRATE, UNIT], paths=after, manifest=plan.manifest)
    assert again.steps == () and again.manifest == plan.manifest
    # Uninstall puts the tree back as it was.
    back = uninstall(plan.manifest, after)
    assert not back.conflicts
    assert existing(run(after, back.steps)) == existing(before)


def test_migrate_default_already_there_is_not_renamed_again():
    before = tree(
        KVM,
        **{f"{KVM}/migrate_default": (DRIVER, 0o755), f"{KVM}/migrate": (b"old wrapper", 0o755)},
    )
    plan = install([MIGRATE], paths=before)
    kinds = [type(s).__name__ for s in plan.steps]
    assert "Move" not in kinds
    # The wrapper found there is not ours: kept as a backup, put back by uninstall.
    copy = CopyFile(f"{KVM}/migrate", f"{BACKUPS}{KVM}/migrate", f"backup of {KVM}/migrate")
    write = WriteFile(f"{KVM}/migrate", SHIM, 0o755, "parent", "wrapper", True)
    assert plan.steps.index(copy) + 1 == plan.steps.index(write)
    after = run(before, plan.steps)
    assert after[f"{BACKUPS}{KVM}/migrate"].content == b"old wrapper"
    assert all(
        s.mode == 0o700 for s in plan.steps if isinstance(s, MakeDir) and s.path.startswith(BACKUPS)
    )
    back = uninstall(plan.manifest, after)
    assert existing(run(after, back.steps)) == existing(before)


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, "nothing to wrap"),
        ({f"{KVM}/migrate": (SHIM, 0o755)}, "the driver it runs, is missing"),
    ],
)
def test_migrate_wrapper_refuses_without_a_driver_to_wrap(files, message):
    plan = install([MIGRATE], paths=tree(KVM, **files))
    assert any(message in c for c in plan.conflicts), plan.conflicts


def test_in_the_way_and_changed_since_install_are_conflicts():
    blocked = install([UNIT], paths=tree("/etc/systemd", **{"/etc/systemd/system": (b"", 0o644)}))
    assert blocked.conflicts == ("/etc/systemd/system is in the way: it should be a directory",)
    first = install([UNIT], paths=tree("/etc/systemd/system"))
    after = run(tree("/etc/systemd/system"), first.steps)
    after[UNIT.path] = PathState("file", b"[Unit]\n# edited by the operator\n", 0o644)
    again = install([UNIT], paths=after, manifest=first.manifest)
    assert (
        len(again.conflicts) == 1 and "changed since one-cognit installed it" in again.conflicts[0]
    )
    assert "changed since" in uninstall(first.manifest, after).conflicts[0]
    # A newer version of our own file replaces the recorded one without a backup.
    newer = Want(**{**UNIT.__dict__, "content": b"[Unit]\n# v2\n"})
    upgraded = install(
        [newer], paths=run(tree("/etc/systemd/system"), first.steps), manifest=first.manifest
    )
    assert [type(s).__name__ for s in upgraded.steps] == ["WriteFile", "WriteManifest"]
    assert upgraded.manifest.find("file", UNIT.path).sha256 == sha256(b"[Unit]\n# v2\n")


def test_a_token_already_there_is_kept():
    token = Want(
        "host",
        "tunnel_agent",
        "/etc/one-cognit/token",
        b"new\n",
        0o600,
        "token",
        owner="oneadmin",
        replace=False,
    )
    plan = install(
        [token], paths=tree("/etc/one-cognit", **{"/etc/one-cognit/token": (b"theirs\n", 0o600)})
    )
    assert plan.steps == () and plan.notes == ("kept /etc/one-cognit/token as it is (token)",)


SPEC = hook_spec(
    'NAME = "one-cognit-t"\nTYPE = state\nRESOURCE = VM\nON = RUNNING\nCOMMAND = "one-cognit/t"\n'
    'ARGUMENTS = "$TEMPLATE"\nARGUMENTS_STDIN = "yes"\n',
    "t.hook",
)
HOOK = WantHook("frontend", "discovery", SPEC, "t.hook")


def test_hooks_registered_updated_in_stored_form_or_left_alone():
    plan = install(hooks=[HOOK])
    assert plan.steps[0] == AllocateHook(SPEC, "t.hook")
    assert plan.manifest.find("hook", "one-cognit-t") == Entry(
        "frontend", "hook", name="one-cognit-t", created=True
    )
    same = Hook(4, "one-cognit-t", "state", dict(SPEC.stored))
    assert install(hooks=[HOOK], registered={"one-cognit-t": same}).steps == ()
    old = {**SPEC.stored, "COMMAND": "old/path", "TIMEOUT": "5"}
    plan = install(hooks=[HOOK], registered={"one-cognit-t": Hook(4, "one-cognit-t", "state", old)})
    update = plan.steps[0]
    assert isinstance(update, UpdateHook) and update.hook_id == 4
    # one.hook.update does not read ON again: the template sent carries STATE and LCM_STATE.
    assert update.template["STATE"] == "ACTIVE" and update.template["LCM_STATE"] == "RUNNING"
    assert "ON" not in update.template and update.why.startswith("COMMAND, TIMEOUT differed")
    entry = plan.manifest.find("hook", "one-cognit-t")
    assert entry.created is False and entry.previous == {"type": "state", "template": old}
    # Uninstall: a hook install created is deleted, one it updated gets its template back.
    now = Hook(4, "one-cognit-t", "state", dict(SPEC.stored))
    back = uninstall(plan.manifest, {}, {"one-cognit-t": now})
    assert back.steps[0] == UpdateHook(4, "one-cognit-t", old, dict(SPEC.stored), back.steps[0].why)
    created = install(hooks=[HOOK]).manifest
    assert uninstall(created, {}, {"one-cognit-t": now}).steps[0] == DeleteHook(
        4, "one-cognit-t", "state", dict(SPEC.stored)
    )
    assert uninstall(created, {}, {}).notes == ("hook one-cognit-t was already gone",)


def test_a_hook_of_another_kind_with_our_name_is_not_touched():
    host_hook = Hook(
        9, "one-cognit-t", "state", {"RESOURCE": "HOST", "STATE": "ERROR", "COMMAND": "x"}
    )
    plan = install(hooks=[HOOK], registered={"one-cognit-t": host_hook})
    assert plan.steps == () and "exists as a state HOST hook" in plan.conflicts[0]
    api_hook = Hook(9, "one-cognit-t", "api", {"CALL": "one.vm.allocate", "COMMAND": "x"})
    assert (
        "onehook delete 9"
        in install(hooks=[HOOK], registered={"one-cognit-t": api_hook}).conflicts[0]
    )


def test_uninstall_of_one_role_keeps_the_other_and_the_directories_it_needs():
    paths = tree("/etc/systemd/system", KVM, **{f"{KVM}/migrate": (DRIVER, 0o755)})
    front = install([MIGRATE], paths=paths)
    paths = run(paths, front.steps)
    rapl = Want(
        "host",
        "rapl_agent",
        "/etc/systemd/system/one-rapl-agent.service",
        b"[Unit]\n",
        0o644,
        "unit",
    )
    host = plan_install(
        "host", [rapl], [], paths, {}, front.manifest, manifest_path=MANIFEST, backup_dir=BACKUPS
    )
    paths = run(paths, host.steps)
    only_host = uninstall(host.manifest, paths, roles=("host",))
    assert RemoveFile(rapl.path, "installed by one-cognit") in only_host.steps
    assert {e.role for e in only_host.manifest.entries} == {"frontend"}
    # /var/lib/one-cognit still holds the manifest: neither removed nor forgotten.
    assert only_host.manifest.find("dir", "/var/lib/one-cognit") is not None
    assert not any(
        isinstance(s, RemoveDir) and s.path == "/var/lib/one-cognit" for s in only_host.steps
    )
    paths = run(paths, only_host.steps)
    rest = uninstall(only_host.manifest, paths, roles=("frontend",))
    assert existing(run(paths, rest.steps)) == existing(
        tree("/etc/systemd/system", KVM, **{f"{KVM}/migrate": (DRIVER, 0o755)})
    )


def body(*entries: dict) -> bytes:
    return json.dumps({"version": 1, "entries": list(entries)}).encode()


@pytest.mark.parametrize(
    "data, message",
    [
        (b"{", "not JSON"),
        (b'{"version": 2, "entries": []}', "version 1"),
        (body({"kind": "file", "role": "frontend", "path": "rel", "sha256": "x"}), "absolute"),
        (body({"kind": "dir", "role": "frontend", "path": "/a/../etc"}), "'..'"),
        (body({"kind": "rm -rf", "role": "frontend"}), "kind must be"),
        (body({"kind": "dir", "role": "everyone", "path": "/a"}), "role must be"),
        (body({"kind": "hook", "role": "host", "name": "h", "previous": {"type": 1}}), "previous"),
    ],
)
def test_a_manifest_uninstall_cannot_trust_is_refused(data, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(data)


def test_manifest_round_trip():
    plan = install([UNIT], hooks=[HOOK], paths=tree("/etc/systemd/system"))
    body = plan.manifest.to_bytes()
    assert parse_manifest(body) == plan.manifest
    assert json.loads(body)["version"] == 1
