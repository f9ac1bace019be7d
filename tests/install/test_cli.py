"""`one-cognit install` / `uninstall` on --root trees: what lands where, twice = once, dry
runs, backups, conflicts, failures undone, exit codes."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services.install.table import MANIFEST
from testkit import ROOT
from tests.install.conftest import DRIVER, snapshot, write

REMOTES = "var/lib/one/remotes"
MIGRATE_SHIM = (ROOT / "services/tunnel_agent/shim/migrate").read_bytes()
AUTH_SHIM = (ROOT / "services/authd/shim/authenticate").read_bytes()


class Commands:
    """install / uninstall on a --root, against the simulated oned."""

    def __init__(self, cli, oned: list[str]) -> None:
        self.cli, self.oned = cli, oned

    def install(self, root: Path, role: str, *more: str):
        return self.cli("install", f"--{role}", "--root", str(root), *self.oned, *more)

    def uninstall(self, root: Path, *more: str):
        return self.cli("uninstall", "--root", str(root), *self.oned, *more)


@pytest.fixture
def one(cli, oned) -> Commands:
    return Commands(cli, oned)


def test_frontend_install_places_shims_and_uninstall_restores_the_tree(one, frontend):
    before = snapshot(frontend)
    result = one.install(frontend, "frontend")
    assert result.code == 0, result.err
    kvm = frontend / REMOTES / "vmm/kvm"
    assert (kvm / "migrate_default").read_bytes() == DRIVER  # OpenNebula's, renamed once
    assert (kvm / "migrate").read_bytes() == MIGRATE_SHIM
    assert stat.S_IMODE((kvm / "migrate").stat().st_mode) == 0o755
    assert (frontend / REMOTES / "auth/biscuit/authenticate").read_bytes() == AUTH_SHIM
    unit = (frontend / "etc/systemd/system/one-vm-exporter.service").read_text()
    assert f"ExecStart={Path(sys.executable).parent}/one-vm-exporter" in unit
    # Every step is reported; oned.conf is not edited but its missing lines are printed.
    assert f"rename /{REMOTES}/vmm/kvm/migrate to /{REMOTES}/vmm/kvm/migrate_default" in result.out
    assert (
        result.out.count(": done")
        == len(json.loads((frontend / MANIFEST.lstrip("/")).read_text())["entries"]) + 1
    )
    assert '    AUTHN = "ssh,x509,ldap,server_cipher,server_x509,saml,biscuit"' in result.out
    assert 'NAME = "biscuit",' in result.out and "onehost sync --force" in result.out
    assert (frontend / "etc/one/oned.conf").read_bytes() == before["etc/one/oned.conf"][-1]
    result = one.uninstall(frontend)
    assert result.code == 0, result.err
    assert snapshot(frontend) == before


def test_install_twice_is_install_once(one, frontend, host):
    for root, role in ((frontend, "frontend"), (host, "host")):
        assert one.install(root, role).code == 0
        once = snapshot(root)
        again = one.install(root, role)
        assert again.code == 0 and "nothing to change" in again.out, again.out
        assert snapshot(root) == once


def test_dry_run_changes_nothing_and_says_what_it_would_do(one, frontend, host):
    for root, role in ((frontend, "frontend"), (host, "host")):
        before = snapshot(root)
        result = one.install(root, role, "--dry-run")
        assert result.code == 0, result.err
        assert "--dry-run: nothing is changed" in result.out and "would install" in result.out
        assert snapshot(root) == before
    assert one.install(frontend, "frontend").code == 0
    installed = snapshot(frontend)
    result = one.uninstall(frontend, "--dry-run")
    assert result.code == 0 and "would remove" in result.out
    assert snapshot(frontend) == installed


def test_host_install_units_modules_and_a_private_token(one, host, tmp_path):
    before = snapshot(host)
    result = one.install(host, "host")
    assert result.code == 0, result.err
    token = host / "etc/one-cognit/token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) >= 40
    assert "A new token is in /etc/one-cognit/token" in result.out
    units = sorted(p.name for p in (host / "etc/systemd/system").glob("*.service"))
    assert units == ["one-rapl-agent.service", "one-tunnel-agent.service"]
    modules = (host / "etc/modules-load.d/one-cognit-rapl.conf").read_text()
    assert "intel_rapl_common\nintel_rapl_msr\n" in modules
    assert "systemctl enable --now one-rapl-agent one-tunnel-agent" in result.out
    # Another host gets the same token from a copy; an existing one is kept otherwise.
    other = tmp_path / "host2"
    other.mkdir()
    copy = tmp_path / "token.copy"
    copy.write_bytes(token.read_bytes())
    assert one.install(other, "host", "--token-file", str(copy)).code == 0
    assert (other / "etc/one-cognit/token").read_bytes() == token.read_bytes()
    assert one.uninstall(host).code == 0
    assert snapshot(host) == before


def test_replaced_files_are_backed_up_and_put_back(one, frontend):
    ours = frontend / REMOTES / "auth/biscuit/authenticate"
    write(ours, b"#!/bin/sh\n# someone's older driver\n", 0o750)
    before = snapshot(frontend)
    result = one.install(frontend, "frontend")
    assert (
        result.code == 0 and "replace /var/lib/one/remotes/auth/biscuit/authenticate" in result.out
    )
    backup = frontend / "var/lib/one-cognit/backup" / REMOTES / "auth/biscuit/authenticate"
    assert backup.read_bytes() == b"#!/bin/sh\n# someone's older driver\n"
    assert stat.S_IMODE(backup.parent.stat().st_mode) == 0o700
    assert ours.read_bytes() == AUTH_SHIM
    assert one.uninstall(frontend).code == 0
    assert snapshot(frontend) == before


def test_migrate_already_wrapped_is_not_renamed_again(one, frontend):
    kvm = frontend / REMOTES / "vmm/kvm"
    (kvm / "migrate").rename(kvm / "migrate_default")
    write(kvm / "migrate", b"#!/bin/sh\n# an older wrapper\n", 0o755)
    before = snapshot(frontend)
    result = one.install(frontend, "frontend")
    assert result.code == 0 and "rename" not in result.out
    assert (kvm / "migrate_default").read_bytes() == DRIVER
    assert one.uninstall(frontend).code == 0
    assert snapshot(frontend) == before


def test_changes_since_install_stop_uninstall_with_nothing_changed(one, frontend):
    assert one.install(frontend, "frontend").code == 0
    unit = frontend / "etc/systemd/system/one-authd.service"
    unit.write_text(unit.read_text() + "# operator's edit\n")
    installed = snapshot(frontend)
    result = one.uninstall(frontend)
    assert result.code == 1
    assert "one-authd.service was changed since one-cognit installed it" in result.out
    assert "nothing was changed" in result.err and snapshot(frontend) == installed
    # Install will not overwrite it either.
    assert one.install(frontend, "frontend").code == 1
    assert snapshot(frontend) == installed


def test_enabled_units_must_be_disabled_before_uninstall(one, host):
    assert one.install(host, "host").code == 0
    wants = host / "etc/systemd/system/multi-user.target.wants/one-rapl-agent.service"
    wants.symlink_to("/etc/systemd/system/one-rapl-agent.service")
    installed = snapshot(host)
    result = one.uninstall(host)
    assert result.code == 1 and "systemctl disable --now one-rapl-agent" in result.err
    assert snapshot(host) == installed


def test_a_path_in_the_way_stops_before_any_change(one, frontend):
    (frontend / "etc/systemd/system/opennebula.service").unlink()
    (frontend / "etc/systemd/system").rmdir()
    write(frontend / "etc/systemd/system", b"not a directory\n")
    before = snapshot(frontend)
    result = one.install(frontend, "frontend")
    assert result.code == 1
    assert "/etc/systemd/system is in the way: it should be a directory" in result.out
    assert snapshot(frontend) == before


def test_an_unwritable_path_mid_run_undoes_everything_this_run_did(frontend, oned):
    """/etc/systemd/system read-only (a bind mount in a private mount namespace): the remotes
    were already changed when the first unit fails; the run undoes them, newest first."""
    before = snapshot(frontend)
    system = frontend / "etc/systemd/system"
    script = (
        f"mount --bind {system} {system} && mount -o remount,ro,bind {system} && "
        f"exec {sys.executable} -m services.cli install --frontend --root {frontend} "
        + " ".join(oned)
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: Read-only file system" in result.stdout
    assert "undo [" in result.stdout and "rename" in result.stdout
    assert "every change of this run was undone" in result.stderr
    assert snapshot(frontend) == before


def test_bad_flags_and_places_exit_2_or_1(cli, one, frontend, tmp_path):
    assert cli("install", "--root", str(frontend)).code == 2  # no role
    assert cli("install", "--frontend", "--host", "--root", str(frontend)).code == 2
    assert cli("install", "--frontend", "--skip", "nope", "--root", str(frontend)).code == 2
    missing = one.install(tmp_path / "absent", "host")
    assert missing.code == 2 and "is not a directory" in missing.err
    empty = tmp_path / "empty"
    empty.mkdir()
    not_frontend = one.install(empty, "frontend")
    assert not_frontend.code == 1 and "no OpenNebula remotes directory" in not_frontend.err
    no_source = one.install(frontend, "frontend", "--source", str(tmp_path))
    assert no_source.code == 2 and "--source must be a one-cognit checkout" in no_source.err
    assert snapshot(empty) == {}


def test_an_unreadable_manifest_stops_with_nothing_changed(cli, one, frontend):
    assert one.install(frontend, "frontend").code == 0
    manifest = frontend / MANIFEST.lstrip("/")
    manifest.write_text('{"version": 1, "entries": [{"kind": "file", "role": "frontend"}]}')
    installed = snapshot(frontend)
    for command in ("install", "uninstall"):
        args = ["--frontend"] if command == "install" else []
        result = cli(command, *args, "--root", str(frontend))
        assert result.code == 1 and "cannot use the install manifest" in result.err
    assert snapshot(frontend) == installed


def test_skip_leaves_a_service_out(one, frontend):
    before = snapshot(frontend)
    result = one.install(frontend, "frontend", "--skip", "tunnel_agent,authd")
    assert result.code == 0
    assert (frontend / REMOTES / "vmm/kvm/migrate").read_bytes() == DRIVER
    assert not (frontend / REMOTES / "auth/biscuit").exists()
    assert "biscuit" not in result.out
    assert one.uninstall(frontend).code == 0
    assert snapshot(frontend) == before
