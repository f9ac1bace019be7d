"""The simulator's XML-RPC API through pyone and a plain XML-RPC client: replies and errors."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path

import pyone
import pytest

from testkit import ROOT
from testkit.sim import start_sim

FLEET = ROOT / "tests" / "fixtures" / "sim" / "fleet.yaml"


@pytest.fixture(scope="module")
def fleet_sim():
    """The stored YAML fleet (tests here only read it, or change what they then restore)."""
    sim = start_sim("--fleet", str(FLEET), "--one-version", "6.10.0")
    yield sim
    sim.service.close()


def test_system_version(fleet_sim):
    assert fleet_sim.one().system.version() == "6.10.0"
    assert fleet_sim.raw("one.system.version") == [True, "6.10.0", 0]


def test_infoextended_carries_full_templates_and_the_last_history(fleet_sim):
    pool = fleet_sim.one().vmpool.infoextended(-2, -1, -1, -1)
    by_id = {vm.ID: vm for vm in pool.VM}
    # -1: every state but DONE; VM 10 was terminated
    assert sorted(by_id) == [7, 8, 9, 11]
    web = by_id[7]
    assert (web.STATE, web.LCM_STATE, web.DEPLOY_ID, web.NAME) == (3, 3, "one-7", "web-7")
    context = web.TEMPLATE["CONTEXT"]
    assert context["ETH0_IP"] == "10.1.0.7" and context["ETH0_IP6"] == "2001:db8::7"
    assert (web.TEMPLATE["MEMORY"], web.TEMPLATE["CPU"], web.TEMPLATE["VCPU"]) == (
        "2048",
        "1.5",
        "2",
    )
    assert [d["SIZE"] for d in web.TEMPLATE["DISK"]] == ["2252", "10240"]
    assert web.TEMPLATE["NIC"]["IP"] == "10.1.0.7"
    assert web.TEMPLATE["PCI"]["TYPE"] == "NIC" and web.TEMPLATE["PCI"]["IP"] == "192.168.50.7"
    user = web.USER_TEMPLATE
    assert (user["FLAVOURS"], user["PROMETHEUS_EXPORTER"]) == ("4", "9100")
    assert (user["SERVICE_ID"], user["ROLE_NAME"]) == ("12", "frontend")
    history = web.HISTORY_RECORDS.HISTORY
    assert len(history) == 1
    assert (history[0].HID, history[0].HOSTNAME, history[0].SEQ) == (0, "edge-a", 0)
    assert by_id[11].TEMPLATE["CONTEXT"]["ETH0_IP6"] == "fd00:1::11"
    assert "ETH0_IP" not in by_id[11].TEMPLATE["CONTEXT"]
    pending = by_id[9]
    assert (pending.STATE, pending.DEPLOY_ID) == (1, "")
    assert pending.HISTORY_RECORDS.HISTORY == []


def test_info_is_the_short_body_without_context_or_custom_attributes(fleet_sim):
    pool = fleet_sim.one().vmpool.info(-2, -1, -1, -1)
    web = next(vm for vm in pool.VM if vm.ID == 7)
    assert sorted(web.TEMPLATE) == ["CPU", "DISK", "GRAPHICS", "MEMORY", "NIC", "VCPU"]
    assert "CONTEXT" not in web.TEMPLATE
    assert dict(web.USER_TEMPLATE) == {"LABELS": "prod"}  # FLAVOURS etc. only in infoextended
    assert web.HISTORY_RECORDS.HISTORY[0].HOSTNAME == "edge-a"
    assert [d["SIZE"] for d in web.TEMPLATE["DISK"]] == ["2252", "10240"]


def test_pool_filters_state_range_and_pages(fleet_sim):
    one = fleet_sim.one()
    ids = lambda pool: [vm.ID for vm in pool.VM]  # noqa: E731
    assert ids(one.vmpool.info(-2, -1, -1, -2)) == [7, 8, 9, 10, 11]  # -2 includes DONE
    assert ids(one.vmpool.info(-2, -1, -1, 8)) == [8]  # POWEROFF only
    assert ids(one.vmpool.info(-2, 8, 10, -2)) == [8, 9, 10]
    assert ids(one.vmpool.info(-2, 1, -2, -2)) == [8, 9]  # offset 1, page size 2
    assert ids(one.vmpool.infoextended(-3, -1, -1, -1)) == [7, 8, 9]  # oneadmin's own VMs
    assert ids(one.vmpool.infoextended(-2, -1, -1, -1, "")) == [7, 8, 9, 11]
    reply = fleet_sim.raw("one.vmpool.info", -2, -1, -1, 42)
    assert reply[:3] == [False, "[one.vmpool.info] Incorrect filter_flag, state", 0x1000]


def test_vm_info_has_every_history_record(fleet_sim):
    vm = fleet_sim.one().vm.info(8)
    assert (vm.STATE, vm.LCM_STATE) == (8, 0)  # POWEROFF: deployed, then powered off
    assert vm.TEMPLATE["CONTEXT"]["ETH0_IP"] == "10.1.0.8"
    assert vm.USER_TEMPLATE["FLAVOURS"] == "gpu.large"
    assert [h.HOSTNAME for h in vm.HISTORY_RECORDS.HISTORY] == ["edge-b"]
    # powered off in place: the running period ended, the record stays open (ETIME 0) until
    # the VM boots again or leaves the host, as oned's trigger_poweroff_success leaves it
    record = vm.HISTORY_RECORDS.HISTORY[0]
    assert record.RETIME > 0 and record.ETIME == 0
    done = fleet_sim.one().vm.info(10)
    assert done.STATE == 6 and done.ETIME > 0


def test_hosts_share_vms_and_template(fleet_sim):
    pool = fleet_sim.one().hostpool.info()
    hosts = {h.NAME: h for h in pool.HOST}
    assert list(hosts) == ["edge-a", "edge-b", "edge-c"]
    a, b, c = hosts["edge-a"], hosts["edge-b"], hosts["edge-c"]
    assert (a.STATE, c.STATE) == (2, 4)
    assert a.TEMPLATE["HOSTNAME"] == "127.0.3.1"
    assert b.TEMPLATE["HOSTNAME"] == "127.0.1.2"  # from --host-ip-base, index 1
    assert b.TEMPLATE["PUBLIC_IP"] == "8.8.8.8"
    assert a.VMS.ID == [7]
    assert b.VMS.ID == [8, 11]  # the powered-off VM keeps its place
    share = a.HOST_SHARE
    assert (share.MAX_CPU, share.TOTAL_CPU, share.MAX_MEM) == (800, 800, 16384 * 1024)
    assert (share.MEM_USAGE, share.CPU_USAGE, share.RUNNING_VMS) == (2048 * 1024, 150, 1)
    one = fleet_sim.one().host.info(1)
    assert one.NAME == "edge-b" and one.HOST_SHARE.RUNNING_VMS == 2


def test_users(fleet_sim):
    one = fleet_sim.one()
    pool = one.userpool.info()
    assert [u.NAME for u in pool.USER] == ["oneadmin", "serveradmin", "alice"]
    me = one.user.info(-1)
    assert (me.ID, me.NAME, me.GID, me.AUTH_DRIVER) == (0, "oneadmin", 0, "core")
    alice = pyone.OneServer(fleet_sim.rpc_url, session="alice:wonderland")
    assert alice.user.info(-1).NAME == "alice"
    # a user sees only her VMs and cannot act as an administrator
    assert [vm.ID for vm in alice.vmpool.infoextended(-2, -1, -1, -1).VM] == [11]
    with pytest.raises(pyone.OneAuthorizationException):
        alice.vm.info(7)
    with pytest.raises(pyone.OneAuthorizationException):
        alice.host.update(0, "A=1", 1)
    with pytest.raises(pyone.OneAuthorizationException):
        alice.user.allocate("mallory", "x", "")


def test_user_allocate(fleet_sim):
    one = fleet_sim.one()
    new_id = one.user.allocate("kim", "s3cret", "", [1])
    user = one.user.info(new_id)
    assert (user.NAME, user.AUTH_DRIVER, user.GID) == ("kim", "core", 1)
    assert pyone.OneServer(fleet_sim.rpc_url, session="kim:s3cret").user.info(-1).ID == new_id
    biscuit = one.user.allocate("bisc", "ed25519/" + "0f" * 32, "biscuit")
    assert one.user.info(biscuit).PASSWORD == "ed25519/" + "0f" * 32
    with pytest.raises(pyone.OneException, match="NAME is already taken by USER"):
        one.user.allocate("kim", "again", "")
    reply = fleet_sim.raw("one.user.allocate", "kim", "again", "")
    assert reply[0] is False and reply[2] == 0x4000


def test_host_update_replace_and_merge(sim_factory):
    sim = sim_factory("--hosts", "1", "--vms-per-host", "0")
    one = sim.one()
    assert one.host.update(0, 'GEOLOCATION = "48.8566,2.3522"', 1) == 0
    merged = one.host.info(0).TEMPLATE
    assert merged["GEOLOCATION"] == "48.8566,2.3522"
    assert merged["HOSTNAME"] == "127.0.1.1"  # merge keeps the rest
    one.host.update(0, {"GEOLOCATION": "1.0000,2.0000"}, 1)  # pyone's dict form
    assert one.host.info(0).TEMPLATE["GEOLOCATION"] == "1.0000,2.0000"
    # mode 0 (the default) replaces everything; Host::post_update_template puts the drivers back
    one.host.update(0, 'ONLY = "this"')
    drivers = {"IM_MAD": "kvm", "VM_MAD": "kvm"}
    assert dict(one.host.info(0).TEMPLATE) == {"ONLY": "this", **drivers}
    one.host.update(0, "<TEMPLATE><A>1</A></TEMPLATE>", 1)
    assert dict(one.host.info(0).TEMPLATE) == {"A": "1", "ONLY": "this", **drivers}
    # `1A` parses but is no XML element name: oned's write-back fails, the call still succeeds
    assert sim.raw("one.host.update", 0, "1A = x\nB = y", 1)[:3] == [True, 0, 0]
    assert dict(one.host.info(0).TEMPLATE) == {"A": "1", "ONLY": "this", **drivers}
    assert len(one.hostpool.info().HOST) == 1
    bad = sim.raw("one.host.update", 0, 'BROKEN = "x', 1)
    assert bad[0] is False and bad[2] == 0x2000
    assert bad[1].startswith("[one.host.update] Cannot update template. Parse error:")
    assert sim.raw("one.host.update", 0, "A=1", 2)[:3] == [
        False,
        "[one.host.update] Wrong update type",
        0x1000,
    ]
    assert sim.raw("one.host.update", 9, "A=1", 1)[:4] == [
        False,
        "[one.host.update] Error getting host [9].",
        0x400,
        9,
    ]


def test_vm_actions_over_xmlrpc(sim_factory):
    sim = sim_factory("--hosts", "2", "--vms-per-host", "1", "--seed", "5")
    one = sim.one()
    assert one.vm.action("poweroff", 0) == 0
    assert one.vm.info(0).STATE == 8
    assert one.vm.info(0).HISTORY_RECORDS.HISTORY[-1].ETIME == 0
    one.vm.action("resume", 0)
    one.vm.migrate(0, 1, True)
    vm = one.vm.info(0)
    assert (vm.STATE, vm.LCM_STATE) == (3, 3)
    assert [h.HID for h in vm.HISTORY_RECORDS.HISTORY] == [0, 0, 1]
    assert [h.ETIME > 0 for h in vm.HISTORY_RECORDS.HISTORY] == [True, True, False]
    one.vm.action("poweroff", 0)
    with pytest.raises(pyone.OneActionException, match="not available for state POWEROFF"):
        one.vm.action("poweroff", 0)
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.action("terminate", 99)
    one.host.status(1, 2)
    assert one.host.info(1).STATE == 8
    status, body = sim.control("POST", "/v1/vms", {"name": "later"})
    assert body["vm"]["state"] == "PENDING"
    with pytest.raises(pyone.OneActionException, match="Host is offline"):
        one.vm.deploy(body["vm"]["id"], 1)
    assert one.vm.deploy(body["vm"]["id"], 0) == body["vm"]["id"]
    assert one.vm.info(body["vm"]["id"]).DEPLOY_ID == f"one-{body['vm']['id']}"
    one.host.status(1, 0)
    assert one.host.info(1).STATE == 2


def test_authentication_failures(fleet_sim):
    with pytest.raises(pyone.OneAuthenticationException):
        fleet_sim.one("oneadmin:wrong").vmpool.info(-2, -1, -1, -1)
    with pytest.raises(pyone.OneAuthenticationException):
        fleet_sim.one("nobody:x").system.version()
    reply = fleet_sim.raw("one.vm.info", 7, session="oneadmin")
    assert reply == [
        False,
        "[one.vm.info] User couldn't be authenticated, aborting call.",
        0x100,
        -1,
        -1,
    ]


def test_no_such_objects(fleet_sim):
    one = fleet_sim.one()
    for call in (
        lambda: one.vm.info(404),
        lambda: one.host.info(404),
        lambda: one.user.info(404),
        lambda: one.hook.info(404),
    ):
        with pytest.raises(pyone.OneNoExistsException):
            call()
    assert fleet_sim.raw("one.vm.info", 404) == [
        False,
        "[one.vm.info] Error getting virtual machine [404].",
        0x400,
        404,
        -1,
    ]


@pytest.mark.parametrize(
    ("method", "args", "message"),
    [
        ("one.vm.info", ("7",), "Parameter that is supposed to be integer is not"),
        ("one.vm.info", (True,), "Parameter that is supposed to be integer is not"),
        ("one.vm.info", (), "Not enough parameters"),
        ("one.vmpool.info", (-2, -1, -1), "Not enough parameters"),
        ("one.host.update", (0, 5, 1), "Parameter that is supposed to be a string is not"),
        ("one.vm.migrate", (0, 1, "yes"), "Parameter that is supposed to be boolean is not"),
    ],
)
def test_wrong_arguments_are_xmlrpc_faults(fleet_sim, method, args, message):
    with pytest.raises(xmlrpc.client.Fault) as fault:
        fleet_sim.raw(method, *args)
    assert fault.value.faultCode == -501
    assert fault.value.faultString == message
    with pytest.raises(pyone.OneException, match=message):
        getattr(getattr(fleet_sim.one(), method.split(".")[1]), method.split(".")[2])(*args)


def test_unknown_method_and_session_type(fleet_sim):
    with pytest.raises(xmlrpc.client.Fault) as fault:
        fleet_sim.raw("one.vm.fly", 1)
    assert (fault.value.faultCode, fault.value.faultString) == (
        -506,
        "Method 'one.vm.fly' not defined",
    )
    with pytest.raises(xmlrpc.client.Fault, match="supposed to be a string"):
        fleet_sim.raw("one.system.version", 5, session=None)
    with pytest.raises(xmlrpc.client.Fault, match="Not enough parameters"):
        fleet_sim.raw("one.system.version", session=None)


def test_malformed_requests_do_not_break_the_server(fleet_sim):
    import urllib.request

    req = urllib.request.Request(fleet_sim.rpc_url, data=b"<methodCall><oops", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    fault = pytest.raises(xmlrpc.client.Fault, xmlrpc.client.loads, body)
    assert fault.value.faultCode == -503
    assert fleet_sim.one().system.version() == "6.10.0"


def test_hook_pool_and_info_parse(sim_factory, tmp_path: Path):
    sim = sim_factory("--hosts", "1", "--vms-per-host", "0")
    one = sim.one()
    hook_id = one.hook.allocate(
        'NAME = "notify"\nTYPE = state\nCOMMAND = "/bin/true"\nARGUMENTS = "$TEMPLATE"\n'
        "RESOURCE = HOST\nSTATE = ERROR\n"
    )
    pool = one.hookpool.info(-2, -1, -1)
    assert [(h.ID, h.NAME, h.TYPE) for h in pool.HOOK] == [(hook_id, "notify", "state")]
    assert pool.HOOK[0].TEMPLATE["STATE"] == "ERROR"
    hook = one.hook.info(hook_id)
    assert hook.TEMPLATE["COMMAND"] == "/bin/true" and hook.TEMPLATE["REMOTE"] == "NO"
    with pytest.raises(pyone.OneException, match="Error transforming the Hook to XML"):
        one.hook.allocate("NAME=x\nTYPE=state\nCOMMAND=/bin/true\nRESOURCE=HOST\nSTATE=ERROR\n9=x")
    with pytest.raises(pyone.OneException, match="No COMMAND in template for Hook"):
        one.hook.allocate("NAME = x\nTYPE = state\nRESOURCE = HOST\nSTATE = ERROR\n")
    one.hook.delete(hook_id)
    assert one.hookpool.info(-2, -1, -1).HOOK == []


def test_every_reply_parses_with_pyone_bindings(shared_sim):
    """Every body-returning method of the SPEC, parsed by pyone's generated bindings."""
    one = shared_sim.one()
    assert len(one.vmpool.info(-2, -1, -1, -1).VM) == 9
    assert len(one.vmpool.infoextended(-2, -1, -1, -1).VM) == 9
    assert one.vm.info(0).ID == 0
    assert len(one.hostpool.info().HOST) == 3
    assert one.host.info(2).NAME == "kvm-03"
    assert one.user.info(0).NAME == "oneadmin"
    assert len(one.userpool.info().USER) == 2
    assert one.hookpool.info(-2, -1, -1).HOOK == []
