"""`one-cognit demo`: the stack comes up, the table shows power, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sim.demo import SERVICES
from sim.demo_table import Reading, readings_from_agents, readings_from_exporter, render, vm_rows
from testkit import ROOT, free_port, get_json, wait_for

# VM, name, host, state, power W, energy J, grams of CO2e
ROW = re.compile(
    r"^\s+(\d+)\s+(\S+)\s+(kvm-\d+)\s+(\S+)\s+([\d.]+|\?)\s+([\d.]+|-|\?)\s+([\d.]+|-)$", re.M
)


def session_members(sid: int) -> list[int]:
    """Every live process of session `sid` (the demo and all it started)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def last_frame(text: str) -> list[tuple[str, ...]]:
    frames = text.split("  VM  NAME")
    return ROW.findall(frames[-1]) if len(frames) > 1 else []


def test_demo_runs_the_stack_and_stops_everything_on_sigint(tmp_path):
    base = f"127.0.{random.randint(100, 250)}.1"
    ports = [free_port() for _ in range(7)]
    out = tmp_path / "demo.out"
    argv = [
        sys.executable, "-m", "services.cli", "demo",
        "--listen", f"127.0.0.1:{ports[0]}", "--control-listen", f"127.0.0.1:{ports[1]}",
        "--exporter-listen", f"127.0.0.1:{ports[2]}", "--authd-listen", f"127.0.0.1:{ports[3]}",
        "--geo-listen", f"127.0.0.1:{ports[4]}",
        "--discovery-listen", f"127.0.0.1:{ports[5]}",
        "--prometheus-listen", f"127.0.0.1:{ports[6]}", "--tunnel-port", str(free_port()),
        "--host-ip-base", base, "--agent-port", str(free_port()), "--refresh", "1",
        "--hosts", "2", "--vms-per-host", "2",
    ]  # fmt: skip
    with out.open("wb") as sink:
        demo = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    try:

        def powered() -> list[tuple[str, ...]] | None:
            frame = last_frame(out.read_text())
            rows = [r for r in frame if r[4] != "?" and float(r[4]) > 0]
            return rows if len(frame) == 4 and len(rows) == 4 else None

        rows = wait_for(powered, timeout=60, what="a table with power for every VM")
        assert sorted(int(r[0]) for r in rows) == [0, 1, 2, 3]
        assert {r[3] for r in rows} == {"RUNNING"}
        # From the exporter, each VM's grams of CO2e beside its joules.
        wait_for(
            lambda: (
                len(frame := last_frame(out.read_text())) == 4
                and all(r[6] != "-" and float(r[6]) > 0 for r in frame)
            ),
            timeout=30,
            what="grams of CO2e for every VM",
        )
        # geo located both hosts from their PUBLIC_IPs and the table shows what it wrote
        located = wait_for(
            lambda: re.findall(r"GEOLOCATION (-?\d+\.\d{4},\S+) \((\w\w)\)", out.read_text()),
            timeout=60,
            what="the hosts' GEOLOCATION in the table",
        )
        assert {country for _, country in located[-2:]} == {"SE", "PL"}
        if shutil.which("prometheus"):
            # Prometheus runs with deploy's rules, its targets from discovery's file_sd files.
            prom = f"http://127.0.0.1:{ports[6]}"
            wait_for(
                lambda: (
                    len(
                        {
                            t["labels"]["instance"]
                            for t in get_json(f"{prom}/api/v1/targets")[1]["data"]["activeTargets"]
                            if t["labels"]["job"] == "scaphandre" and t["health"] == "up"
                        }
                    )
                    == 2
                ),
                timeout=60,
                what="Prometheus scraping both hosts' agents",
            )
            wait_for(
                lambda: (
                    len(
                        [
                            t
                            for t in get_json(f"{prom}/api/v1/targets")[1]["data"]["activeTargets"]
                            if t["labels"]["job"] == "one_cognit_tunnel_agent"
                            and t["health"] == "up"
                        ]
                    )
                    == 2
                ),
                timeout=60,
                what="Prometheus scraping both hosts' tunnel agents",
            )
            groups = get_json(f"{prom}/api/v1/rules")[1]["data"]["groups"]
            assert "one-cognit-records" in {g["name"] for g in groups}
            assert "flavour:opennebula_vm_power_watts:sum" in out.read_text()
        text = out.read_text()
        assert f"http://127.0.0.1:{ports[0]}/RPC2" in text
        assert f"http://{base}:" in text  # the first host's agent, on its own address
        workdir = re.search(r"logs in (\S+)/logs", text).group(1)
        members = session_members(demo.pid)
        assert len(members) > 3  # the demo, the simulator, agents, burners...
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    wait_for(lambda: not session_members(demo.pid), timeout=10, what="no process left behind")
    assert not Path(workdir).exists()
    assert "stopping everything" in out.read_text()


