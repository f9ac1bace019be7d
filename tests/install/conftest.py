"""A frontend's and a host's file tree under a --root, snapshots of it, the CLI in-process."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.install.cli import main
from testkit import ROOT
from testkit.sim import Sim, start_sim

DRIVER = b"#!/bin/bash\n# OpenNebula's vmm/kvm/migrate\nexit 0\n"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root`: (kind, mode, content or link target); what 'as it was' means."""
    out: dict[str, tuple] = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(base) / name
            rel = str(path.relative_to(root))
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", mode, info.st_uid, info.st_gid)
            else:
                out[rel] = ("file", mode, info.st_uid, info.st_gid, path.read_bytes())
    return out


def write(path: Path, content: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)


@pytest.fixture
def frontend(tmp_path: Path) -> Path:
    """An OpenNebula frontend's tree: remotes with the KVM driver, oned.conf, systemd."""
    root = tmp_path / "frontend"
    remotes = root / "var/lib/one/remotes"
    write(remotes / "vmm/kvm/migrate", DRIVER, 0o755)
    write(remotes / "vmm/kvm/deploy", b"#!/bin/bash\n", 0o755)
    write(remotes / "auth/ldap/authenticate", b"#!/usr/bin/env ruby\n", 0o755)
    write(remotes / "hooks/ft/host_error.rb", b"# upstream hook\n", 0o755)
    write(root / "etc/one/oned.conf", (ROOT / "tests/fixtures/install/oned.conf").read_bytes())
    write(root / "etc/systemd/system/opennebula.service", b"[Unit]\n")
    (root / "var/lib/one/.one").mkdir(parents=True)
    return root


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A KVM host's tree: systemd and modules-load.d directories as Debian has them."""
    root = tmp_path / "host"
    (root / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    (root / "etc/modules-load.d").mkdir(parents=True)
    write(root / "etc/modules-load.d/modules.conf", b"# /etc/modules\n")
    return root


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys) -> Callable[..., Result]:
    """`one-cognit <command> ...` in-process: exit code, stdout, stderr."""

    def run(command: str, *args: str) -> Result:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(command, list(args))
        captured = capsys.readouterr()
        return Result(exited.value.code, captured.out, captured.err)

    return run


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Sim]:
    sim = start_sim("--hosts", "1", "--vms-per-host", "1")
    yield sim
    sim.service.close()


@pytest.fixture
def sim(shared_sim: Sim) -> Iterator[Sim]:
    """The module's simulated oned, its hook pool emptied after each test."""
    yield shared_sim
    if shared_sim.service.proc.poll() is None:
        for hook in shared_sim.control("GET", "/v1/hooks")[1]["hooks"]:
            shared_sim.raw("one.hook.delete", hook["id"])


@pytest.fixture
def auth(tmp_path: Path) -> Path:
    path = tmp_path / "one_auth"
    path.write_text("oneadmin:opennebula\n")
    return path


@pytest.fixture
def oned(sim: Sim, auth: Path) -> list[str]:
    """The flags that point install at the simulated oned."""
    return ["--one-xmlrpc", sim.rpc_url, "--one-auth", str(auth)]
