"""End to end with Debian's real Prometheus: the simulator fires the registered hook templates,
which run the real shims, which tell one-discovery (a real process), which writes what
Prometheus reads. Every target is a loopback address."""

from __future__ import annotations

import yaml

from testkit import get_json, http, wait_for
from testkit.prometheus import RealPrometheus
from tests.discovery.conftest import FLEET, discovery_env, register_hooks, start_sim

# What the fixture fleet must show in Prometheus: address -> labels discovery sets.
SR_EXPORTER = {
    "127.0.21.1:9100": {
        "one_vm_id": "1",
        "one_vm_name": "web-1",
        "one_host_id": "0",
        "service_id": "3",
        "role_name": "web",
        "flavour": "4",
    },
    "[::1]:9101": {"one_vm_id": "2", "one_vm_name": "v6-2", "one_host_id": "1"},
    "127.0.21.33:9200": {"one_vm_id": "3", "one_vm_name": "explicit-3", "one_host_id": "0"},
    "[::1]:9201": {"one_vm_id": "3", "one_vm_name": "explicit-3", "one_host_id": "0"},
}
SCAPHANDRE = {
    "127.0.20.1:8080": {"one_host_id": "0", "one_host_name": "kvm-a", "one_cluster_id": "0"},
    "127.0.20.2:8080": {"one_host_id": "1", "one_host_name": "kvm-b", "one_cluster_id": "0"},
    "127.0.20.4:8080": {"one_host_id": "3", "one_host_name": "kvm-d", "one_cluster_id": "0"},
}
MODE_FLAGS = {
    "file_sd": [],
    "http_sd": ["--http-sd-refresh", "1"],
    "static": [],
}


def fast(config_path) -> None:
    """Scrape every second (the operator's file otherwise untouched)."""
    text = config_path.read_text().replace("scrape_interval:     15s", "scrape_interval:     1s")
    config_path.write_text(text)


OURS = (
    "one_vm_id",
    "one_vm_name",
    "one_host_id",
    "service_id",
    "role_name",
    "flavour",
    "one_host_name",
    "one_cluster_id",
)


def shown(prom: RealPrometheus, job: str) -> dict[str, dict[str, str]]:
    """{address: discovery's labels} of a job's active targets in Prometheus."""
    return {
        address: {k: v for k, v in labels.items() if k in OURS}
        for address, labels in prom.job_targets(job).items()
    }


def each_mode_brings_the_cloud_into_prometheus_and_hooks_take_vms_out(setup, tmp_path, mode):
    fast(setup.prometheus_config)
    comments = [line for line in setup.prometheus_config.read_text().splitlines() if "#" in line]
    sim = start_sim(tmp_path, "--fleet", str(FLEET), env=discovery_env(setup.url))
    try:
        register_hooks(sim)
        with RealPrometheus(tmp_path, setup.prometheus_config) as prom:
            discovery = setup.start(
                sim,
                "--mode",
                mode,
                "--reload",
                "http",
                "--prometheus-url",
                prom.url,
                *MODE_FLAGS[mode],
            )
            try:
                wait_for(
                    lambda: shown(prom, "sr_exporter") == SR_EXPORTER,
                    timeout=20,
                    what=f"{mode}: the VMs' exporters in Prometheus",
                )
                wait_for(
                    lambda: shown(prom, "scaphandre") == SCAPHANDRE,
                    timeout=10,
                    what=f"{mode}: the hosts' agents in Prometheus",
                )
                assert set(prom.job_targets("one_vm_exporter")) == {"127.0.0.1:9925"}
                # The operator's jobs and comments are still there.
                assert set(prom.job_targets("prometheus")) == {"localhost:9090"}
                assert set(prom.job_targets("node")) == {"localhost:9100"}
                text = setup.prometheus_config.read_text()
                assert all(line in text.splitlines() for line in comments)

                # Hooks: powered off and terminated VMs leave Prometheus within 10 s.
                assert sim.control("POST", "/v1/vms/1/poweroff")[0] == 200
                assert sim.control("POST", "/v1/vms/3/terminate")[0] == 200
                wait_for(
                    lambda: set(prom.job_targets("sr_exporter")) == {"[::1]:9101"},
                    timeout=10,
                    what=f"{mode}: VMs 1 and 3 gone from Prometheus",
                )
                # Back to RUNNING through the RUNNING hook.
                assert sim.control("POST", "/v1/vms/1/resume")[0] == 200
                wait_for(
                    lambda: "127.0.21.1:9100" in prom.job_targets("sr_exporter"),
                    timeout=10,
                    what=f"{mode}: VM 1 back",
                )
                status, execs = sim.control("GET", "/v1/hooks/executions")
                assert execs["executions"] and all(e["code"] == 0 for e in execs["executions"]), (
                    execs
                )
                status, metrics = get_json(setup.url + "/v1/targets")
                assert metrics["synced"]
            finally:
                code = discovery.stop()
                discovery.close()
                assert code == 0
    finally:
        sim.service.close()


