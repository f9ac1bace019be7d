"""Which objects become which targets, with which labels (pure: models in, groups out)."""

from __future__ import annotations

import json

import pytest

from services.common.oned.models import GUEST_UP_LCM_STATES, Host, Nic, Vm
from services.discovery.addresses import default_address, exporter_targets
from services.discovery.inventory import Inventory, entries_from, render_sd
from services.discovery.targets import Group, host_entry, host_ports, vm_group


def vm(vm_id: int = 7, *, state: int = 3, lcm: int = 3, exporter: str | None = "9100", **kw) -> Vm:
    fields = dict(
        id=vm_id,
        state=state,
        lcm_state=lcm,
        host_id=2,
        hostname="kvm-02",
        memory_bytes=None,
        cpu=None,
        vcpus=None,
        disks=(),
        nics=(Nic(0, "10.0.0.7", "2001:db8::7"),),
        name=f"vm-{vm_id}",
        context_ip="10.0.0.7",
        prometheus_exporter=exporter,
    )
    fields.update(kw)
    return Vm(**fields)


def host(host_id: int = 2, *, state: int = 2, hostname: str = "kvm-02.example", **kw) -> Host:
    fields = dict(
        id=host_id,
        name=f"kvm-{host_id:02d}",
        hostname=hostname,
        state=state,
        mem_total_bytes=None,
        mem_max_bytes=None,
        mem_usage_bytes=None,
        cpu_total=None,
        cpu_max=None,
        cpu_usage=None,
        vms=0,
        cluster_id=100,
    )
    fields.update(kw)
    return Host(**fields)


# -- PROMETHEUS_EXPORTER -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "targets"),
    [
        ("9100", ["10.0.0.7:9100"]),
        ("9100,9104", ["10.0.0.7:9100", "10.0.0.7:9104"]),
        ("9100 9104\t9187", ["10.0.0.7:9100", "10.0.0.7:9104", "10.0.0.7:9187"]),
        ("exporter.example:9100", ["exporter.example:9100"]),
        ("192.0.2.5:9100, 9100", ["192.0.2.5:9100", "10.0.0.7:9100"]),
        ("[2001:db8::5]:9100", ["[2001:db8::5]:9100"]),
        ("[2001:DB8:0::5]:9100", ["[2001:db8::5]:9100"]),
        ("9100,9100", ["10.0.0.7:9100"]),
    ],
)
def test_exporter_values_become_targets(text, targets) -> None:
    assert exporter_targets(text, "10.0.0.7") == (tuple(targets), ())


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "65536",
        "http",
        "2001:db8::5:9100",
        "[2001:db8::5]",
        "[10.0.0.1]:9100",
        "a b:c:9100",
        "-bad-.example:9100",
        "host:port",
        ":9100",
        "$NETWORK[IP]:9100",
    ],
)
def test_values_that_are_no_address_are_problems_not_targets(text) -> None:
    targets, problems = exporter_targets(text, "10.0.0.7")
    assert targets == ()
    assert problems and "PROMETHEUS_EXPORTER" in problems[0]


def test_one_bad_item_costs_only_itself() -> None:
    targets, problems = exporter_targets("9100, nonsense, [::1]:9201", "10.0.0.7")
    assert targets == ("10.0.0.7:9100", "[::1]:9201")
    assert len(problems) == 1 and "nonsense" in problems[0]


def test_a_huge_value_is_refused_whole() -> None:
    targets, problems = exporter_targets("9100 " * 2000, "10.0.0.7")
    assert targets == () and "characters long" in problems[0]


def test_a_bare_port_listens_on_eth0_ip_then_ip6_then_the_first_nic() -> None:
    nics = (Nic(0, "10.0.0.9", "2001:db8::9"), Nic(1, "10.1.0.9", ""))
    assert default_address("10.0.0.7", "2001:db8::7", nics) == "10.0.0.7"
    assert default_address("", "2001:db8::7", nics) == "[2001:db8::7]"
    assert default_address("", "", nics) == "10.0.0.9"
    assert default_address("", "", (Nic(0, "", "fd00::9"),)) == "[fd00::9]"
    assert default_address("", "", ()) is None
    # A context value that is no address of its kind is passed over, not used.
    assert default_address("$NETWORK[IP]", "10.0.0.1", nics) == "10.0.0.9"
    assert exporter_targets("9100", None)[1][0].endswith("ETH0_IP, ETH0_IP6 or NIC address")


# -- VMs ---------------------------------------------------------------------------------------


def test_a_running_vm_gets_its_labels() -> None:
    group, problems = vm_group(
        vm(service_id="12", role_name="frontend", flavours_text="4", name="web-7")
    )
    assert problems == ()
    assert group.as_json() == {
        "targets": ["10.0.0.7:9100"],
        "labels": {
            "one_vm_id": "7",
            "one_vm_name": "web-7",
            "one_host_id": "2",
            "service_id": "12",
            "role_name": "frontend",
            "flavour": "4",
        },
    }


