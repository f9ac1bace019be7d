"""What only a real authd process shows: signals, exit codes, flags, --help."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.authd.__main__ import DESCRIPTION
from services.authd.config import AuthdConfig
from services.common.config import load_config
from services.common.errors import ConfigError
from testkit import run, wait_for

from .conftest import AUTHD, expiring, start_process


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()}


def test_sigterm_stops_workers_and_exits_0(tmp_path, keys):
    server = start_process(tmp_path)
    try:
        pid = server.service.proc.pid
        workers = wait_for(lambda: children(pid) if len(children(pid)) == 3 else None)
        assert server.login("alice", keys.hex, expiring(keys))[0] == 200
        assert server.service.stop() == 0
        for worker in workers:
            gone = Path(f"/proc/{worker}")
            wait_for(lambda g=gone: not g.exists(), what=f"worker {worker} gone")
    finally:
        server.service.close()


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--datalog-max-time", "0.001"], "--datalog-max-time must be at least 0.01"),
        (["--datalog-max-facts", "10"], "--datalog-max-facts must be at least 1000"),
        (["--datalog-max-iterations", "5"], "--datalog-max-iterations must be at least 100"),
        (["--verify-cpu-limit", "0.02"], "--verify-cpu-limit must be at least twice"),
        (["--workers", "0"], "--workers must be between 1 and 64"),
        (["--datalog-max-time", "nan"], "--datalog-max-time must be a finite number"),
        (["--verify-cpu-limit", "inf"], "--verify-cpu-limit must be a finite number"),
        (["--user-workers", "3"], "--user-workers must be between 1 and --workers"),
        (["--queue", "0"], "--queue must be between 1 and 100000"),
        (["--queue", "8", "--user-queue", "9"], "--user-queue must be between 1 and --queue"),
        (["--blown-token-ttl", "-1"], "--blown-token-ttl must be 0 or more seconds"),
        (["--blown-token-ttl", "nan"], "--blown-token-ttl must be a finite number"),
    ],
)
def test_bad_flags_are_refused(flags, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        load_config(AuthdConfig, flags, prog="one-authd", description=DESCRIPTION)


def test_a_bad_flag_exits_2_with_one_line():
    result = run([*AUTHD, "--workers", "0"])
    assert result.returncode == 2
    assert "--workers must be between 1 and 64" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_lists_flags_and_sub_commands():
    result = run([*AUTHD, "--help"])
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for needle in (
        "--revocation-file",
        "--datalog-max-time",
        "--user-workers",
        "--blown-token-ttl",
        "(default: 127.0.0.1:9932)",
        "keygen",
        "token --private-key-file",
        "inspect TOKEN",
    ):
        assert needle in text
