"""The cloud's state machine and XML, in process: oned's transitions, history, host lists."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from sim import states as st
from sim.cloud import ActionRefused, AllocateError, Cloud, NoSuchObject
from sim.fleet import FleetError, generate_fleet, parse_fleet, vm_spec
from sim.render import vm_xml


@pytest.fixture
def cloud() -> Cloud:
    clock = iter(range(1_700_000_000, 1_800_000_000))
    c = Cloud("oneadmin:secret", clock=lambda: next(clock))
    c.load_fleet(
        parse_fleet(
            {
                "hosts": [{"name": "h1"}, {"name": "h2"}, {"name": "h3", "state": "OFFLINE"}],
                "vms": [{"id": 0, "name": "a", "host": "h1"}, {"id": 1, "name": "b"}],
            },
            "127.0.1.1",
        )
    )
    return c


def states_seen(cloud: Cloud) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    cloud.allocate_hook("NAME=x\nTYPE=state\nCOMMAND=/bin/true\nRESOURCE=VM\nON=RUNNING\n")
    for state, lcm in [(s, lcm) for s in st.VM_STATES for lcm in st.LCM_STATES]:
        cloud.allocate_hook(
            f"NAME={state}-{lcm}\nTYPE=state\nCOMMAND=/bin/true\nRESOURCE=VM\nON=CUSTOM\n"
            f"STATE={state}\nLCM_STATE={lcm}\n"
        )
    cloud.subscribe(lambda event, hooks: seen.append((event.state, event.lcm_state)))
    return seen


def test_deploy_walks_prolog_boot_running_and_opens_history(cloud):
    """DispatchManager::deploy writes the VM ACTIVE (LCM_INIT) before the LCM's PROLOG."""
    seen = states_seen(cloud)
    vm = cloud.deploy(1, "h2")
    assert seen == [
        ("ACTIVE", "LCM_INIT"),
        ("ACTIVE", "PROLOG"),
        ("ACTIVE", "BOOT"),
        ("ACTIVE", "RUNNING"),
    ]
    assert vm.deploy_id == "one-1"
    assert [(h.seq, h.hostname, h.hid) for h in vm.history] == [(0, "h2", 1)]
    assert cloud.host("h2").vms == [1]


def test_live_migration_moves_the_vm_and_adds_a_history_record(cloud):
    seen = states_seen(cloud)
    vm = cloud.migrate(0, "h2")
    assert seen == [("ACTIVE", "MIGRATE"), ("ACTIVE", "RUNNING")]
    assert [(h.seq, h.hostname) for h in vm.history] == [(0, "h1"), (1, "h2")]
    assert vm.history[0].etime > 0
    assert vm.history[0].action == st.HISTORY_ACTIONS["live-migrate"]
    assert cloud.host("h1").vms == [] and cloud.host("h2").vms == [0]
    with pytest.raises(ActionRefused, match="already running on host"):
        cloud.migrate(0, "h2")
    with pytest.raises(ActionRefused, match="Host is offline, cannot use it to deploy VM"):
        cloud.migrate(0, "h3")


def test_poweroff_keeps_the_vm_on_its_host_and_resume_boots_it_there(cloud):
    seen = states_seen(cloud)
    cloud.poweroff(0)
    assert seen == [("ACTIVE", "SHUTDOWN_POWEROFF"), ("POWEROFF", "LCM_INIT")]
    assert cloud.host("h1").vms == [0]
    with pytest.raises(ActionRefused, match="not available for state POWEROFF"):
        cloud.poweroff(0)
    cloud.resume(0)
    assert seen[-2:] == [("ACTIVE", "BOOT_POWEROFF"), ("ACTIVE", "RUNNING")]
    assert [h.seq for h in cloud.vm(0).history] == [0, 1]


def test_terminate_goes_to_done_and_frees_the_host(cloud):
    seen = states_seen(cloud)
    vm = cloud.terminate(0)
    assert seen == [("ACTIVE", "SHUTDOWN"), ("ACTIVE", "EPILOG"), ("DONE", "LCM_INIT")]
    assert vm.etime > 0 and vm.state == st.DONE
    assert cloud.host("h1").vms == []
    with pytest.raises(ActionRefused, match="state DONE"):
        cloud.terminate(0)


def test_undeploy_then_resume_goes_back_to_pending(cloud):
    cloud.undeploy(0)
    assert cloud.vm(0).state == st.UNDEPLOYED and cloud.host("h1").vms == []
    cloud.resume(0)
    assert (cloud.vm(0).state, cloud.vm(0).lcm_state) == (st.PENDING, st.LCM_INIT)


def test_unknown_objects_and_unmodelled_actions(cloud):
    with pytest.raises(NoSuchObject, match=r"Error getting virtual machine \[42\]"):
        cloud.vm(42)
    with pytest.raises(NoSuchObject, match=r"host \[nope\]"):
        cloud.deploy(1, "nope")
    with pytest.raises(ActionRefused, match="the simulator models"):
        cloud.vm_action("reboot", 0)


