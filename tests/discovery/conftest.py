"""discovery's test cloud: the simulator (with hooks that run the real shims), discovery
in-process on a real port, and the helpers to build its config."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

import testkit.sim
from services.common.config import load_config
from services.discovery.app import DISCOVERY, create_app
from services.discovery.config import DiscoveryConfig
from services.discovery.service import Discovery
from testkit import ROOT, Service, free_port
from testkit.sim import Sim

FIXTURES = ROOT / "tests" / "fixtures" / "discovery"
FLEET = FIXTURES / "fleet.yaml"
DEBIAN_CONFIG = FIXTURES / "debian-prometheus.yml"
SHIMS = ROOT / "services" / "discovery" / "shim"
HOOKS = ROOT / "deploy" / "one" / "hooks"


def hook_dir(tmp: Path) -> Path:
    """A --hook-dir laid out as on a frontend: one-cognit/discovery_{vm,host}_hook."""
    base = tmp / "remotes-hooks"
    (base / "one-cognit").mkdir(parents=True, exist_ok=True)
    for kind in ("vm", "host"):
        link = base / "one-cognit" / f"discovery_{kind}_hook"
        if not link.exists():
            link.symlink_to(SHIMS / f"{kind}_hook")
    return base


def start_sim(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Sim:
    """The simulator on free ports with `--hook-dir` set up; `env` reaches the hooks it runs."""
    return testkit.sim.start_sim("--hook-dir", str(hook_dir(tmp)), *args, env=env)


def register_hooks(sim: Sim) -> list[int]:
    """Every template of deploy/one/hooks, registered through the API as an operator would."""
    one = sim.one()
    return [one.hook.allocate(path.read_text()) for path in sorted(HOOKS.glob("discovery-*.hook"))]


@dataclass
class Setup:
    """Paths of one test's discovery: its prometheus.yml, sd-dir and oned auth file."""

    tmp: Path
    prometheus_config: Path
    sd_dir: Path
    auth: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, sim: Sim | None, *args: str, rpc: str | None = None) -> DiscoveryConfig:
        argv = self.argv(sim, *args, rpc=rpc)
        return load_config(DiscoveryConfig, argv, prog="one-discovery", description="test")

    def argv(self, sim: Sim | None, *args: str, rpc: str | None = None) -> list[str]:
        """discovery's flags for this test (later flags win, as argparse does)."""
        return [
            "--one-xmlrpc",
            rpc or (sim.rpc_url if sim else "http://127.0.0.1:9/RPC2"),
            "--one-auth",
            str(self.auth),
            "--one-timeout",
            "5",
            "--prometheus-config",
            str(self.prometheus_config),
            "--sd-dir",
            str(self.sd_dir),
            "--reload",
            "none",
            "--vm-exporter",
            "127.0.0.1:9925",
            "--reconcile-interval",
            "600",
            "--listen",
            f"127.0.0.1:{self.port}",
            *args,
        ]

    def start(self, sim: Sim | None, *args: str) -> Service:
        """discovery as a real process (`python -m services.discovery`), once it answers."""
        service = Service([sys.executable, "-m", "services.discovery", *self.argv(sim, *args)])
        service.wait_http(self.url + "/healthz", timeout=30)
        return service


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    config = tmp_path / "prometheus" / "prometheus.yml"
    config.parent.mkdir()
    shutil.copy(DEBIAN_CONFIG, config)
    auth = tmp_path / "one_auth"
    auth.write_text("oneadmin:opennebula\n")
    return Setup(tmp_path, config, tmp_path / "sd", auth, free_port())


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    """The test fleet, no hooks (tests that need hooks start their own with the env)."""
    started = start_sim(tmp_path, "--fleet", str(FLEET))
    yield started
    started.service.close()


@contextlib.asynccontextmanager
async def serving(config: DiscoveryConfig) -> AsyncIterator[tuple[str, Discovery]]:
    """discovery in-process, listening on config.listen; (base URL, core)."""
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, config.listen.host, config.listen.port)
    await site.start()
    try:
        yield f"http://{config.listen}", app[DISCOVERY]
    finally:
        await runner.cleanup()


def discovery_env(url: str, **extra: str) -> dict[str, str]:
    """The environment the simulator passes to the hooks it runs."""
    env = {"ONE_COGNIT_DISCOVERY_URL": url, "ONE_COGNIT_DISCOVERY_TOKEN_FILE": ""}
    env.update(extra)
    return env
