"""The agent as a real process on simulated hypervisors with real burner processes."""

from __future__ import annotations

import statistics
import time

import pytest

from services.rapl_agent.__main__ import main
from sim.hypervisor import SimHypervisor
from sim.hypervisor.power_model import CORE_SHARE, PACKAGE_SHARE, PSYS_SOCKET_SHARE, UNCORE_SHARE
from testkit import VENV_BIN, Service, free_port, http, run
from tests.rapl_agent.live import (
    Agent,
    agent_argv,
    busy_jiffies,
    cpu_jiffies,
    process_power,
    value,
)

HOST_W = "scaph_host_power_microwatts"
SOCKET_W = "scaph_socket_power_microwatts"
DOMAIN_W = "scaph_domain_power_microwatts"


def mean_w(snaps, name, **labels) -> float:
    """Mean watts over snapshots, the two highest and lowest dropped.

    A single interval carries the simulator's 10 ms tick staircase (files change between
    reads, not continuously), and a stall of its ticker thread on a loaded machine shows as
    one low and one high interval; trimming removes such a pair, the mean the staircase.
    """
    values = sorted(value(f, name, **labels) for f in snaps)
    return statistics.fmean(values[2:-2]) / 1e6


def test_idle_host_socket_and_domain_power_match_the_model(tmp_path, start_agent):
    with SimHypervisor(tmp_path, sockets=2, dram=True, mmio=True, tick=0.01) as hv:
        agent = start_agent(hv.powercap_root, hv.proc_root)
        snaps = agent.snapshots(16)
    # No VM: the model draws idle_w = 40 W, split in the documented fixed proportions.
    socket_w = 40.0 / 2
    package_w = socket_w * PACKAGE_SHARE
    assert mean_w(snaps, HOST_W) == pytest.approx(40.0, rel=0.02)
    for socket in ("0", "1"):
        assert mean_w(snaps, SOCKET_W, socket_id=socket) == pytest.approx(package_w, rel=0.02)
        for domain, expected in (
            ("core", package_w * CORE_SHARE),
            ("uncore", package_w * UNCORE_SHARE),
            ("dram", socket_w - package_w),
        ):
            got = mean_w(snaps, DOMAIN_W, socket_id=socket, domain_name=domain)
            assert got == pytest.approx(expected, rel=0.02), (socket, domain)
    for fams in snaps:
        # Single samples carry the simulator's tick staircase and any stall of its thread on
        # a loaded machine; the means above telescope those away. Here: no spikes.
        assert 0 < value(fams, HOST_W) / 1e6 < 40.0 * 2.5
        # The mmio twins are not counted: two sockets, and the host is not 40 + 34 W.
        assert len(fams[SOCKET_W]) == 2
        assert value(fams, HOST_W, value_source="powercap_rapl_pkg") is not None


def test_psys_is_preferred_when_present(tmp_path, start_agent):
    with SimHypervisor(tmp_path, psys=True, tick=0.01) as hv:
        agent = start_agent(hv.powercap_root, hv.proc_root)
        snaps = agent.snapshots(14)
    # psys reads the whole platform (40 W); package + dram only PSYS_SOCKET_SHARE of it.
    assert mean_w(snaps, HOST_W, value_source="powercap_rapl_psys") == pytest.approx(40, rel=0.02)
    assert mean_w(snaps, SOCKET_W) == pytest.approx(
        40 * PSYS_SOCKET_SHARE * PACKAGE_SHARE, rel=0.02
    )


def test_no_spike_or_negative_value_across_wraps(tmp_path, start_agent):
    # A 200 J range (the 34 W package wraps every ~6 s), its counter set 60 J below the top:
    # the first wrap comes ~2 s in, and every later one ~6 s apart.
    with SimHypervisor(tmp_path, max_energy_range_uj=200_000_000, tick=0.01) as hv:
        hv.set_energy_uj("intel-rapl:0", 140_000_000)
        agent = start_agent(hv.powercap_root, hv.proc_root)
        readings = []
        wrapped = False
        after_wrap = 0
        deadline = time.monotonic() + 25
        last_raw = hv.energy_uj("intel-rapl:0")
        seen = set()
        while (after_wrap < 4 or len(readings) < 14) and time.monotonic() < deadline:
            raw = hv.energy_uj("intel-rapl:0")
            wrapped = wrapped or raw < last_raw
            last_raw = raw
            fams = agent.metrics()
            stamp = value(fams, "one_cognit_rapl_agent_snapshot_timestamp_seconds")
            if stamp not in seen and HOST_W in fams:
                seen.add(stamp)
                readings.append(fams)
                after_wrap += wrapped
            time.sleep(0.03)
        logs = agent.logs()
    assert wrapped and after_wrap >= 4, "the agent did not sample across a wrap"
    # The wrap was corrected, not refused: a refused interval logs and serves no power, which
    # the readings above (powered snapshots only) would not show.
    assert "counter went from" not in logs, logs
    energies = [value(f, "scaph_host_energy_microjoules") for f in readings]
    assert energies == sorted(energies), "host energy went backwards across a wrap"
    # A wrap mistaken for a reset or a negative delta would be off by ~100 J in 0.25 s.
    for fams in readings:
        assert 0 < value(fams, HOST_W) / 1e6 < 40.0 * 2.5
        assert 0 < value(fams, SOCKET_W, socket_id="0") / 1e6 < 34.0 * 2.5
    assert mean_w(readings, HOST_W) == pytest.approx(40.0, rel=0.02)


