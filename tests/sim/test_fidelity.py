"""What oned does, read in its source, and the simulator doing the same (issue 16).

Every docstring names the file and function of OpenNebula/one (tag release-7.0.2) the test
follows, so the next reader can check it there.
"""

from __future__ import annotations

import base64
import re
import urllib.request
import xml.etree.ElementTree as ET
import xmlrpc.client

import pyone
import pytest

from testkit import ROOT, wait_for
from testkit.sim import Sim, start_sim

FLEET = ROOT / "tests" / "fixtures" / "sim" / "fidelity.yaml"
ALICE = "alice:wonderland"


@pytest.fixture(scope="module")
def sim():
    """The fidelity fleet; each test works on its own VMs, so order does not matter."""
    started = start_sim("--fleet", str(FLEET))
    yield started
    started.service.close()


def xml(sim: Sim, method: str, *args: object, session: str = "oneadmin:opennebula") -> ET.Element:
    ok, body, *_ = sim.raw(method, *args, session=session)
    assert ok is True, body
    return ET.fromstring(body)


def pool_vm(pool: ET.Element, vm_id: int) -> ET.Element:
    return next(vm for vm in pool.findall("VM") if vm.findtext("ID") == str(vm_id))


def hook_runs(sim: Sim, hook_id: int) -> list[ET.Element]:
    return xml(sim, "one.hook.info", hook_id).findall("HOOKLOG/HOOK_EXECUTION_RECORD")


def hooked_vm(record: ET.Element) -> ET.Element:
    """The <VM> a state hook got as $TEMPLATE, from the ARGUMENTS of its execution record."""
    return ET.fromstring(base64.b64decode(record.findtext("ARGUMENTS")))


# 1 ------------------------------------------------------------------------------------------


def test_short_pool_prints_nic_pci_nics_and_aliases_by_nic_id(sim):
    """src/vm/VirtualMachine.cc VirtualMachine::from_xml builds `nics` from NIC, PCI with
    TYPE=NIC and NIC_ALIAS, keyed by NIC_ID (include/VirtualMachineNic.h
    VirtualMachineNics::init); to_xml_short prints each with VirtualMachineNic::to_xml_short."""
    short = pool_vm(xml(sim, "one.vmpool.info", -2, 1, 1, -2), 1)
    nics = short.findall("TEMPLATE/NIC")
    assert [(n.findtext("NIC_ID"), n.findtext("IP")) for n in nics] == [
        ("0", "10.0.0.1"),
        ("1", "10.0.1.1"),
        ("2", "192.168.5.1"),  # the PCI NIC
        ("3", "10.0.0.101"),  # the aliases, numbered after NICs and PCI NICs
        ("4", "10.0.1.102"),
        ("5", "10.0.0.103"),
    ]
    assert [c.tag for c in nics[3]] == [
        "IP", "MAC", "NETWORK", "NETWORK_ID", "NIC_ID", "SECURITY_GROUPS",
    ]  # fmt: skip
    assert short.find("TEMPLATE/PCI") is None and short.find("TEMPLATE/NIC_ALIAS") is None
    # the full TEMPLATE keeps them as VirtualMachineNics::get_network_leases set them up
    full = xml(sim, "one.vm.info", 1).find("TEMPLATE")
    aliases = full.findall("NIC_ALIAS")
    assert [
        (a.findtext("NAME"), a.findtext("PARENT"), a.findtext("ALIAS_ID")) for a in aliases
    ] == [
        ("NIC0_ALIAS0", "NIC0", "0"),
        ("NIC1_ALIAS0", "NIC1", "0"),
        ("NIC0_ALIAS1", "NIC0", "1"),
    ]
    assert [n.findtext("ALIAS_IDS") for n in full.findall("NIC")] == ["3,5", "4"]
    context = full.find("CONTEXT")
    assert context.findtext("ETH0_ALIAS1_IP") == "10.0.0.103"
    assert context.findtext("ETH1_ALIAS0_IP") == "10.0.1.102"


# 2 ------------------------------------------------------------------------------------------


