"""The migrate shim run as OpenNebula runs it, on the source host of a namespace lab."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import ROOT, wait_for
from testkit.netns import Lab

from .standins import MIGRATE_DEFAULT, VIRSH, action_xml

SHIM = ROOT / "services" / "tunnel_agent" / "shim" / "migrate"
# oned's ssh stream runs drivers with a plain system PATH.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


class Host:
    """The source host: agents on both ends, remotes/vmm/kvm with the shim installed."""

    def __init__(self, lab: Lab, *flags: str) -> None:
        (self.a, self.ip_a), (self.b, self.ip_b) = lab.hosts(2)
        lab.hosts_file(self.a, {"kvm-b": self.ip_b, "kvm-a": self.ip_a})
        self.A, self.B = lab.agents((self.a, self.b), *flags)
        self.dir = lab.tmp / "remotes" / "vmm" / "kvm"
        self.dir.mkdir(parents=True)
        shutil.copy(SHIM, self.dir / "migrate")  # installed as the installer does
        executable(self.dir / "migrate_default", MIGRATE_DEFAULT)
        self.bin = lab.tmp / "bin"
        self.bin.mkdir()
        executable(self.bin / "virsh", VIRSH)
        self.kvmrc = lab.tmp / "kvmrc"
        self.record = lab.tmp / "record.json"
        self.virsh_record = lab.tmp / "virsh.jsonl"
        self.lab = lab

    def run(
        self,
        mode: str = "exit:0",
        *,
        vm_id: int = 42,
        shared: bool = False,
        stderr: str = "",
        kvmrc: str = "LANG=C\n#MIGRATE_OPTIONS=--unsafe\n",
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess:
        for path in (self.record, self.virsh_record):
            path.unlink(missing_ok=True)
        self.kvmrc.write_text(kvmrc)
        python_dir = os.path.dirname(shutil.which("python3") or "/usr/bin/python3")
        full_env = {
            "PATH": f"{self.bin}:{SYSTEM_PATH}:{python_dir}",
            "ONE_COGNIT_TUNNEL_URL": "http://127.0.0.1:9933",
            "ONE_COGNIT_TOKEN_FILE": str(self.lab.token_file()),
            "ONE_COGNIT_KVMRC": str(self.kvmrc),
            "STANDIN_KVMRC": str(self.kvmrc),
            "STANDIN_RECORD": str(self.record),
            "STANDIN_VIRSH_RECORD": str(self.virsh_record),
            "STANDIN_MODE": mode,
            "STANDIN_STDERR": stderr,
            **(env or {}),
        }
        argv = args if args is not None else [f"one-{vm_id}", "kvm-b", "kvm-a", str(vm_id), "kvm-a"]
        return subprocess.run(
            self.a.exec_argv([str(self.dir / "migrate"), *argv]),
            input=action_xml(vm_id, shared),
            capture_output=True,
            env=full_env,
            timeout=timeout,
            cwd="/",
        )

    def recorded(self) -> dict:
        return json.loads(self.record.read_text())

    def virsh_calls(self) -> list[list[str]]:
        if not self.virsh_record.exists():
            return []
        return [json.loads(line) for line in self.virsh_record.read_text().splitlines()]

    def no_tunnel_left(self) -> None:
        for ns, agent in ((self.a, self.A), (self.b, self.B)):
            assert not {n for n in ns.link_names() if n.startswith("oc")}
            assert agent.tunnels() == []


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    with Lab() as lab:
        yield Host(lab)


def overlay(host: Host, record: dict) -> str:
    """The destination overlay address the options point at."""
    words = record["env_in"]["MIGRATE_OPTIONS"].split()
    return words[words.index("--listen-address") + 1]


def test_shim_is_a_standalone_executable():
    assert SHIM.stat().st_mode & stat.S_IXUSR
    source = SHIM.read_text()
    assert source.startswith("#!/usr/bin/env python3\n")
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from ")) and "__future__" not in line
    }
    assert imports and not imports & {"services", "aiohttp", "pyroute2", "testkit"}
    for variable in (
        "ONE_COGNIT_TUNNEL_URL",
        "ONE_COGNIT_TOKEN_FILE",
        "ONE_COGNIT_TUNNEL_FALLBACK",
    ):
        assert variable in source.split('"""')[1]  # documented in the header


def test_success_runs_the_original_arguments_with_the_data_streams_on_the_overlay(host):
    result = host.run(stderr="rsync time 0.1s\n")
    assert result.returncode == 0
    assert result.stderr == b"rsync time 0.1s\n"  # migrate_default's stderr, unchanged
    rec = host.recorded()
    assert rec["argv"] == ["one-42", "kvm-b", "kvm-a", "42", "kvm-a"]  # host names kept
    assert rec["stdin"] == action_xml(42, False).decode()
    ip = overlay(host, rec)
    assert ip.startswith("192.168.69.")
    assert rec["env_in"]["MIGRATE_OPTIONS"].split() == [
        "--migrateuri",
        f"tcp://{ip}",
        "--listen-address",
        ip,
        "--disks-uri",
        f"tcp://{ip}",
    ]
    assert len(rec["links"]) == 2  # the tunnel existed while it ran
    # What virsh was finally given: the control URI by host name, data to the overlay.
    (call,) = host.virsh_calls()
    assert call[:4] == ["--connect", "qemu:///system", "migrate", "--live"]
    assert call[-2:] == ["one-42", "qemu+ssh://kvm-b/system"]
    assert call[call.index("--migrateuri") + 1] == f"tcp://{ip}"
    # The destination's agent built the other end with that very address.
    host.no_tunnel_left()


def test_shared_storage_sends_no_disks_uri(host):
    assert host.run(shared=True).returncode == 0
    assert "--disks-uri" not in host.recorded()["env_in"]["MIGRATE_OPTIONS"]
    host.no_tunnel_left()


