"""Debian's real Prometheus for tests and benchmarks: own config, storage and port, stopped after.

with RealPrometheus(workdir, config_path) as prom:
    prom.wait_targets(lambda targets: ...)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testkit import Service, free_port, http, wait_for

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


class RealPrometheus:
    """A Prometheus process (`--web.enable-lifecycle`) reading `config`, storing in `workdir`."""

    def __init__(
        self, workdir: Path, config: Path, *, lifecycle: bool = True, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        if lifecycle:
            argv.append("--web.enable-lifecycle")
        self.service = Service(argv)
        wait_for(lambda: self._status("/-/ready") == 200, timeout=30, what="Prometheus /-/ready")

    def _status(self, path: str) -> int:
        if self.service.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.service.output()[1][-2000:]}")
        try:
            return http("GET", self.url + path, timeout=2)[0]
        except OSError:
            return 0

    def targets(self) -> list[dict[str, Any]]:
        """`activeTargets` of `/api/v1/targets`."""
        status, _, body = http("GET", self.url + "/api/v1/targets?state=active", timeout=5)
        assert status == 200, body
        return json.loads(body)["data"]["activeTargets"]

    def job_targets(self, job: str) -> dict[str, dict[str, str]]:
        """{address: labels} of one job's active targets."""
        return {
            t["labels"]["instance"]: t["labels"]
            for t in self.targets()
            if t["labels"].get("job") == job
        }

    def wait_targets(
        self, check: Callable[[list[dict[str, Any]]], Any], timeout: float = 15.0, what: str = ""
    ) -> Any:
        """Poll the targets API until `check(activeTargets)` is truthy."""
        return wait_for(lambda: check(self.targets()), timeout=timeout, what=what or "targets")

    def close(self) -> None:
        self.service.close()

    def __enter__(self) -> RealPrometheus:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
