"""The pool readers on stored oned replies (valid per OpenNebula's vm.xsd, host_pool.xsd)."""

from __future__ import annotations

import pyone.bindings
import pytest

from services.common.oned.models import MIB, flavours_value
from services.common.oned.pools import (
    PoolFormatError,
    parse_host_pool,
    parse_vm_pool,
    vm_pool_reader,
)
from testkit import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "one"
VM_XML = (FIXTURES / "vmpool_infoextended.xml").read_text()
HOST_XML = (FIXTURES / "hostpool_info.xml").read_text()


def _vms():
    return {vm.id: vm for vm in parse_vm_pool(VM_XML).items}


def test_every_vm_is_read_with_oned_units_converted():
    vms = _vms()
    assert sorted(vms) == [7, 9, 42, 52, 60, 524]
    vm = vms[42]
    assert (vm.state, vm.lcm_state, vm.host_id, vm.hostname) == (3, 3, 0, "node1.cognit.lan")
    assert vm.memory_bytes == 2048 * MIB  # TEMPLATE/MEMORY is MiB
    assert vm.cpu == 0.5 and vm.vcpus == 2
    assert [(d.disk_id, d.size_bytes) for d in vm.disks] == [("0", 2252 * MIB), ("2", 1024 * MIB)]
    assert len(vm.nics) == 2  # one NIC + one PCI NIC; the PCI GPU is not a NIC
    assert vm.flavours == 3


def test_defaults_of_the_seed_and_of_opennebula():
    vms = _vms()
    assert vms[52].vcpus == 1  # VCPU unset
    assert vms[52].flavours == -1  # FLAVOURS not a number
    assert vms[524].flavours == -1  # no FLAVOURS at all
    assert vms[9].flavours == -1  # FLAVOURS empty
    assert vms[7].flavours == 5  # " 5 " is a number
    assert vms[9].host_id == -1 and vms[9].hostname == ""  # never deployed


def test_last_history_record_gives_the_host():
    assert _vms()[60].host_id == 2 and _vms()[60].hostname == "node3"


def test_on_host_only_for_active_vms_in_a_hypervisor_state():
    vms = _vms()
    assert vms[42].on_host and vms[52].on_host and vms[60].on_host
    assert not vms[7].on_host  # POWEROFF
    assert not vms[9].on_host  # PENDING


def test_hosts_with_kib_converted_and_hostname_fallback():
    hosts = {h.id: h for h in parse_host_pool(HOST_XML).items}
    assert sorted(hosts) == [0, 1, 2, 3]
    h = hosts[1]
    assert (h.name, h.hostname, h.state) == ("node2.cognit.lan", "node2", 2)
    assert h.mem_total_bytes == 32781112 * 1024
    assert h.mem_max_bytes == 49171668 * 1024
    assert h.mem_usage_bytes == 4718592 * 1024
    assert (h.cpu_total, h.cpu_max, h.cpu_usage) == (1600, 3200, 300)
    assert h.vms == 2
    assert hosts[2].hostname == "node3"  # no TEMPLATE/HOSTNAME: NAME
    assert hosts[3].vms == 0


def test_agrees_with_pyone_bindings_on_the_same_reply():
    """pyone's generated bindings are the reference reader of oned's schema."""
    ref = pyone.bindings.parseString(VM_XML.encode())
    ours = _vms()
    for vm in ref.VM:
        mine = ours[vm.ID]
        assert (mine.state, mine.lcm_state) == (vm.STATE, vm.LCM_STATE)
        assert mine.memory_bytes == int(vm.TEMPLATE["MEMORY"]) * MIB
        history = vm.HISTORY_RECORDS.HISTORY
        assert mine.host_id == (history[-1].HID if history else -1)
        disks = vm.TEMPLATE.get("DISK", [])
        disks = disks if isinstance(disks, list) else [disks]
        assert [d.disk_id for d in mine.disks] == [d["DISK_ID"] for d in disks]
        flavours = (vm.USER_TEMPLATE or {}).get("FLAVOURS")
        assert mine.flavours == flavours_value(flavours)
    hosts = pyone.bindings.parseString(HOST_XML.encode())
    mine = {h.id: h for h in parse_host_pool(HOST_XML).items}
    for host in hosts.HOST:
        assert mine[host.ID].mem_total_bytes == host.HOST_SHARE.TOTAL_MEM * 1024
        assert mine[host.ID].vms == len(host.VMS.ID)


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_fed_in_pieces_gives_the_same_pool(size):
    reader = vm_pool_reader()
    data = VM_XML.encode()
    for start in range(0, len(data), size):
        reader.feed(data[start : start + size])
    assert reader.close().items == parse_vm_pool(VM_XML).items


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "empty reply"),
        ("<HOST_POOL/>", "expected <VM_POOL>, got <HOST_POOL>"),
        ("<VM_POOL><VM><ID>1</ID>", "malformed VM_POOL XML"),
        ("[one.vmpool.infoextended] User couldn't be authenticated", "malformed VM_POOL XML"),
    ],
)
def test_bad_replies_are_a_clear_error(body, reason):
    with pytest.raises(PoolFormatError, match=reason.replace("[", r"\[")):
        parse_vm_pool(body)