def test_changes_invalidate_cached_xml(cloud):
    vm = cloud.vm(0)
    before = vm_xml(vm, "extended")
    assert vm_xml(vm, "extended") is before  # cached
    cloud.poweroff(0)
    after = ET.fromstring(vm_xml(vm, "extended"))
    assert after.findtext("STATE") == "8"
    assert after.findtext("PREV_LCM_STATE") == str(st.LCM_STATES["SHUTDOWN_POWEROFF"])


def test_short_xml_drops_context_and_custom_user_attributes(cloud):
    vm = cloud.vm(0)
    vm.user_template.add("FLAVOURS", "2")
    vm.user_template.add("SCHED_REQUIREMENTS", "ID=1")
    vm.invalidate()
    short = ET.fromstring(vm_xml(vm, "short"))
    extended = ET.fromstring(vm_xml(vm, "extended"))
    assert short.find("TEMPLATE/CONTEXT") is None
    assert extended.find("TEMPLATE/CONTEXT/ETH0_IP") is None  # this VM has no NIC
    assert short.find("USER_TEMPLATE/FLAVOURS") is None
    assert short.findtext("USER_TEMPLATE/SCHED_REQUIREMENTS") == "ID=1"
    assert extended.findtext("USER_TEMPLATE/FLAVOURS") == "2"
    assert [c.tag for c in short.find("HISTORY_RECORDS/HISTORY")] == [
        "OID", "SEQ", "HOSTNAME", "HID", "CID", "DS_ID", "VM_MAD", "TM_MAD", "ACTION",
    ]  # fmt: skip


def test_hook_templates_are_validated_like_oned(cloud):
    hook = cloud.allocate_hook("NAME=h\nTYPE=STATE\nCOMMAND=x\nRESOURCE=vm\nON=running\n")
    assert (hook.resource, hook.state, hook.lcm_state) == ("VM", "ACTIVE", "RUNNING")
    assert hook.template.get("ON") is None and hook.template.get("NAME") is None
    for text, message in [
        ("TYPE=state\nCOMMAND=x\nRESOURCE=VM\nON=RUNNING", "Invalid name."),
        ("NAME=a\nTYPE=state\nRESOURCE=VM\nON=RUNNING", "No COMMAND"),
        ("NAME=a\nTYPE=Bogus\nCOMMAND=x", "Invalid Hook type: bogus"),
        ("NAME=a\nTYPE=state\nCOMMAND=x\nRESOURCE=VM\nON=LATER", "Unkown state condition"),
        ("NAME=a\nTYPE=state\nCOMMAND=x\nRESOURCE=VM\nON=CUSTOM\nSTATE=ACTIVE", "LCM_STATE"),
        ("NAME=a\nTYPE=state\nCOMMAND=x\nRESOURCE=HOST\nSTATE=BUSY", "Invalid STATE"),
        ("NAME=a\nTYPE=state\nCOMMAND=x", "RESOURCE attribute is required"),
        ("NAME=a\nTYPE=api\nCOMMAND=x\nCALL=one.vm.info", "API hooks are not simulated"),
        ('NAME = "a', "Parse error"),
    ]:
        with pytest.raises(AllocateError, match=message):
            cloud.allocate_hook(text)


def test_users_core_passwords_and_authentication(cloud):
    assert cloud.authenticate("oneadmin:secret").id == 0
    assert cloud.authenticate("oneadmin:wrong") is None
    assert cloud.authenticate("nobody") is None
    bob = cloud.allocate_user("bob", "pw", "", [])
    assert (bob.auth_driver, bob.gid, bob.groups) == ("core", 1, [1])
    assert bob.password != "pw" and len(bob.password) == 64
    assert cloud.authenticate("bob:pw").id == bob.id
    key = cloud.allocate_user("carol", "ed25519/" + "ab" * 32, "biscuit", [1])
    assert key.password == "ed25519/" + "ab" * 32  # other drivers keep the secret verbatim
    assert cloud.authenticate("carol:" + "ab" * 32) is None
    with pytest.raises(AllocateError, match="NAME is already taken by USER"):
        cloud.allocate_user("bob", "x", "core", [])
    with pytest.raises(AllocateError, match="Group 7 does not exist"):
        cloud.allocate_user("dave", "x", "core", [7])