def test_pools_serve_stored_bodies_info_loads_the_monitoring(sim):
    """include/VirtualMachinePool.h / HostPool.h dump the stored body (PoolSQL::dump);
    include/RequestManagerInfo.h VirtualMachineInfo/HostInfo::load_extended_data load the
    last monitoring record. A VM read from the DB has no monitoring, so every write but
    those after set_vm_info() stores <MONITORING/> and LAST_POLL 0 (VirtualMachine::to_xml
    prints monitoring.timestamp())."""
    info = xml(sim, "one.vm.info", 2)
    assert info.findtext("MONITORING/CPU") == "25.00"
    assert int(info.findtext("LAST_POLL")) == int(info.findtext("MONITORING/TIMESTAMP")) > 0
    extended = pool_vm(xml(sim, "one.vmpool.infoextended", -2, 2, 2, -2), 2)
    short = pool_vm(xml(sim, "one.vmpool.info", -2, 2, 2, -2), 2)
    for body in (extended, short):
        assert (body.findtext("STATE"), body.findtext("LCM_STATE")) == ("3", "3")
        assert body.findtext("LAST_POLL") == "0"
        assert len(body.find("MONITORING")) == 0
    # a VM never monitored: LAST_POLL 0 everywhere (VirtualMachinePool::get_monitoring)
    queued = xml(sim, "one.vm.info", 3)
    assert queued.findtext("LAST_POLL") == "0" and len(queued.find("MONITORING")) == 0
    # a powered-off VM keeps its last record in one.vm.info
    resting = xml(sim, "one.vm.info", 4)
    assert resting.findtext("STATE") == "8" and resting.findtext("MONITORING/CPU")
    # hosts: Host::to_xml of a body written without load_monitoring()
    pool_host = xml(sim, "one.hostpool.info").find("HOST")
    assert len(pool_host.find("MONITORING")) == 0
    assert pool_host.find("HOST_SHARE/RUNNING_VMS") is not None
    assert xml(sim, "one.host.info", 0).findtext("MONITORING/CAPACITY/USED_CPU")


def test_hooks_see_the_body_being_written(sim):
    """src/vm/VirtualMachinePool.cc VirtualMachinePool::update formats the hook message from
    the VM it writes: src/lcm/LifeCycleActions.cc trigger_live_migrate calls set_vm_info()
    before writing MIGRATE (old figures), trigger_deploy_success writes RUNNING from a VM
    read back from the DB (none)."""
    one = sim.one()
    hooks = {
        lcm: one.hook.allocate(
            f"NAME = see-{lcm}\nTYPE = state\nCOMMAND = /bin/true\nARGUMENTS = $TEMPLATE\n"
            f"RESOURCE = VM\nON = CUSTOM\nSTATE = ACTIVE\nLCM_STATE = {lcm}\n"
        )
        for lcm in ("MIGRATE", "RUNNING")
    }
    try:
        one.vm.migrate(2, 1, True)
        migrating = hooked_vm(wait_for(lambda: hook_runs(sim, hooks["MIGRATE"]), what="MIGRATE")[0])
        running = next(
            vm
            for vm in map(hooked_vm, wait_for(lambda: hook_runs(sim, hooks["RUNNING"])))
            if vm.findtext("ID") == "2"
        )
    finally:
        one.vm.migrate(2, 0, True)
        for hook_id in hooks.values():
            one.hook.delete(hook_id)
    assert migrating.findtext("MONITORING/CPU") == "25.00"
    assert int(migrating.findtext("LAST_POLL")) > 0
    assert running.findtext("LAST_POLL") == "0" and len(running.find("MONITORING")) == 0


# 3 ------------------------------------------------------------------------------------------