def test_demo_duration_flag_and_bad_flags(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sim.demo", "--hosts", "100", "--vms-per-host", "100"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2 and "hosts x vms-per-host <= 64" in result.stderr
    started = time.monotonic()
    ports = [free_port() for _ in range(2)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim.demo",
            "--duration",
            "1",
            "--refresh",
            "0.5",
            "--listen",
            f"127.0.0.1:{ports[0]}",
            "--control-listen",
            f"127.0.0.1:{ports[1]}",
            "--exporter-listen",
            f"127.0.0.1:{free_port()}",
            "--authd-listen",
            f"127.0.0.1:{free_port()}",
            "--geo-listen",
            f"127.0.0.1:{free_port()}",
            "--discovery-listen",
            f"127.0.0.1:{free_port()}",
            "--prometheus-listen",
            f"127.0.0.1:{free_port()}",
            "--tunnel-port",
            str(free_port()),
            "--host-ip-base",
            f"127.0.{random.randint(100, 250)}.1",
            "--agent-port",
            str(free_port()),
            "--hosts",
            "1",
            "--vms-per-host",
            "1",
            "--workdir",
            str(tmp_path / "kept"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "stopping everything" in result.stdout
    assert (tmp_path / "kept" / "logs" / "sim.log").exists()  # --workdir is kept
    assert time.monotonic() - started < 100


def test_every_service_is_in_the_demo():
    names = {s.name for s in SERVICES}
    assert {"rapl_agent", "tunnel_agent", "vm_exporter", "authd", "discovery", "geo"} <= names


def test_table_joins_agents_and_follows_spec_power_semantics():
    vms = [
        {"id": 0, "name": "a", "host": "h1", "state": "ACTIVE", "lcm_state": "RUNNING"},
        {"id": 1, "name": "b", "host": "h1", "state": "POWEROFF", "lcm_state": "LCM_INIT"},
        {"id": 2, "name": "c", "host": "h2", "state": "ACTIVE", "lcm_state": "RUNNING"},
        {"id": 3, "name": "d", "host": "h1", "state": "ACTIVE", "lcm_state": "RUNNING"},
        {"id": 4, "name": "e", "host": None, "state": "DONE", "lcm_state": "LCM_INIT"},
    ]
    agents = readings_from_agents(
        {
            "h1": {
                "host": {"power_uw": 50_000_000, "energy_uj": 1},
                "vms": [{"one_vm_id": 0, "power_uw": 2_500_000, "energy_uj": 7_000_000}],
            },
            "h2": None,  # did not answer
        }
    )
    rows = {r.id: r for r in vm_rows(vms, agents)}
    assert sorted(rows) == [0, 1, 2, 3]  # DONE VMs are gone
    assert (rows[0].power, rows[0].energy) == ("2.50", "7.0")
    assert (rows[1].power, rows[1].state) == ("0.00", "POWEROFF")  # not running: 0 W
    assert rows[2].power == "?"  # agent unreachable: unknown, not zero
    assert rows[3].power == "0.00"  # running but not listed by its agent
    host = {"name": "h1", "address": "x", "vms": 2, "measured_w": 50.0, "model_w": 49.0}
    text = render(list(rows.values()), [host], "agents")
    assert "host h1 (x): 2 VM(s) running, agent 50.0 W, simulated model 49.0 W" in text


def test_table_reads_the_exporter_metrics():
    text = (
        "# HELP opennebula_vm_power_consumption_uW Scaphandre power usage by the VM in uW\n"
        "# TYPE opennebula_vm_power_consumption_uW gauge\n"
        'opennebula_vm_power_consumption_uW{one_vm_id="3"} 1500000.0\n'
        "# HELP opennebula_vm_energy_joules_total Energy\n"
        "# TYPE opennebula_vm_energy_joules_total counter\n"
        'opennebula_vm_energy_joules_total{one_vm_id="3"} 12.5\n'
    )
    assert readings_from_exporter(text) == {3: Reading(1.5, 12.5)}
    vms = [{"id": 3, "name": "x", "host": "h", "state": "ACTIVE", "lcm_state": "RUNNING"}]
    row = vm_rows(vms, exporter=readings_from_exporter(text))[0]
    assert (row.power, row.energy, row.carbon) == ("1.50", "12.5", "-")


def test_table_shows_each_vms_grams_beside_its_joules():
    text = (
        "# TYPE opennebula_vm_energy_joules_total counter\n"
        'opennebula_vm_energy_joules_total{one_vm_id="3"} 3600.0\n'
        "# TYPE opennebula_vm_carbon_grams_total counter\n"
        'opennebula_vm_carbon_grams_total{one_vm_id="3"} 0.040695\n'
    )
    assert readings_from_exporter(text) == {3: Reading(None, 3600.0, 0.040695)}
    vms = [{"id": 3, "name": "x", "host": "h", "state": "ACTIVE", "lcm_state": "RUNNING"}]
    rows = vm_rows(vms, exporter=readings_from_exporter(text))
    assert (rows[0].energy, rows[0].carbon) == ("3600.0", "0.0407")
    frame = render(rows, [], "vm_exporter")
    assert "ENERGY J     CO2e g" in frame and "3600.0     0.0407" in frame


def test_table_shows_where_geo_located_each_host():
    hosts = [
        {"name": "kvm-01", "address": "127.0.1.1", "vms": 0, "measured_w": None, "model_w": 40.0,
         "public_ip": "192.36.148.17", "geolocation": "59.3293,18.0686", "country": "SE"},
        {"name": "kvm-02", "address": "127.0.1.2", "vms": 0, "measured_w": None, "model_w": 40.0,
         "public_ip": "212.77.98.9", "geolocation": "", "country": ""},
        {"name": "kvm-03", "address": "127.0.1.3", "vms": 0, "measured_w": None, "model_w": 40.0},
    ]  # fmt: skip
    text = render([], hosts, "none")
    assert "PUBLIC_IP 192.36.148.17 -> GEOLOCATION 59.3293,18.0686 (SE)" in text
    assert "PUBLIC_IP 212.77.98.9 -> GEOLOCATION ?" in text
    assert text.count("GEOLOCATION") == 2  # no line while geo does not run
