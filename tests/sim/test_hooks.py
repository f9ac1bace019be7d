"""State hooks run like OpenNebula's hook execution manager: $TEMPLATE, stdin, timeout, log."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path

import pyone
import pytest

from testkit import wait_for


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def executions(sim, hook_id: int) -> list[dict]:
    return sim.control("GET", f"/v1/hooks/executions?hook_id={hook_id}")[1]["executions"]


def test_vm_hook_gets_the_base64_vm_xml_as_argument(sim_factory, tmp_path):
    out = tmp_path / "args"
    cmd = script(tmp_path, "on-running.sh", f'printf "%s|%s\\n" "$1" "$2" >> {out}\n')
    sim = sim_factory("--hosts", "2", "--vms-per-host", "0")
    one = sim.one()
    hook_id = one.hook.allocate(
        f'NAME = "vm-running"\nTYPE = state\nCOMMAND = "{cmd}"\n'
        'ARGUMENTS = "$TEMPLATE extra"\nRESOURCE = VM\nON = RUNNING\n'
    )
    sim.control("POST", "/v1/vms", {"name": "web", "nics": ["10.5.0.1"], "host": "kvm-02"})
    wait_for(lambda: out.exists() and out.read_text(), what="the hook's output")
    encoded, extra = out.read_text().splitlines()[0].split("|")
    assert extra == "extra"
    vm = ET.fromstring(base64.b64decode(encoded))
    assert vm.tag == "VM"
    assert (vm.findtext("ID"), vm.findtext("STATE"), vm.findtext("LCM_STATE")) == ("0", "3", "3")
    assert vm.findtext("TEMPLATE/CONTEXT/ETH0_IP") == "10.5.0.1"  # the extended body
    assert vm.findtext("HISTORY_RECORDS/HISTORY/HOSTNAME") == "kvm-02"
    record = wait_for(lambda: executions(sim, hook_id), what="the execution record")[0]
    assert (record["code"], record["resource"], record["resource_id"]) == (0, "VM", 0)
    assert (record["state"], record["lcm_state"], record["remote_host"]) == (
        "ACTIVE",
        "RUNNING",
        "kvm-02",
    )
    assert record["arguments"] == f"{encoded} extra"
    # oned's own record of it, with STDOUT/STDERR base64 as onehem sends them
    log = one.hook.info(hook_id).HOOKLOG.HOOK_EXECUTION_RECORD
    assert [(r.HOOK_ID, r.EXECUTION_ID, r.EXECUTION_RESULT.CODE) for r in log] == [
        (hook_id, 0, "0")
    ]
    # a migration ends in RUNNING again: the hook fires a second time
    sim.control("POST", "/v1/vms/0/migrate", {"host": "kvm-01"})
    wait_for(lambda: len(executions(sim, hook_id)) == 2, what="the second execution")
    moved = ET.fromstring(base64.b64decode(out.read_text().splitlines()[1].split("|")[0]))
    # to_xml_extended(xml) as HookStateVM::format_message calls it: every history record,
    # so a migration hook knows where the VM came from
    assert [h.findtext("HOSTNAME") for h in moved.iter("HISTORY")] == ["kvm-02", "kvm-01"]
    assert [h.findtext("SEQ") for h in moved.iter("HISTORY")] == ["0", "1"]


def test_host_hook_with_arguments_on_stdin(sim_factory, tmp_path):
    out = tmp_path / "stdin"
    cmd = script(tmp_path, "host-error.sh", f'cat > {out}\necho "argc=$#"\n')
    sim = sim_factory("--hosts", "2", "--vms-per-host", "0")
    hook_id = sim.one().hook.allocate(
        f'NAME = "host-error"\nTYPE = state\nCOMMAND = "{cmd}"\nARGUMENTS = "$TEMPLATE"\n'
        "ARGUMENTS_STDIN = yes\nRESOURCE = HOST\nSTATE = ERROR\n"
    )
    # onehem's as_stdin? only accepts YES: with TRUE the template is on the command line
    argv_hook = sim.one().hook.allocate(
        'NAME = "host-error-argv"\nTYPE = state\nCOMMAND = "/bin/echo"\n'
        'ARGUMENTS = "$TEMPLATE"\nARGUMENTS_STDIN = true\nRESOURCE = HOST\nSTATE = ERROR\n'
    )
    sim.control("POST", "/v1/hosts/kvm-02/state", {"state": "ERROR"})
    record = wait_for(lambda: executions(sim, hook_id), what="the host hook")[0]
    assert record["code"] == 0 and record["stdout"] == "argc=0\n"  # nothing on the command line
    echoed = wait_for(lambda: executions(sim, argv_hook), what="the TRUE hook")[0]
    assert ET.fromstring(base64.b64decode(echoed["stdout"])).findtext("NAME") == "kvm-02"
    host = ET.fromstring(base64.b64decode(out.read_text()))
    assert (host.tag, host.findtext("NAME"), host.findtext("STATE")) == ("HOST", "kvm-02", "3")
    assert host.findtext("TEMPLATE/HOSTNAME") == "127.0.1.2"
    # only matching states fire: MONITORED again does not run the ERROR hook
    sim.control("POST", "/v1/hosts/kvm-02/state", {"state": "MONITORED"})
    sim.control("POST", "/v1/hosts/kvm-01/state", {"state": "DISABLED"})
    status, body = sim.control("GET", "/v1/hooks/executions")
    assert body["running"] == 0 and len(body["executions"]) == 2


def test_hook_timeout_kills_the_command_and_is_recorded(sim_factory, tmp_path):
    marker = tmp_path / "child.pid"
    cmd = script(tmp_path, "slow.sh", f"sleep 30 &\necho $! > {marker}\nwait\n")
    sim = sim_factory("--hosts", "1", "--vms-per-host", "1")
    hook_id = sim.one().hook.allocate(
        f'NAME = slow\nTYPE = state\nCOMMAND = "{cmd}"\nTIMEOUT = 1\nRESOURCE = VM\n'
        "ON = CUSTOM\nSTATE = POWEROFF\nLCM_STATE = LCM_INIT\n"
    )
    sim.control("POST", "/v1/vms/0/poweroff")
    record = wait_for(lambda: executions(sim, hook_id), timeout=20, what="the timed-out hook")[0]
    assert record["code"] == 255 and record["timed_out"] is True
    assert record["stderr"] == f"Timeout executing {cmd}"
    child = int(marker.read_text())
    # the whole process group went, the background sleep included
    wait_for(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), what="child gone")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_failing_and_missing_commands_are_only_recorded(sim_factory, tmp_path):
    cmd = script(tmp_path, "fail.sh", "echo oops >&2\nexit 3\n")
    sim = sim_factory("--hosts", "1", "--vms-per-host", "1", "--hook-dir", str(tmp_path))
    one = sim.one()
    failing = one.hook.allocate(
        "NAME = f\nTYPE = state\nCOMMAND = fail.sh\nRESOURCE = VM\nON = DONE\n"
    )  # relative: resolved under --hook-dir, as onehem does
    missing = one.hook.allocate(
        "NAME = m\nTYPE = state\nCOMMAND = /nonexistent/hook\nRESOURCE = VM\nON = DONE\n"
    )
    sim.control("POST", "/v1/vms/0/terminate")
    wait_for(lambda: executions(sim, failing) and executions(sim, missing), what="both hooks")
    bad = executions(sim, failing)[0]
    assert (bad["code"], bad["stderr"], bad["command"]) == (3, "oops\n", str(cmd))
    gone = executions(sim, missing)[0]
    assert gone["code"] == 255 and "No such file" in gone["stderr"]
    # no retry, and oned carries on
    assert len(executions(sim, failing)) == 1
    assert one.vm.info(0).STATE == 6
    # one.hooklog.info answers <HOOKLOG>, a root pyone's bindings do not know: read the XML
    ok, body, code = sim.raw("one.hooklog.info", 0, 0, failing, -1)
    log = ET.fromstring(body)
    assert [r.findtext("EXECUTION_RESULT/CODE") for r in log] == ["3"]
    assert base64.b64decode(log.findtext("*/EXECUTION_RESULT/STDERR")) == b"oops\n"
    assert ET.fromstring(sim.raw("one.hooklog.info", 0, 0, failing, 1)[1]) is not None
    assert len(ET.fromstring(sim.raw("one.hooklog.info", 0, 0, failing, 1)[1])) == 0


def test_hooks_need_an_administrator(sim_factory, tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("hosts: [{name: h}]\nusers: [{name: eve, password: pw}]\n")
    sim = sim_factory("--fleet", str(fleet))
    eve = sim.one("eve:pw")
    with pytest.raises(pyone.OneAuthorizationException, match="Not authorized"):
        eve.hook.allocate("NAME=x\nTYPE=state\nCOMMAND=/bin/true\nRESOURCE=HOST\nSTATE=ERROR")
    assert sim.one().hookpool.info(-2, -1, -1).HOOK == []