def test_generated_fleets_follow_the_seed():
    def shape(seed: int) -> list:
        fleet = generate_fleet(4, 5, seed, "127.0.1.1")
        return [(h.name, h.hostname, h.cpus) for h in fleet.hosts] + [
            (v.name, v.host, v.state, v.memory, v.cpu_fraction, v.user_template) for v in fleet.vms
        ]

    assert shape(3) == shape(3)
    assert shape(3) != shape(4)
    fleet = generate_fleet(12, 1, 0, "127.0.1.250")
    assert [h.name for h in fleet.hosts][:2] == ["kvm-01", "kvm-02"]
    assert fleet.hosts[-1].hostname == "127.0.2.5"  # the base is counted across octets


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a mapping"),
        ({"hosts": [{"cpus": 2}]}, r"hosts\[0\].name: required"),
        ({"hosts": [{"name": "a"}, {"name": "a"}]}, "duplicate name"),
        ({"hosts": [{"name": "a", "ram": 1}]}, r"hosts\[0\]: unknown key\(s\): ram"),
        ({"vms": [{"host": "zz"}]}, r"vms\[0\].host: no host named 'zz'"),
        ({"vms": [{"state": "running"}]}, "needs a host"),
        ({"vms": [{"memory": "lots"}]}, r"vms\[0\].memory: expected int"),
        ({"vms": [{"nics": [{"ip": "300.1.1.1"}]}]}, "not an IPv4 address"),
        ({"vms": [{"cpu_fraction": 2}]}, "between 0 and 1"),
        ({"vms": [{"id": 1}, {"id": 1}]}, "duplicate id"),
        ({"extra": 1}, "unknown top-level key"),
    ],
)
def test_bad_fleets_name_the_field(doc, message):
    with pytest.raises(FleetError, match=message):
        parse_fleet(doc, "127.0.1.1")


def test_vm_spec_defaults():
    spec = vm_spec({"host": "h1"}, "body", {"h1"})
    assert (spec.state, spec.memory, spec.cpu_fraction) == ("running", 1024, 0.1)
    assert vm_spec({}, "body").state == "pending"


def test_cold_migrations_walk_oneds_states(cloud):
    """src/lcm/LifeCycleActions.cc trigger_migrate: SAVE_MIGRATE from RUNNING, then
    LifeCycleStates.cc trigger_prolog_success BOOT_MIGRATE; PROLOG_MIGRATE_POWEROFF/SUSPEND
    bypass the save for a VM that is not running."""
    seen = states_seen(cloud)
    cloud.migrate(0, "h2", live=False)
    assert seen == [
        ("ACTIVE", "SAVE_MIGRATE"),
        ("ACTIVE", "PROLOG_MIGRATE"),
        ("ACTIVE", "BOOT_MIGRATE"),
        ("ACTIVE", "RUNNING"),
    ]
    cloud.suspend(0)
    del seen[:]
    vm = cloud.migrate(0, "h1")
    assert seen == [("ACTIVE", "PROLOG_MIGRATE_SUSPEND"), ("SUSPENDED", "LCM_INIT")]
    assert vm.hostname == "h1" and cloud.host("h2").vms == [] and cloud.host("h1").vms == [0]
    # the first stay ended by the migration, the second by the suspend; the new record
    # carries the cold migration's action (set_action, not cleared: the VM does not boot)
    actions = st.HISTORY_ACTIONS
    assert [h.action for h in vm.history] == [
        actions["migrate"],
        actions["suspend"],
        actions["migrate"],
    ]
    with pytest.raises(ActionRefused, match="Migrate action is not available for state PENDING"):
        cloud.migrate(1, "h2")


def test_deploy_after_undeploy_goes_through_prolog_undeploy(cloud):
    """src/lcm/LifeCycleActions.cc trigger_deploy: PROLOG_UNDEPLOY when the previous record
    was closed by an undeploy; VirtualMachineDeploy accepts UNDEPLOYED VMs directly."""
    cloud.undeploy(0)
    seen = states_seen(cloud)
    vm = cloud.deploy(0, "h2")
    assert seen == [
        ("ACTIVE", "LCM_INIT"),
        ("ACTIVE", "PROLOG_UNDEPLOY"),
        ("ACTIVE", "BOOT_UNDEPLOY"),
        ("ACTIVE", "RUNNING"),
    ]
    assert [h.hostname for h in vm.history] == ["h1", "h2"]
    with pytest.raises(ActionRefused, match="Deploy action is not available for state RUNNING"):
        cloud.deploy(0, "h1")


def test_fleet_nic_aliases_and_template_attributes_are_checked():
    with pytest.raises(FleetError, match=r"vms\[0\].nic_aliases\[0\].parent: no NIC 1"):
        parse_fleet({"vms": [{"name": "a", "nics": ["10.0.0.1"], "nic_aliases": [
            {"ip": "10.0.0.2", "parent": 1}
        ]}]}, "127.0.1.1")  # fmt: skip
    with pytest.raises(FleetError, match=r"nic_aliases\[0\]: unknown key\(s\): mtu"):
        vm_spec({"name": "a", "nic_aliases": [{"mtu": 9000}]}, "vm")
