"""VM -> host -> power with SPEC section 6 semantics, on the stored pools."""

from __future__ import annotations

from types import MappingProxyType

from services.common.oned.pools import parse_host_pool, parse_vm_pool
from services.vm_exporter.join import Target, agent_targets, attribute
from services.vm_exporter.readings import AGENT, HostReading, VmReading
from testkit import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "one"
VMS = {vm.id: vm for vm in parse_vm_pool((FIXTURES / "vmpool_infoextended.xml").read_text()).items}
HOSTS = {h.id: h for h in parse_host_pool((FIXTURES / "hostpool_info.xml").read_text()).items}


def _reading(vms: dict[int, VmReading]) -> HostReading:
    return HostReading(AGENT, 50_000_000, MappingProxyType(vms), 1)


def test_targets_are_the_hosts_that_run_vms_by_template_hostname_or_name():
    # host 0 runs 42 (7 is powered off there), host 1 runs 52 and 524, host 2 runs 60;
    # host 3 runs nothing and is not asked.
    assert agent_targets(VMS.values(), HOSTS) == (
        Target(0, "node1"),
        Target(1, "node2"),
        Target(2, "node3"),
    )


def test_host_missing_from_host_pool_is_reached_by_the_vm_history_hostname():
    hosts = {k: v for k, v in HOSTS.items() if k != 1}
    assert Target(1, "node2.cognit.lan") in agent_targets(VMS.values(), hosts)


def test_not_running_vm_draws_zero_even_when_its_host_is_down():
    for vm_id in (7, 9):  # POWEROFF on host 0, PENDING with no host
        assert attribute(VMS[vm_id], {}).power_uw == 0


def test_running_vm_on_a_host_whose_agent_did_not_answer_has_no_sample():
    a = attribute(VMS[42], {1: _reading({})})
    assert a.power_uw is None and not a.known


def test_running_vm_the_agent_does_not_list_draws_zero():
    a = attribute(VMS[52], {1: _reading({524: VmReading(9, 9)})})
    assert a.power_uw == 0 and a.known and a.reading is None


def test_listed_vm_gets_its_power_and_source():
    a = attribute(VMS[524], {1: _reading({524: VmReading(21_000_000, 77)})})
    assert a.power_uw == 21_000_000
    assert a.reading == VmReading(21_000_000, 77) and a.source == (1, AGENT)


def test_listed_vm_whose_power_is_not_known_yet_has_no_sample_but_is_known():
    a = attribute(VMS[42], {0: _reading({42: VmReading(None, 0)})})
    assert a.power_uw is None and a.known


def test_power_comes_from_the_current_host_only():
    # VM 60 migrated from host 0 to host 2: host 0's agent still listing it does not count.
    a = attribute(VMS[60], {0: _reading({60: VmReading(5, 5)})})
    assert a.power_uw is None