def test_guest_up_states_are_the_ones_named_in_models() -> None:
    # RUNNING, MIGRATE and the operations on a running guest keep the target.
    for lcm in (3, 4, 17, 24, 25, 26, 57, 59, 62, 66, 69):
        assert lcm in GUEST_UP_LCM_STATES
        assert vm_group(vm(lcm=lcm))[0] is not None
    # BOOT, SHUTDOWN*, SAVE_*, EPILOG, UNKNOWN (the failure hook) and beyond pyone's enum: none.
    for lcm in (0, 1, 2, 5, 6, 7, 11, 12, 16, 18, 20, 29, 35, 36, 70, 71):
        assert vm_group(vm(lcm=lcm))[0] is None
    # Not ACTIVE (POWEROFF 8, SUSPENDED 5, STOPPED 4, UNDEPLOYED 9, DONE 6): none.
    for state in (4, 5, 6, 8, 9):
        assert vm_group(vm(state=state, lcm=0))[0] is None


def test_vm_without_exporter_or_with_empty_value_has_no_target() -> None:
    assert vm_group(vm(exporter=None)) == (None, ())
    assert vm_group(vm(exporter="  ")) == (None, ())


def test_unfit_label_values_are_left_out_and_named() -> None:
    group, problems = vm_group(vm(role_name="web\x07", service_id="x" * 2000))
    labels = dict(group.labels)
    assert "role_name" not in labels and "service_id" not in labels
    assert any("role_name" in p and "control character" in p for p in problems)
    assert any("service_id" in p and "over 1024" in p for p in problems)


def test_vm_never_deployed_has_no_host_label() -> None:
    group, _ = vm_group(vm(host_id=-1))
    assert "one_host_id" not in dict(group.labels)


# -- hosts -------------------------------------------------------------------------------------


def test_hosts_keep_targets_in_every_state_but_offline() -> None:
    for state in (0, 2, 3, 4):  # INIT, MONITORED, ERROR, DISABLED
        entry, _ = host_entry(host(state=state))
        assert entry.group(8080).as_json() == {
            "targets": ["kvm-02.example:8080"],
            "labels": {"one_host_id": "2", "one_host_name": "kvm-02", "one_cluster_id": "100"},
        }
    assert host_entry(host(state=8)) == (None, ())


def test_ipv6_hostnames_are_bracketed_and_garbage_is_refused() -> None:
    assert host_entry(host(hostname="2001:db8::2"))[0].group(9100).targets == (
        "[2001:db8::2]:9100",
    )
    entry, problems = host_entry(host(hostname="kvm 02; rm -rf"))
    assert entry is None and "not a host name" in problems[0]


# -- inventory and rendering -------------------------------------------------------------------


def test_inventory_renders_each_job_in_id_order_and_counts_changes() -> None:
    hosts, vms, problems = entries_from(
        [vm(9), vm(3, exporter="bogus"), vm(1, lcm=18)], [host(5), host(1), host(3, state=8)]
    )
    assert problems == {("vm", 3): problems[("vm", 3)]}
    inv = Inventory()
    assert inv.replace(hosts, vms)
    assert not inv.replace(hosts, vms)  # same content: no new version
    ports = host_ports(8080, 9100, 9926)
    assert [g.targets for g in inv.groups("node_exporter", ports, "fe:9925")] == [
        ("kvm-02.example:9100",),
        ("kvm-02.example:9100",),
    ]
    assert [dict(g.labels)["one_host_id"] for g in inv.groups("scaphandre", ports, "fe:9925")] == [
        "1",
        "5",
    ]
    assert [dict(g.labels)["one_vm_id"] for g in inv.groups("sr_exporter", ports, "")] == ["9"]
    assert inv.groups("one_vm_exporter", ports, "fe:9925") == [Group(("fe:9925",))]
    version = inv.version
    assert inv.put("vm", 9, None) and inv.version == version + 1
    assert not inv.put("vm", 9, None)


def test_replace_keeps_objects_an_event_touched_during_the_reconcile() -> None:
    inv = Inventory()
    newer = vm_group(vm(4, exporter="9999"))[0]
    inv.put("vm", 4, newer)
    _, vms, _ = entries_from([vm(4), vm(5)], [])
    inv.replace({}, vms, keep=[("vm", 4)])
    assert inv.vms[4] == newer and 5 in inv.vms
    inv.put("vm", 6, vms[5])
    inv.replace({}, {}, keep=[("vm", 77)])  # a touched object that is gone stays gone
    assert inv.vms == {}


def test_sd_documents_are_json_lists_with_string_labels() -> None:
    assert render_sd([]) == b"[]\n"
    doc = json.loads(render_sd([vm_group(vm(name="wéb ☃"))[0]]))
    assert doc[0]["labels"]["one_vm_name"] == "wéb ☃"
    assert all(isinstance(v, str) for v in doc[0]["labels"].values())