def test_first_sample_yields_energy_but_no_power(tmp_path, start_agent):
    with SimHypervisor(tmp_path) as hv:
        hv.start_vm(5, cpu_fraction=0.1)
        agent = start_agent(hv.powercap_root, hv.proc_root, interval=300)
        status, body = agent.json("/api/v1/vms")
        fams = agent.metrics()
    assert status == 200
    assert body["host"]["power_uw"] is None
    assert isinstance(body["host"]["energy_uj"], int) and body["host"]["energy_uj"] > 0
    assert [(v["name"], v["power_uw"], v["energy_uj"]) for v in body["vms"]] == [("one-5", None, 0)]
    assert value(fams, "scaph_host_energy_microjoules") == body["host"]["energy_uj"]
    assert HOST_W not in fams and SOCKET_W not in fams
    assert "scaph_process_power_consumption_microwatts" not in fams


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Two VMs burning different CPU fractions on one simulated host."""
    with SimHypervisor(tmp_path_factory.mktemp("busy"), tick=0.02) as hv:
        big = hv.start_vm(1, cpu_fraction=0.6, helpers=2)
        small = hv.start_vm(2, cpu_fraction=0.15, helpers=1)
        yield hv, big, small


@pytest.fixture(scope="module")
def agent(host):
    """One agent on that host's /proc view, shared by the tests below."""
    hv, _, _ = host
    argv, base = agent_argv(hv.powercap_root, hv.proc_root)
    service = Service(argv)
    try:
        yield Agent(service, base)
    finally:
        service.close()


def test_vms_json_is_the_spec_shape(host, agent):
    hv, big, small = host
    agent.snapshots(2)
    status, body = agent.json("/api/v1/vms")
    assert status == 200
    assert set(body) == {"timestamp", "host", "vms"}
    assert abs(body["timestamp"] - time.time()) < 5
    assert set(body["host"]) == {"power_uw", "energy_uj"}
    vms = {v["name"]: v for v in body["vms"]}
    assert set(vms) == {"one-1", "one-2"}
    one = vms["one-1"]
    assert set(one) == {"name", "one_vm_id", "pid", "helper_pids", "power_uw", "energy_uj"}
    assert (one["one_vm_id"], one["pid"]) == (1, big.pid)
    assert one["helper_pids"] == sorted(big.helper_pids)
    assert vms["one-2"]["helper_pids"] == small.helper_pids
    assert all(isinstance(v["power_uw"], int) and v["power_uw"] > 0 for v in vms.values())


def test_vm_power_is_qemu_plus_helpers(host, agent):
    hv, big, small = host
    agent.snapshots(2)  # past the first sample, which has no power
    for _ in range(20):
        fams = agent.metrics()
        status, body = agent.json("/api/v1/vms")
        if body["timestamp"] == round(
            value(fams, "one_cognit_rapl_agent_snapshot_timestamp_seconds"), 3
        ):
            break
    else:
        pytest.fail("never caught /metrics and /api/v1/vms on the same snapshot")
    power = process_power(fams)
    for qp in (big, small):
        vm = next(v for v in body["vms"] if v["pid"] == qp.pid)
        assert vm["power_uw"] == sum(power[p] for p in qp.pids)
    labels = {
        int(s.labels["pid"]): s.labels for s in fams["scaph_process_power_consumption_microwatts"]
    }
    assert labels[big.pid]["vmname"] == "one-1"
    assert labels[big.pid]["exe"] == "qemu-kvm-one"
    assert "-nameguest=one-1,debug-threads=on-S" in labels[big.pid]["cmdline"]
    assert len(labels[big.pid]["cmdline"]) == 512
    assert labels[big.helper_pids[0]]["exe"] == f"vhost-{big.pid}"
    assert "vmname" not in labels[big.helper_pids[0]]