# Each test below starts its own simulator, discovery and Prometheus and mostly waits on
# Prometheus' 5 s discovery updates; a class each lets `make test` (pytest-xdist, --dist
# loadscope) run them on separate workers at once.


class TestFileSd:
    def test_the_cloud_comes_into_prometheus_and_hooks_take_vms_out(self, setup, tmp_path):
        each_mode_brings_the_cloud_into_prometheus_and_hooks_take_vms_out(
            setup, tmp_path, "file_sd"
        )


class TestHttpSd:
    def test_the_cloud_comes_into_prometheus_and_hooks_take_vms_out(self, setup, tmp_path):
        each_mode_brings_the_cloud_into_prometheus_and_hooks_take_vms_out(
            setup, tmp_path, "http_sd"
        )


class TestStatic:
    def test_the_cloud_comes_into_prometheus_and_hooks_take_vms_out(self, setup, tmp_path):
        each_mode_brings_the_cloud_into_prometheus_and_hooks_take_vms_out(setup, tmp_path, "static")


class TestReconcileAlone:
    def test_without_hooks_the_reconcile_removes_a_stopped_vm(self, setup, tmp_path):
        without_hooks_the_reconcile_removes_a_stopped_vm(setup, tmp_path)


class TestReloads:
    def test_reload_failures_say_what_to_do_and_are_retried(self, setup, tmp_path, sim):
        reload_failures_say_what_to_do_and_are_retried(setup, tmp_path, sim)


def without_hooks_the_reconcile_removes_a_stopped_vm(setup, tmp_path):
    fast(setup.prometheus_config)
    sim = start_sim(tmp_path, "--fleet", str(FLEET))
    try:
        with RealPrometheus(tmp_path, setup.prometheus_config) as prom:
            discovery = setup.start(
                sim, "--reconcile-interval", "2", "--reload", "http", "--prometheus-url", prom.url
            )
            try:
                wait_for(lambda: "[::1]:9101" in prom.job_targets("sr_exporter"), timeout=20)
                assert sim.control("POST", "/v1/vms/2/suspend")[0] == 200
                wait_for(
                    lambda: "[::1]:9101" not in (setup.sd_dir / "sr_exporter.json").read_text(),
                    timeout=2 + 2,
                    what="the reconcile to drop VM 2 from sr_exporter.json",
                )
                wait_for(
                    lambda: "[::1]:9101" not in prom.job_targets("sr_exporter"),
                    timeout=10,
                    what="VM 2 gone from Prometheus",
                )
            finally:
                discovery.close()
    finally:
        sim.service.close()


def reload_failures_say_what_to_do_and_are_retried(setup, tmp_path, sim):
    fast(setup.prometheus_config)
    with RealPrometheus(tmp_path, setup.prometheus_config, lifecycle=False) as prom:
        discovery = setup.start(sim, "--reload", "http", "--prometheus-url", prom.url)
        try:
            status, health = wait_for(
                lambda: (
                    (h := get_json(setup.url + "/healthz"))[1].get("failing", {}).get("reload")
                    and h
                ),
                timeout=20,
            )
            assert status == 503
            assert "--web.enable-lifecycle" in health["failing"]["reload"]
        finally:
            discovery.close()
    # Prometheus down during the reload: the file is written, the reload is retried at each
    # reconcile and succeeds once Prometheus is back on its port.
    setup.prometheus_config.write_text(
        yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": []})
    )
    discovery = setup.start(
        sim, "--reload", "http", "--prometheus-url", prom.url, "--reconcile-interval", "1"
    )
    try:
        reason = wait_for(
            lambda: get_json(setup.url + "/healthz")[1].get("failing", {}).get("reload"),
            timeout=20,
        )
        assert "cannot reach Prometheus" in reason
        assert "sr_exporter.json" in setup.prometheus_config.read_text()
        with RealPrometheus(tmp_path / "again", setup.prometheus_config, port=prom.port):
            wait_for(lambda: get_json(setup.url + "/healthz")[0] == 200, timeout=20)
        _, _, text = http("GET", setup.url + "/metrics")
        assert 'one_cognit_discovery_reloads_total{result="ok"} 1.0' in text.decode()
        assert 'one_cognit_discovery_reloads_total{result="failed"}' in text.decode()
    finally:
        discovery.close()
