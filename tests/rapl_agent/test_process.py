"""What only a real agent process shows: its address and port, signals, flags, exit codes."""

from __future__ import annotations

import signal

import pytest

from services.rapl_agent.__main__ import main
from sim.hypervisor import SimHypervisor
from testkit import VENV_BIN, free_port, run
from tests.rapl_agent.live import Agent, agent_argv


def test_agents_per_simulated_host_on_their_own_loopback_address_stop_on_sigterm(
    tmp_path, start_service
):
    port = free_port()
    with (
        SimHypervisor(tmp_path / "a", name="a") as a,
        SimHypervisor(tmp_path / "b", name="b") as b,
    ):
        a.start_vm(11, cpu_fraction=0.1, helpers=0)
        b.start_vm(12, cpu_fraction=0.1, helpers=0)
        b.start_vm(13, cpu_fraction=0.1, helpers=0)
        # Both processes start at once (start-up is most of this test's time), then are awaited.
        argv_a, base_a = agent_argv(a.powercap_root, a.proc_root, host="127.0.1.1", port=port)
        argv_b, base_b = agent_argv(b.powercap_root, b.proc_root, host="127.0.1.2", port=port)
        services = start_service(argv_a), start_service(argv_b)
        agent_a, agent_b = Agent(services[0], base_a), Agent(services[1], base_b)
        _, body_a = agent_a.json("/api/v1/vms")
        _, body_b = agent_b.json("/api/v1/vms")
        assert [v["one_vm_id"] for v in body_a["vms"]] == [11]
        assert [v["one_vm_id"] for v in body_b["vms"]] == [12, 13]
        for service in services:
            service.proc.send_signal(signal.SIGTERM)
        assert [service.proc.wait(10) for service in services] == [0, 0]


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


def test_help_lists_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in [
        ("--powercap-root", "/sys/class/powercap"),
        ("--proc-root", "/proc"),
        ("--interval", "2.0"),
        ("--listen", "0.0.0.0:8080"),
        ("--max-cmdline", "512"),
    ]:
        assert flag in text and f"(default: {default})" in text
