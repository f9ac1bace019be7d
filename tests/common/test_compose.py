"""compose.yaml: every service runs a real console script with flags its --help lists."""

from __future__ import annotations

import re
import shutil
from importlib.metadata import entry_points

import pytest
import yaml

from services.common.config import parse_listen
from testkit import ROOT, VENV_BIN

# SPEC section 1: each service's console script and default listen port.
SPEC_PORTS = {
    "one-rapl-agent": 8080,
    "one-tunnel-agent": 9933,
    "one-vm-exporter": 9925,
    "one-discovery": 9930,
    "one-geo": 9931,
    "one-authd": 9932,
}
PROFILES = {
    "frontend": {"one-vm-exporter", "one-discovery", "one-geo", "one-authd"},
    "host": {"one-rapl-agent", "one-tunnel-agent"},
}

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def _script(service: dict) -> str:
    return service["command"][0]


def test_profiles_hold_the_right_services():
    for profile, scripts in PROFILES.items():
        found = {_script(s) for s in SERVICES.values() if profile in s["profiles"]}
        assert found == scripts


def test_dockerfile_exists_and_installs_the_package():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install" in dockerfile
    for service in SERVICES.values():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"


def _help_of(script: str, capsys: pytest.CaptureFixture[str]) -> str:
    """What `script --help` prints: its installed entry point's `main`, called in-process."""
    (entry,) = entry_points(group="console_scripts", name=script)
    with pytest.raises(SystemExit) as exit_:
        entry.load()(["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_command_is_a_console_script_with_listed_flags(name, capsys):
    service = SERVICES[name]
    script = _script(service)
    path = VENV_BIN / script
    assert path.exists() or shutil.which(script), f"{script} is not an installed console script"
    help_text = _help_of(script, capsys)
    for flag in (a for a in service["command"][1:] if a.startswith("--")):
        assert flag.split("=")[0] in help_text, f"{name}: {flag} not in {script} --help"
    listen = None
    args = service["command"]
    if "--listen" in args:
        listen = parse_listen(args[args.index("--listen") + 1])
    else:
        match = re.search(r"--listen HOST:PORT\s.*?\(default:\s+(\S+?)\)", help_text, re.S)
        if match:
            listen = parse_listen(match.group(1))
    if listen is not None:
        assert listen.port == SPEC_PORTS[script]
    for mapping in service.get("ports", []):
        host_port, _, container_port = str(mapping).rpartition(":")
        assert int(container_port) == SPEC_PORTS[script] == int(host_port)
    if service.get("network_mode") == "host":
        assert "ports" not in service, "ports mean nothing with network_mode: host"


def test_host_profile_mounts_and_privileges():
    rapl = next(s for s in SERVICES.values() if _script(s) == "one-rapl-agent")
    assert rapl["pid"] == "host"
    assert all(v.endswith(":ro") for v in rapl["volumes"])
    assert any(v.startswith("/sys/class/powercap:") for v in rapl["volumes"])
    assert any(v.startswith("/proc:") for v in rapl["volumes"])
    tunnel = next(s for s in SERVICES.values() if _script(s) == "one-tunnel-agent")
    assert tunnel["network_mode"] == "host" and "NET_ADMIN" in tunnel["cap_add"]
    # It refuses to start without a token: the one the migrate shim reads by default.
    assert tunnel["command"][1:] == ["--token-file", "/etc/one-cognit/token"]
    assert "/etc/one-cognit/token:/etc/one-cognit/token:ro" in tunnel["volumes"]
