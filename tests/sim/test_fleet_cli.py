"""`one-cognit sim` as a command: deterministic fleets, YAML fleets, and bad input (exit 2)."""

from __future__ import annotations

import sys

import pytest

from sim.fleet import DEMO_PUBLIC_IPS, generate_fleet
from testkit import VENV_BIN, free_port, run


def fleet_view(sim) -> list:
    """Everything about the VMs that does not depend on when the simulator started."""
    pool = sim.one().vmpool.infoextended(-2, -1, -1, -1)
    hosts = sim.one().hostpool.info()
    return [
        (
            vm.ID,
            vm.NAME,
            vm.STATE,
            vm.LCM_STATE,
            dict(vm.TEMPLATE),
            dict(vm.USER_TEMPLATE),
            vm.HISTORY_RECORDS.HISTORY[-1].HOSTNAME,
        )
        for vm in pool.VM
    ] + [(h.NAME, dict(h.TEMPLATE), h.HOST_SHARE.MAX_CPU) for h in hosts.HOST]


def test_same_seed_same_fleet_other_seed_other_fleet(sim_factory):
    first = sim_factory("--hosts", "2", "--vms-per-host", "3", "--seed", "11")
    second = sim_factory("--hosts", "2", "--vms-per-host", "3", "--seed", "11")
    other = sim_factory("--hosts", "2", "--vms-per-host", "3", "--seed", "12")
    assert fleet_view(first) == fleet_view(second)
    assert fleet_view(first) != fleet_view(other)


def test_generated_fleet_shape(sim_factory):
    sim = sim_factory(
        "--hosts", "4", "--vms-per-host", "5", "--host-ip-base", "127.0.7.10",
        "--poweroff-fraction", "0.5", "--seed", "2",
    )  # fmt: skip
    one = sim.one()
    hosts = one.hostpool.info().HOST
    assert [(h.NAME, h.TEMPLATE["HOSTNAME"]) for h in hosts] == [
        ("kvm-01", "127.0.7.10"),
        ("kvm-02", "127.0.7.11"),
        ("kvm-03", "127.0.7.12"),
        ("kvm-04", "127.0.7.13"),
    ]
    assert [h.VMS.ID for h in hosts] == [list(range(i, i + 5)) for i in (0, 5, 10, 15)]
    # public addresses in several countries, for geo and the carbon figures
    assert [h.TEMPLATE["PUBLIC_IP"] for h in hosts] == list(DEMO_PUBLIC_IPS[:4])
    vms = one.vmpool.infoextended(-2, -1, -1, -1).VM
    states = {vm.STATE for vm in vms}
    assert states == {3, 8}  # some running, some powered off
    for vm in vms:
        assert int(vm.TEMPLATE["MEMORY"]) > 0 and float(vm.TEMPLATE["CPU"]) > 0
        assert vm.TEMPLATE["CONTEXT"]["ETH0_IP"].startswith("10.0.")
        assert vm.DEPLOY_ID == f"one-{vm.ID}"
        disks = vm.TEMPLATE["DISK"]
        for disk in disks if isinstance(disks, list) else [disks]:
            assert int(disk["SIZE"]) > 0
    assert any("FLAVOURS" in vm.USER_TEMPLATE for vm in vms)
    assert any("PROMETHEUS_EXPORTER" in vm.USER_TEMPLATE for vm in vms)
    assert any("ETH0_IP6" in vm.TEMPLATE["CONTEXT"] for vm in vms)


def test_generated_hosts_cycle_through_the_demo_public_addresses():
    hosts = generate_fleet(8, 0, seed=0, host_ip_base="127.0.1.1").hosts
    assert [h.template["PUBLIC_IP"] for h in hosts] == [
        *DEMO_PUBLIC_IPS,
        *DEMO_PUBLIC_IPS[: 8 - len(DEMO_PUBLIC_IPS)],
    ]
    assert len(set(DEMO_PUBLIC_IPS)) == len(DEMO_PUBLIC_IPS)


def sim_command(*args: str, timeout: float = 30) -> tuple[int, str]:
    result = run([sys.executable, "-m", "sim", *args], timeout=timeout)
    return result.returncode, result.stderr


def test_malformed_yaml_fleet_is_one_clear_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: [name: a\nvms: }\n")
    code, err = sim_command("--fleet", str(bad))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("one-cognit sim: error: fleet file")
    assert str(bad) in err and "not valid YAML" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vms:\n  - host: nowhere\n", "vms[0].host: no host named 'nowhere'"),
        ("hosts:\n  - {name: a, cpus: many}\n", "hosts[0].cpus: expected int"),
        ("- just\n- a list\n", "must be a mapping"),
        ("hosts: [{name: a}]\nvms: [{host: a, state: pending}]\n", "a pending VM has no host"),
        ("hosts: [{name: a, template: {1A: x}}]\n", "hosts[0].template: '1A' is not an"),
        ("vms: [{user_template: {V: {A B: 1}}}]\n", "vms[0].user_template: 'A B' is not"),
        # valid entries oned itself would refuse: one line too, not a traceback
        ("hosts: [{name: a}]\nusers: [{name: oneadmin, password: x}]\n", "already taken"),
        ("hosts: [{name: a}]\nvms: [{owner: ghost}]\n", "no user named 'ghost'"),
        ("hosts: [{name: a, state: ERROR}]\nvms: [{host: a}]\n", "Host a [0] is ERROR"),
    ],
)
def test_invalid_fleet_names_the_field(tmp_path, text, message):
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    code, err = sim_command("--fleet", str(path))
    assert code == 2 and message in err and str(path) in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_fleet_file_and_bad_flags(tmp_path):
    code, err = sim_command("--fleet", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read fleet file" in err
    for args, message in [
        (("--hosts", "-1"), "--hosts and --vms-per-host must be >= 0"),
        (("--auth", "nocolon"), "--auth must be user:password"),
        (("--host-ip-base", "not-an-ip"), "expected an IPv4 address"),
        (("--listen", "127.0.0.1:1", "--control-listen", "127.0.0.1:1"), "must differ"),
        (("--poweroff-fraction", "2"), "between 0 and 1"),
        (("--bogus",), "unrecognized arguments"),
    ]:
        code, err = sim_command(*args)
        assert code == 2, (args, err)
        assert message in err and err.count("\n") == 1


def test_help_via_the_umbrella_command():
    result = run([str(VENV_BIN / "one-cognit"), "sim", "--help"])
    assert result.returncode == 0
    for flag in ("--hosts", "--vms-per-host", "--seed", "--fleet", "--auth", "--control-listen",
                 "--host-ip-base", "--hypervisors", "--hook-timeout"):  # fmt: skip
        assert flag in result.stdout


def test_busy_port_exits_1(sim_factory):
    sim = sim_factory("--hosts", "1", "--vms-per-host", "0")
    port = sim.rpc_url.split(":")[2].split("/")[0]
    code, err = sim_command(
        "--listen", f"127.0.0.1:{port}", "--control-listen", f"127.0.0.1:{free_port()}"
    )
    assert code == 1 and "cannot listen" in err