def test_a_burners_share_tracks_its_cpu_share(host, agent):
    hv, big, small = host

    def observe():
        (fams,) = agent.snapshots(1)
        status, body = agent.json("/api/v1/vms")
        energy = {v["name"]: v["energy_uj"] for v in body["vms"]}
        return (
            energy,
            body["host"]["energy_uj"],
            cpu_jiffies(big.pids),
            cpu_jiffies(small.pids),
            busy_jiffies(),
        )

    e0, h0, b0, s0, busy0 = observe()
    time.sleep(4.0)
    e1, h1, b1, s1, busy1 = observe()
    big_cpu, small_cpu = b1 - b0, s1 - s0
    assert big_cpu > 0 and small_cpu > 0
    big_j, small_j = e1["one-1"] - e0["one-1"], e1["one-2"] - e0["one-2"]
    # The VMs' energies split like the CPU their processes burned (measured by the test).
    assert big_j / small_j == pytest.approx(big_cpu / small_cpu, rel=0.25)
    # And each VM's part of the host's energy is its part of the machine's busy time.
    assert big_j / (h1 - h0) == pytest.approx(big_cpu / (busy1 - busy0), rel=0.3)


def test_process_sum_never_exceeds_host_with_every_process_and_churn(tmp_path, start_agent):
    with SimHypervisor(tmp_path, tick=0.02) as hv:
        hv.start_vm(1, cpu_fraction=0.5)
        # The whole machine's /proc: every process on this box competes for the host's watts.
        agent = start_agent(hv.powercap_root, "/proc", interval=0.2)
        snaps = []
        for round_ in range(4):
            # VMs exit and start mid-interval: their pids vanish and appear between samples.
            hv.start_vm(10 + round_, cpu_fraction=0.3)
            snaps += agent.snapshots(2)
            hv.stop_vm(10 + round_)
            snaps += agent.snapshots(1)
    for fams in snaps:
        host = value(fams, HOST_W)
        power = process_power(fams)
        assert len(power) > 20
        assert sum(power.values()) <= host * 1.01
        assert max(power.values()) <= host


def test_agents_per_simulated_host_on_their_own_loopback_address(tmp_path, start_agent):
    port = free_port()
    with (
        SimHypervisor(tmp_path / "a", name="a") as a,
        SimHypervisor(tmp_path / "b", name="b") as b,
    ):
        a.start_vm(11, cpu_fraction=0.1)
        b.start_vm(12, cpu_fraction=0.1)
        b.start_vm(13, cpu_fraction=0.1)
        agent_a = start_agent(a.powercap_root, a.proc_root, host="127.0.1.1", port=port)
        agent_b = start_agent(b.powercap_root, b.proc_root, host="127.0.1.2", port=port)
        _, body_a = agent_a.json("/api/v1/vms")
        _, body_b = agent_b.json("/api/v1/vms")
    assert [v["one_vm_id"] for v in body_a["vms"]] == [11]
    assert [v["one_vm_id"] for v in body_b["vms"]] == [12, 13]


def test_http_errors_and_graceful_stop(tmp_path, start_agent):
    with SimHypervisor(tmp_path) as hv:
        agent = start_agent(hv.powercap_root, hv.proc_root)
        status, body = agent.json("/nope")
        assert status == 404 and "error" in body
        status, _, raw = http("POST", agent.base + "/api/v1/vms", b"{}")
        assert status == 405
        assert agent.service.stop() == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--interval", "0"], "--interval must be between"),
        (["--interval", "301"], "--interval must be between 0.05 and 300 seconds"),
        (["--max-cmdline", "-1"], "--max-cmdline must be >= 0"),
        (["--listen", "nowhere"], "--listen"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args, message, capsys):
    # In-process main() for speed; the exit path is the console script's own.
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_flag_from_the_console_script():
    result = run([str(VENV_BIN / "one-rapl-agent"), "--interval", "-3"])
    assert result.returncode == 2
    assert result.stderr.startswith("one-rapl-agent: error: --interval must be between")


def test_help_lists_every_flag_with_its_default():
    result = run([*agent_argv("/x", "/y")[0][:3], "--help"])
    assert result.returncode == 0
    for flag, default in [
        ("--powercap-root", "/sys/class/powercap"),
        ("--proc-root", "/proc"),
        ("--interval", "2.0"),
        ("--listen", "0.0.0.0:8080"),
        ("--max-cmdline", "512"),
    ]:
        text = " ".join(result.stdout.split())
        assert flag in text and f"(default: {default})" in text
