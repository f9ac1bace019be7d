"""`--hypervisors`: a powercap tree and /proc view per host, a burner per RUNNING VM."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from testkit import free_port, run, wait_for

CLK_TCK = os.sysconf("SC_CLK_TCK")


def hypervisors(sim) -> dict[str, dict]:
    status, body = sim.control("GET", "/v1/hypervisors")
    assert status == 200 and body["enabled"] is True
    return {h["host"]: h for h in body["hypervisors"]}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def energy(root: str, zone: str) -> int:
    return int((Path(root) / zone / "energy_uj").read_text())


def test_burners_follow_the_vms(sim_factory, tmp_path):
    sim = sim_factory("--hosts", "2", "--vms-per-host", "1", "--hypervisors", str(tmp_path))
    hv = hypervisors(sim)
    assert sorted(hv) == ["kvm-01", "kvm-02"]
    first = hv["kvm-01"]
    assert first["hostname"] == "127.0.1.1"
    assert first["powercap_root"] == str(tmp_path / "kvm-01" / "sys" / "class" / "powercap")
    assert (Path(first["powercap_root"]) / "intel-rapl:0" / "name").read_text() == "package-0\n"
    qemu = first["vms"]["0"]["pid"]
    helper = first["vms"]["0"]["helper_pids"][0]
    assert Path(f"/proc/{qemu}/comm").read_text() == "qemu-kvm-one\n"
    argv = Path(f"/proc/{qemu}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"-name") + 1] == b"guest=one-0,debug-threads=on"
    assert Path(f"/proc/{helper}/comm").read_text() == f"vhost-{qemu}\n"
    # each host's /proc view holds its own VMs only
    view = Path(first["proc_root"])
    assert (view / str(qemu)).is_symlink() and (view / "stat").exists()
    assert not (Path(hv["kvm-02"]["proc_root"]) / str(qemu)).exists()

    sim.control("POST", "/v1/vms/0/poweroff")
    wait_for(lambda: not alive(qemu) and not alive(helper), what="the burner to stop")
    assert hypervisors(sim)["kvm-01"]["vms"] == {}
    assert not (view / str(qemu)).exists()

    sim.control("POST", "/v1/vms/0/resume")
    again = hypervisors(sim)["kvm-01"]["vms"]["0"]["pid"]
    assert again != qemu and alive(again)

    sim.control("POST", "/v1/vms/0/migrate", {"host": "kvm-02"})
    hv = hypervisors(sim)
    assert hv["kvm-01"]["vms"] == {} and sorted(hv["kvm-02"]["vms"]) == ["0", "1"]
    moved = hv["kvm-02"]["vms"]["0"]["pid"]
    assert (Path(hv["kvm-02"]["proc_root"]) / str(moved)).is_symlink()
    wait_for(lambda: not alive(again), what="the source burner to stop")

    # XML-RPC actions move burners too
    sim.one().vm.action("terminate", 1)
    gone = hv["kvm-02"]["vms"]["1"]["pid"]
    wait_for(lambda: not alive(gone), what="the terminated VM's burner to stop")

    pids = [moved, *hv["kvm-02"]["vms"]["0"]["helper_pids"]]
    assert sim.service.stop() == 0
    wait_for(lambda: not any(alive(p) for p in pids), what="every burner to go with the sim")


def test_counters_advance_by_the_power_model(sim_factory, tmp_path):
    sim = sim_factory(
        "--hosts", "1", "--vms-per-host", "2", "--hypervisors", str(tmp_path),
        "--idle-w", "60", "--w-per-cpu", "30",
    )  # fmt: skip
    host = hypervisors(sim)["kvm-01"]
    root = host["powercap_root"]
    pids = [p for vm in host["vms"].values() for p in (vm["pid"], *vm["helper_pids"])]

    def reading() -> tuple[float, int, float]:
        # package + dram of the only socket is the whole host when there is no psys
        return (
            time.monotonic(),
            energy(root, "intel-rapl:0") + energy(root, "intel-rapl:0:2"),
            cpu_seconds(pids),
        )

    # The window starts once the ticker writes the counters (it starts with the host).
    first = reading()[1]
    wait_for(lambda: reading()[1] > first, 5.0, "the counters to advance")
    t0, e0, c0 = reading()
    time.sleep(3.0)
    t1, e1, c1 = reading()
    joules = (e1 - e0) / 1e6
    expected = 60 * (t1 - t0) + 30 * (c1 - c0)
    # counters are written every 0.25 s tick: allow a tick of slack at each end, plus 10 %
    slack = 2 * 0.25 * (60 + 30 * 2) + 0.1 * expected
    assert abs(joules - expected) <= slack, (joules, expected, c1 - c0)
    assert joules > 60 * (t1 - t0) * 0.8  # idle power alone is visible


def test_counters_wrap_at_max_energy_range(sim_factory, tmp_path):
    limit = 20_000_000  # 20 J: the package (about 34 W here) wraps well within a second
    sim = sim_factory(
        "--hosts", "1", "--vms-per-host", "1", "--hypervisors", str(tmp_path),
        "--max-energy-range-uj", str(limit),
    )  # fmt: skip
    zone = Path(hypervisors(sim)["kvm-01"]["powercap_root"]) / "intel-rapl:0"
    assert int((zone / "max_energy_range_uj").read_text()) == limit
    values = []
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        values.append(int((zone / "energy_uj").read_text()))
        time.sleep(0.05)
    assert all(0 <= v < limit for v in values)
    assert any(b < a for a, b in zip(values, values[1:], strict=False)), "no wraparound seen"


def test_too_many_burners_is_refused(tmp_path):
    result = run(
        [sys.executable, "-m", "sim", "--hosts", "30", "--vms-per-host", "10",
         "--hypervisors", str(tmp_path)],
    )  # fmt: skip
    assert result.returncode == 2
    assert "300 running VMs is more than the 256 allowed" in result.stderr


def test_unusable_hypervisor_directory_exits_1(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run(
        [sys.executable, "-m", "sim", "--hosts", "1", "--vms-per-host", "1",
         "--hypervisors", str(blocker / "sub"),
         "--listen", f"127.0.0.1:{free_port()}", "--control-listen", f"127.0.0.1:{free_port()}"],
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot start the hypervisors under" in result.stderr
    assert result.stderr.count("\n") == 1