def test_failure_exit_code_and_stderr_come_back_unchanged(host):
    result = host.run("exit:1", stderr="Error migrating VM one-42: boom\n")
    assert (result.returncode, result.stderr) == (1, b"Error migrating VM one-42: boom\n")
    host.no_tunnel_left()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_a_crashing_driver_kills_the_shim_the_same_way(host, sig):
    result = host.run(f"signal:{int(sig)}")
    assert result.returncode == -sig
    host.no_tunnel_left()


def test_a_hanging_driver_times_out_is_killed_and_the_tunnel_closed(host):
    result = host.run("hang", env={"ONE_COGNIT_MIGRATE_TIMEOUT": "1"})
    assert result.returncode == 124
    assert b"timed out after 1 s and was killed" in result.stderr
    pid = host.recorded()["pid"]
    assert not Path(f"/proc/{pid}").exists()
    host.no_tunnel_left()


def test_the_shim_killed_by_sigterm_stops_the_driver_and_closes_the_tunnel(host):
    host.record.unlink(missing_ok=True)
    env = dict(os.environ)
    python_dir = os.path.dirname(shutil.which("python3") or "/usr/bin/python3")
    env.update(
        PATH=f"{host.bin}:{SYSTEM_PATH}:{python_dir}",
        ONE_COGNIT_TOKEN_FILE=str(host.lab.token_file()),
        ONE_COGNIT_KVMRC=str(host.kvmrc),
        STANDIN_KVMRC=str(host.kvmrc),
        STANDIN_RECORD=str(host.record),
        STANDIN_VIRSH_RECORD=str(host.virsh_record),
        STANDIN_MODE="hang",
    )
    shim = subprocess.Popen(
        host.a.exec_argv([str(host.dir / "migrate"), "one-9", "kvm-b", "kvm-a", "9", "kvm-a"]),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert shim.stdin is not None
    shim.stdin.write(action_xml(9, True))
    shim.stdin.close()
    wait_for(lambda: host.record.exists(), 20, "migrate_default to start")
    shim.send_signal(signal.SIGTERM)
    assert shim.wait(20) == -signal.SIGTERM
    assert shim.stderr is not None
    shim.stderr.close()
    assert not Path(f"/proc/{host.recorded()['pid']}").exists()
    host.no_tunnel_left()


def test_kvmrc_migrate_options_win_over_the_environment_and_ours_are_added(host):
    kvmrc = 'export LANG=C\nMIGRATE_OPTIONS="--unsafe --migrateuri tcp://10.0.0.9 --compressed"\n'
    result = host.run(kvmrc=kvmrc, env={"MIGRATE_OPTIONS": "--persistent"})
    assert result.returncode == 0, result.stderr
    rec = host.recorded()
    # As upstream: the driver's MIGRATE_OPTIONS is kvmrc's, whatever the environment said...
    assert rec["migrate_options"] == "--unsafe --migrateuri tcp://10.0.0.9 --compressed"
    # ...so the overlay options reach virsh through the shim's virsh on PATH.
    (call,) = host.virsh_calls()
    ip = call[call.index("--listen-address") + 1]
    assert ip.startswith("192.168.69.")
    assert call.count("--migrateuri") == 1 and call[call.index("--migrateuri") + 1] == f"tcp://{ip}"
    assert "--unsafe" in call and "--compressed" in call and "--persistent" not in call
    host.no_tunnel_left()


def test_operator_environment_options_are_kept(host):
    result = host.run(env={"MIGRATE_OPTIONS": "--unsafe --listen-address 0.0.0.0"})
    assert result.returncode == 0
    words = host.recorded()["env_in"]["MIGRATE_OPTIONS"].split()
    assert words[0] == "--unsafe" and words.count("--listen-address") == 1
    assert words[words.index("--listen-address") + 1].startswith("192.168.69.")
    host.no_tunnel_left()


def test_agent_unreachable_falls_back_to_a_direct_migration_or_fails(host):
    down = {"ONE_COGNIT_TUNNEL_URL": "http://127.0.0.1:1"}
    result = host.run(env=down, stderr="ok\n")
    assert result.returncode == 0
    assert b"migrating directly (fallback direct)" in result.stderr
    assert result.stderr.endswith(b"ok\n")
    assert "--migrateuri" not in (host.recorded()["env_in"]["MIGRATE_OPTIONS"] or "")
    result = host.run(env={**down, "ONE_COGNIT_TUNNEL_FALLBACK": "fail"})
    assert result.returncode == 1 and b"failing (fallback fail)" in result.stderr
    assert not host.record.exists()  # migrate_default never ran
    result = host.run(
        env=down, args=["--fallback", "fail", "one-42", "kvm-b", "kvm-a", "42", "kvm-a"]
    )
    assert result.returncode == 1 and not host.record.exists()
    # A wrong token is refused by the agent: the same fallback, nothing created.
    bad = host.lab.tmp / "bad-token"
    bad.write_text("not-the-token\n")
    result = host.run(env={"ONE_COGNIT_TOKEN_FILE": str(bad)})
    assert result.returncode == 0 and b"HTTP 401" in result.stderr
    host.no_tunnel_left()


def test_a_long_migration_keeps_its_tunnel_past_the_lease(lab):
    # Leases are whole seconds: a 2 s lease lives 1 to 2 s; the migration takes 3.5 s.
    host = Host(lab, "--lease-ttl", "2", "--sweep-interval", "0.2")
    result = host.run("sleep:3.5")
    assert result.returncode == 0, result.stderr
    rec = host.recorded()
    assert len(rec["links"]) == 2 and rec["links_at_end"] == rec["links"]
    host.no_tunnel_left()
