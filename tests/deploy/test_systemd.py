"""deploy/systemd: one unit per service, least privilege, accepted by systemd-analyze."""

from __future__ import annotations

import re
import shutil
import tomllib

import pytest

from services.install.table import ITEMS, SERVICES, UNIT_BIN, render_unit, unit_name
from testkit import ROOT, VENV_BIN, run

UNITS = ROOT / "deploy" / "systemd"
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
ALL = [s for role in SERVICES.values() for s in role]
CAPABILITIES = {"rapl_agent": "CAP_DAC_READ_SEARCH", "tunnel_agent": "CAP_NET_ADMIN"}
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(not SYSTEMD_ANALYZE, reason="systemd-analyze is not installed")


def directives(text: str) -> dict[str, list[str]]:
    """Key -> every value it is given (systemd keys may repeat), comments dropped."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def rendered(tmp_path):
    """Every unit as install writes it, programs taken from this checkout's venv."""
    for service in ALL:
        name = unit_name(service) + ".service"
        text = render_unit((UNITS / name).read_text(), str(VENV_BIN))
        (tmp_path / name).write_text(text)
    return sorted(tmp_path.glob("*.service"))


def test_one_unit_per_service_and_install_places_each():
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(
        unit_name(s) + ".service" for s in ALL
    )
    units = {i.service: i for i in ITEMS if i.unit}
    assert set(units) == set(ALL)
    for role, services in SERVICES.items():
        assert {units[s].role for s in services} == {role}


@pytest.mark.parametrize("service", ALL)
def test_unit_runs_its_console_script_with_least_privilege(service):
    unit = directives((UNITS / f"{unit_name(service)}.service").read_text())
    program = unit["ExecStart"][0].split()[0]
    assert program == UNIT_BIN + unit_name(service) and unit_name(service) in SCRIPTS
    assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["yes"]
    for hardening in ("PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                      "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID",
                      "LockPersonality", "MemoryDenyWriteExecute"):  # fmt: skip
        assert unit[hardening] == ["yes"], hardening
    # Its own user: a transient one, or oneadmin for discovery (it writes oneadmin's
    # Prometheus configuration); never root.
    assert unit.get("DynamicUser") == ["yes"] or unit.get("User") == ["oneadmin"]
    assert "root" not in unit.get("User", [])
    wanted = CAPABILITIES.get(service, "")
    assert unit["CapabilityBoundingSet"] == [wanted]
    assert unit.get("AmbientCapabilities", [""]) == [wanted]
    assert unit["SystemCallFilter"] == ["@system-service", "~@privileged"]


def test_render_points_every_program_at_the_bin_dir():
    text = (UNITS / "one-rapl-agent.service").read_text()
    assert "ExecStart=/srv/venv/bin/one-rapl-agent\n" in render_unit(text, "/srv/venv/bin/")
    assert render_unit(text, "/srv/venv/bin") == render_unit(text, "/srv/venv/bin/")


@needs_systemd
def test_systemd_analyze_verify_accepts_every_unit(tmp_path):
    units = rendered(tmp_path)
    result = run([SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, units)], timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stdout + result.stderr
    # And it does fail on a broken unit (the check is real).
    (tmp_path / "one-broken.service").write_text("[Service]\nExecStart=/nonexistent/x\n")
    bad = run([SYSTEMD_ANALYZE, "verify", "--man=no", str(tmp_path / "one-broken.service")])
    assert bad.returncode != 0


def exposure(path) -> float | None:
    result = run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(path)], timeout=60
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    return float(match.group(1)) if match else None


@needs_systemd
def test_security_scores_are_low_and_the_readme_gives_them(tmp_path):
    units = rendered(tmp_path)
    scores = {p.stem: exposure(p) for p in units}
    if None in scores.values():
        pytest.skip("this systemd-analyze has no --offline=yes")
    readme = (ROOT / "README.md").read_text()
    for name, score in scores.items():
        assert score <= 2.5, (name, score)  # systemd calls < 4.0 "OK"; root services score ~9.6
        assert re.search(rf"\| `{name}` \|[^\n]*\| {score} \|", readme), (name, score)