def test_vm_without_integer_id_is_skipped_and_counted():
    pool = parse_vm_pool(
        "<VM_POOL><VM><ID>x</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>"
        "<VM><ID>4</ID><STATE>1</STATE><LCM_STATE>0</LCM_STATE></VM></VM_POOL>"
    )
    assert [vm.id for vm in pool.items] == [4] and pool.skipped == 1
    vm = pool.items[0]
    assert vm.memory_bytes is None and vm.cpu is None and vm.vcpus == 1 and vm.disks == ()


def test_garbage_numbers_give_no_value_not_a_crash():
    pool = parse_vm_pool(
        "<VM_POOL><VM><ID>4</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE><TEMPLATE>"
        "<MEMORY>lots</MEMORY><CPU>nan</CPU><VCPU>two</VCPU><DISK><DISK_ID>0</DISK_ID></DISK>"
        "</TEMPLATE><USER_TEMPLATE><FLAVOURS>inf</FLAVOURS></USER_TEMPLATE></VM></VM_POOL>"
    )
    vm = pool.items[0]
    assert vm.memory_bytes is None and vm.cpu is None and vm.vcpus is None
    assert vm.disks[0].size_bytes is None and vm.flavours == -1


def test_a_quantity_past_the_float_range_once_scaled_gives_no_value_not_a_crash():
    # MEMORY="1e308" MiB overflowed int(inf) and failed the whole pool, every VM with it.
    pool = parse_vm_pool(
        "<VM_POOL><VM><ID>4</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE><TEMPLATE>"
        "<MEMORY>1e308</MEMORY><DISK><DISK_ID>0</DISK_ID><SIZE>1.5e308</SIZE></DISK>"
        "</TEMPLATE></VM><VM><ID>5</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM></VM_POOL>"
    )
    assert [vm.id for vm in pool.items] == [4, 5]
    assert pool.items[0].memory_bytes is None and pool.items[0].disks[0].size_bytes is None


def test_the_fields_discovery_reads_of_a_vm():
    vm = _vms()[42]
    assert vm.name == "sr-42"
    assert (vm.context_ip, vm.context_ip6) == ("172.20.0.42", "")
    # TEMPLATE/NIC and the PCI NIC, in document order; the PCI GPU is no NIC.
    assert [(n.nic_id, n.ip) for n in vm.nics] == [(0, "172.20.0.42"), (1, "")]
    assert vm.prometheus_exporter == "9100"
    assert (vm.service_id, vm.role_name, vm.flavours_text) == ("11", "worker", "3")


def test_single_object_bodies_use_the_same_models():
    from services.common.oned.pools import parse_host, parse_vm

    start = VM_XML.index("<VM>")
    end = VM_XML.index("</VM>") + len("</VM>")
    assert parse_vm(VM_XML[start:end]) == _vms()[42]
    start = HOST_XML.index("<HOST>")
    end = HOST_XML.index("</HOST>") + len("</HOST>")
    host = parse_host(HOST_XML[start:end])
    assert host == parse_host_pool(HOST_XML).items[0]
    with pytest.raises(PoolFormatError, match="expected <VM>"):
        parse_vm(HOST_XML[start:end])


def test_host_template_single_attributes_and_cluster():
    hosts = {h.id: h for h in parse_host_pool(HOST_XML).items}
    assert hosts[1].attr("HOSTNAME") == "node2"
    assert hosts[1].attr("NO_SUCH") is None
    assert all(h.cluster_id == 0 for h in hosts.values())