def test_failure_replies_end_with_the_replication_index_as_i8(sim):
    """src/rm/Request.cc Request::failure_response pushes value_i8(att.replication_idx), an
    uint64_t left at UINT64_MAX (include/Request.h RequestAttributes): <i8>-1</i8>."""
    call = xmlrpc.client.dumps(("oneadmin:opennebula", 404), "one.vm.info").encode()
    request = urllib.request.Request(sim.rpc_url, data=call, method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        body = reply.read()
    assert b"<value><int>404</int></value>\n<value><i8>-1</i8></value>" in body
    assert xmlrpc.client.loads(body)[0][0] == [
        False,
        "[one.vm.info] Error getting virtual machine [404].",
        0x400,
        404,
        -1,
    ]
    with pytest.raises(pyone.OneNoExistsException, match=r"virtual machine \[404\]"):
        sim.one().vm.info(404)


# 4 ------------------------------------------------------------------------------------------


def test_messages_and_the_order_of_checks(sim):
    """src/rm/RequestManagerVirtualMachine.cc VirtualMachineMigrate/Deploy::request_execute
    ("... action is not available for state", get_host_information's OFFLINE message);
    src/rm/RequestManagerPoolInfoFilter.cc VirtualMachinePoolInfo::request_execute (state
    before filter_flag); src/rm/Request.cc Request::basic_authorization (NO_EXISTS first)."""
    one = sim.one()
    with pytest.raises(pyone.OneActionException) as refused:
        one.vm.migrate(3, 1, False)
    assert (
        str(refused.value) == "[one.vm.migrate] Migrate action is not available for state PENDING"
    )
    with pytest.raises(
        pyone.OneActionException, match="Deploy action is not available for state RUNNING"
    ):
        one.vm.deploy(2, 1)
    assert sim.raw("one.vm.deploy", 3, 2)[:3] == [
        False,
        "[one.vm.deploy] Host is offline, cannot use it to deploy VM",
        0x800,
    ]
    assert sim.raw("one.vmpool.info", -9, -1, -1, 99)[1] == (
        "[one.vmpool.info] Incorrect filter_flag, state"
    )
    assert (
        sim.raw("one.vmpool.info", -9, -1, -1, -1)[1] == "[one.vmpool.info] Incorrect filter_flag"
    )
    assert sim.raw("one.host.update", 99, "A=1", 1, session=ALICE)[:4] == [
        False,
        "[one.host.update] Error getting host [99].",
        0x400,
        99,
    ]
    assert sim.raw("one.host.update", 0, "A=1", 1, session=ALICE)[2] == 0x200
    # deploy and migrate name a missing host or VM before refusing a non-administrator
    assert sim.raw("one.vm.migrate", 5, 42, True, session=ALICE)[2:4] == [0x400, 42]
    assert sim.raw("one.vm.migrate", 5, 0, True, session=ALICE)[2] == 0x200


# 5 ------------------------------------------------------------------------------------------


def test_hookpool_filters_by_id_range_and_needs_its_arguments(sim_factory):
    """src/rm/RequestManagerPoolInfoFilter.cc RequestManagerPoolInfoFilter::request_execute
    (filter_flag, start_id, end_id) and dump; src/pool/PoolSQL.cc PoolSQL::oid_filter and
    usr_filter; hooks are owned by oneadmin (src/hm/Hook.cc Hook::insert_replace)."""
    sim = sim_factory("--fleet", str(FLEET))
    one = sim.one()
    ids = [
        one.hook.allocate(f"NAME=h{i}\nTYPE=state\nCOMMAND=/bin/true\nRESOURCE=HOST\nSTATE=ERROR")
        for i in range(4)
    ]
    listed = lambda *args, session="oneadmin:opennebula": [  # noqa: E731
        int(h.findtext("ID")) for h in xml(sim, "one.hookpool.info", *args, session=session)
    ]
    assert listed(-2, -1, -1) == ids
    assert listed(-2, ids[1], ids[2]) == ids[1:3]
    assert listed(-2, ids[2], -1) == ids[2:]
    assert listed(-2, 1, -2) == ids[1:3]  # a page: offset 1, two hooks
    assert listed(-3, -1, -1) == ids  # oneadmin's own
    assert listed(0, -1, -1) == ids and listed(7, -1, -1) == []
    assert listed(-2, -1, -1, session=ALICE) == []  # not an error: nothing she may see
    for args in [(), (-2,), (-2, -1)]:
        with pytest.raises(xmlrpc.client.Fault, match="Not enough parameters"):
            sim.raw("one.hookpool.info", *args)
    assert (
        sim.raw("one.hookpool.info", -5, -1, -1)[1] == "[one.hookpool.info] Incorrect filter_flag"
    )


# 6 ------------------------------------------------------------------------------------------


def test_userpool_interleaves_each_user_with_its_quotas(sim):
    """src/um/UserPool.cc UserPool::dump: user_pool LEFT JOIN user_quotas, both bodies of a
    row appended together (string_cb(2)), then DEFAULT_USER_QUOTAS."""
    pool = xml(sim, "one.userpool.info")
    users = pool.findall("USER")
    assert len(users) >= 3
    assert [child.tag for child in pool] == ["USER", "QUOTAS"] * len(users) + [
        "DEFAULT_USER_QUOTAS"
    ]
    pairs = [(pool[i].findtext("ID"), pool[i + 1].findtext("ID")) for i in range(0, 6, 2)]
    assert pairs == [("0", "0"), ("1", "1"), ("2", "2")]
    names = [u.NAME for u in sim.one().userpool.info().USER]
    assert names[:3] == ["oneadmin", "serveradmin", "alice"]


# 7 ------------------------------------------------------------------------------------------


def test_history_records_name_who_acted_and_carry_plan_id_minus_2(sim):
    """src/vm/History.cc History::History (UID/GID/REQUEST_ID -1), VirtualMachine::add_history
    and cp_history (plan_id -2), include/VirtualMachine.h set_action / clear_action (the
    requester on the record, cleared by LifeCycleManager::trigger_deploy_success)."""
    alice = sim.one(ALICE)
    record = xml(sim, "one.vm.info", 5).find("HISTORY_RECORDS/HISTORY")
    assert [record.findtext(f) for f in ("ACTION", "UID", "GID", "PLAN_ID")] == [
        "0",
        "-1",
        "-1",
        "-2",
    ]
    alice.vm.action("poweroff", 5)
    records = xml(sim, "one.vm.info", 5).findall("HISTORY_RECORDS/HISTORY")
    assert [records[-1].findtext(f) for f in ("ACTION", "UID", "GID")] == ["19", "2", "1"]
    sim.one().vm.action("resume", 5)
    records = xml(sim, "one.vm.info", 5).findall("HISTORY_RECORDS/HISTORY")
    assert [[r.findtext(f) for f in ("SEQ", "ACTION", "UID", "GID")] for r in records] == [
        ["0", "19", "2", "1"],  # powered off by alice
        ["1", "0", "-1", "-1"],  # resumed by oneadmin, cleared once running
    ]
    one = sim.one()
    one.vm.deploy(8, 0)
    one.vm.migrate(8, 1, True)
    moved = xml(sim, "one.vm.info", 8).findall("HISTORY_RECORDS/HISTORY")
    assert [(r.findtext("PLAN_ID"), r.findtext("ACTION_ID")) for r in moved] == [("-2", "-1")] * 2
    assert [(r.findtext("ACTION"), r.findtext("UID")) for r in moved] == [("2", "0"), ("0", "-1")]


def test_hook_remote_is_written_no_when_not_given(sim):
    """src/hm/Hook.cc Hook::insert: erase_template_attribute("REMOTE", remote) reads a bool
    (false unless YES), add_template_attribute writes it with Template::add(name, bool)
    (include/Template.h): "NO", as the docs' `onehook show` prints REMOTE="NO". (The issue
    expected it empty; the source says otherwise.)"""
    one = sim.one()
    hook_id = one.hook.allocate(
        "NAME=quiet\nTYPE=state\nCOMMAND=/bin/true\nRESOURCE=HOST\nSTATE=ERROR"
    )
    also = one.hook.allocate(
        "NAME=truthy\nTYPE=state\nCOMMAND=/bin/true\nRESOURCE=HOST\nSTATE=ERROR\nREMOTE=TRUE"
    )
    try:
        assert xml(sim, "one.hook.info", hook_id).findtext("TEMPLATE/REMOTE") == "NO"
        assert (
            xml(sim, "one.hook.info", also).findtext("TEMPLATE/REMOTE") == "NO"
        )  # only YES is true
    finally:
        one.hook.delete(hook_id)
        one.hook.delete(also)


def test_users_carry_a_token_password(sim):
    """src/um/UserPool.cc UserPool::allocate adds TOKEN_PASSWORD =
    one_util::random_password() (src/common/NebulaUtil.cc: sha256 of a random int) to
    every user, oneadmin and serveradmin included."""
    one = sim.one()
    new_id = one.user.allocate("tokened", "pw", "")
    tokens = [
        xml(sim, "one.user.info", uid).findtext("TEMPLATE/TOKEN_PASSWORD")
        for uid in (0, 1, 2, new_id)
    ]
    assert all(re.fullmatch(r"[0-9a-f]{64}", t) for t in tokens)
    assert len(set(tokens)) == 4
    pooled = [
        u.findtext("TEMPLATE/TOKEN_PASSWORD") for u in xml(sim, "one.userpool.info").findall("USER")
    ]
    assert pooled == tokens


def test_hooklog_output_is_base64_wrapped_as_ruby_writes_it(sim):
    """src/mad/ruby/CommandManager.rb GenericCommand#to_xml writes STDOUT/STDERR with
    Base64.encode64 (a newline every 60 characters and at the end), which
    src/hem/onehem-server.rb build_response_body sends and src/hm/HookLog.cc HookLog::add
    stores."""
    one = sim.one()
    words = "x" * 100
    hook_id = one.hook.allocate(
        f"NAME=talker\nTYPE=state\nCOMMAND=/bin/echo\nARGUMENTS={words}\n"
        "RESOURCE=VM\nON=CUSTOM\nSTATE=POWEROFF\nLCM_STATE=LCM_INIT\n"
    )
    try:
        one.vm.action("poweroff", 6)
        record = wait_for(lambda: hook_runs(sim, hook_id), what="the hook's run")[0]
    finally:
        one.hook.delete(hook_id)
    stdout = record.findtext("EXECUTION_RESULT/STDOUT")
    lines = stdout.split("\n")
    assert [len(line) for line in lines] == [60, 60, 16, 0]  # 101 bytes: 45 + 45 + 11
    assert base64.b64decode(stdout) == (words + "\n").encode()
    assert record.findtext("EXECUTION_RESULT/STDERR") == ""  # encode64("") is ""


# 8 ------------------------------------------------------------------------------------------


def test_unknown_template_attributes_stay_in_user_template(sim):
    """src/vm/VirtualMachine.cc VirtualMachine::insert: the template starts as the user
    template; only attributes oned knows (parse_well_known_attributes, parse_video, ...)
    move to TEMPLATE."""
    vm = xml(sim, "one.vm.info", 1)
    assert vm.findtext("USER_TEMPLATE/ROLE_TIER") == "gold"
    assert vm.find("TEMPLATE/ROLE_TIER") is None
    assert vm.findtext("TEMPLATE/VIDEO/VRAM") == "16"
    assert vm.find("USER_TEMPLATE/VIDEO") is None


# hook.update / hook.delete -----------------------------------------------------------------


def test_hook_update_replaces_or_merges_as_oned(sim):
    """src/rm/RequestManagerUpdateTemplate.cc request_execute (existence, authorization,
    update type), src/pool/PoolObjectSQL.cc replace_template / append_template, and
    src/hm/Hook.cc Hook::post_update_template + src/hm/HookStateVM.cc post_update_template:
    COMMAND, STATE and LCM_STATE must be in the result, ON is not read again, and a refused
    update leaves the old template."""
    one = sim.one()
    hook_id = one.hook.allocate(
        "NAME=installer\nTYPE=state\nCOMMAND=/bin/true\nARGUMENTS=$TEMPLATE\n"
        "RESOURCE=VM\nON=RUNNING\n"
    )
    found = next(
        int(h.findtext("ID"))
        for h in xml(sim, "one.hookpool.info", -2, -1, -1)
        if h.findtext("NAME") == "installer"
    )
    assert found == hook_id
    before = dict(one.hook.info(hook_id).TEMPLATE)
    refusals = [
        (
            "ON = RUNNING\nCOMMAND = /bin/false",
            0,
            "The STATE attribute is not defined or it's invalid.",
        ),
        (
            "COMMAND = /bin/false\nSTATE = ACTIVE",
            0,
            "The LCM_STATE attribute is not defined or it's invalid.",
        ),
        ("STATE = ACTIVE\nLCM_STATE = RUNNING", 0, "The COMMAND attribute is not defined."),
        ("LCM_STATE = SOMETIME", 1, "The LCM_STATE attribute is not defined or it's invalid."),
        ('COMMAND = "broken', 1, "Parse error"),
    ]
    for text, mode, message in refusals:
        reply = sim.raw("one.hook.update", hook_id, text, mode)
        assert reply[0] is False and reply[2] == 0x2000, reply
        assert (
            reply[1].startswith("[one.hook.update] Cannot update template.") and message in reply[1]
        )
    assert dict(one.hook.info(hook_id).TEMPLATE) == before
    # a name the parser takes but XML cannot hold: the write-back fails, the call succeeds
    assert sim.raw("one.hook.update", hook_id, "1A = x", 1)[:3] == [True, hook_id, 0]
    assert dict(one.hook.info(hook_id).TEMPLATE) == before
    # merge (1): named attributes replace, the rest stays
    assert one.hook.update(hook_id, 'ARGUMENTS = "$TEMPLATE merged"\nTIMEOUT = 5', 1) == hook_id
    merged = dict(one.hook.info(hook_id).TEMPLATE)
    assert merged == {**before, "ARGUMENTS": "$TEMPLATE merged", "TIMEOUT": "5"}
    # replace (0, the default): the new template is all there is; states are upper-cased
    one.hook.update(
        hook_id, "COMMAND = /bin/echo\nRESOURCE = VM\nSTATE = poweroff\nLCM_STATE = lcm_init"
    )
    assert dict(one.hook.info(hook_id).TEMPLATE) == {
        "COMMAND": "/bin/echo",
        "LCM_STATE": "LCM_INIT",
        "RESOURCE": "VM",
        "STATE": "POWEROFF",
    }
    assert sim.raw("one.hook.update", hook_id, "A=1", 2)[1:3] == [
        "[one.hook.update] Wrong update type",
        0x1000,
    ]
    assert sim.raw("one.hook.update", 404, "A=1", 1, session=ALICE)[1:4] == [
        "[one.hook.update] Error getting hook [404].",
        0x400,
        404,
    ]
    assert sim.raw("one.hook.update", hook_id, "A=1", 1, session=ALICE)[2] == 0x200
    one.hook.delete(hook_id)


def test_updated_hook_fires_on_its_new_state_and_delete_drops_it_and_its_log(sim):
    """onehem reloads a hook on one.hook.update and forgets it on one.hook.delete
    (src/hem/onehem-server.rb reload_hooks); src/rm/RequestManagerDelete.cc delete_object
    finds the hook before authorizing; src/hm/Hook.cc Hook::drop drops its HookLog rows;
    src/hm/HookPool.cc HookPool::allocate refuses a taken NAME."""
    one = sim.one()
    text = "NAME=mover\nTYPE=state\nCOMMAND=/bin/true\nRESOURCE=VM\nON=CUSTOM\n"
    hook_id = one.hook.allocate(text + "STATE=SUSPENDED\nLCM_STATE=LCM_INIT\n")
    assert sim.raw("one.hook.allocate", text + "STATE=DONE\nLCM_STATE=LCM_INIT\n")[1:3] == [
        f"[one.hook.allocate] NAME is already taken by Hook {hook_id}.",
        0x2000,
    ]
    one.hook.update(hook_id, "STATE = UNDEPLOYED", 1)
    one.vm.action("suspend", 7)
    one.vm.action("resume", 7)
    one.vm.action("undeploy", 7)
    run = wait_for(lambda: hook_runs(sim, hook_id), what="the updated hook's run")
    assert len(run) == 1  # UNDEPLOYED only: SUSPENDED no longer matches
    assert len(xml(sim, "one.hooklog.info", 0, 0, hook_id, 0)) == 1
    assert sim.raw("one.hook.delete", 404, session=ALICE)[2:4] == [0x400, 404]
    assert sim.raw("one.hook.delete", hook_id, session=ALICE)[2] == 0x200
    assert one.hook.delete(hook_id) == hook_id
    assert sim.raw("one.hook.info", hook_id)[2:4] == [0x400, hook_id]
    assert len(xml(sim, "one.hooklog.info", 0, 0, hook_id, 0)) == 0
    assert one.hook.allocate(text + "STATE=DONE\nLCM_STATE=LCM_INIT\n") > hook_id
