"""`promtool check metrics` on what a live agent exposes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from sim.hypervisor import SimHypervisor
from tests.rapl_agent.live import running_agent

PROMTOOL = shutil.which("promtool")
# Scaphandre's names that SPEC section 5 fixes: promtool's lint wants joules, not microjoules.
# That lint (and only it) is accepted, for exactly these names; anything else fails the test.
FIXED_NAMES = {
    "scaph_host_energy_microjoules",
    "scaph_socket_energy_microjoules",
    "scaph_domain_energy_microjoules",
}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (make test installs it)")
async def test_promtool_check_metrics(tmp_path):
    with SimHypervisor(tmp_path, sockets=2, psys=True) as hv:
        hv.start_vm(42, cpu_fraction=0.2, helpers=2)
        # The whole /proc: every kind of comm and cmdline this machine has goes through.
        async with running_agent(hv.powercap_root, "/proc", interval=0.2) as agent:
            await agent.snapshots(1)
            status, body = await agent.get("/metrics")
    assert status == 200
    assert b'vmname="one-42"' in body and b"scaph_process_power_consumption_microwatts{" in body
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    problems = [
        line for line in (result.stdout + result.stderr).decode().splitlines() if line.strip()
    ]
    unexpected = [
        line
        for line in problems
        if not (
            line.split()[0] in FIXED_NAMES
            and line.endswith('use base unit "joules" instead of "microjoules"')
        )
    ]
    assert unexpected == [], result
    assert {line.split()[0] for line in problems} == FIXED_NAMES
