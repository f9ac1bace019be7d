"""The dashboard and the rules proven on data: the simulated cloud (sim with hypervisors, a
rapl_agent per host, vm_exporter, authd), one-discovery in file_sd mode giving Debian's real
Prometheus its targets as on a real cloud, deploy's rules loaded; every
panel's query and every recording rule through /api/v1/query, then an alert driven to firing
by stopping a host's agent. Tests run in file order on one stack; the last one breaks it.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from pathlib import Path

import pytest
import yaml

from testkit import ROOT, free_port, http, wait_for
from testkit.cloud import Cloud
from testkit.prometheus import RealPrometheus

DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "one-cognit-power.json").read_text())
RULES = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules" / "one-cognit.yml").read_text())
TUNNEL_JOB = ROOT / "deploy" / "prometheus" / "tunnel_agent.yml"
NET = "127.0.81"
HOSTS = {"kvm-a": f"{NET}.1", "kvm-b": f"{NET}.2"}
NOBODY = f"{NET}.100:9"  # where the Serverless Runtimes' exporters would be: nothing listens
FLEET = {
    "hosts": [{"name": name, "hostname": addr} for name, addr in HOSTS.items()],
    "vms": [
        {"id": 1, "name": "sr-1", "host": "kvm-a", "cpu_fraction": 0.15,
         "user_template": {"FLAVOURS": 4, "SERVICE_ID": 12, "ROLE_NAME": "web",
                           "PROMETHEUS_EXPORTER": NOBODY}},
        {"id": 2, "name": "sr-2", "host": "kvm-a", "cpu_fraction": 0.1,
         "user_template": {"FLAVOURS": 4, "SERVICE_ID": 13, "ROLE_NAME": "web",
                           "PROMETHEUS_EXPORTER": NOBODY}},
        {"id": 3, "name": "sr-3", "host": "kvm-b", "cpu_fraction": 0.2,
         "user_template": {"FLAVOURS": 8, "SERVICE_ID": 12, "ROLE_NAME": "db",
                           "PROMETHEUS_EXPORTER": NOBODY}},
        {"id": 4, "name": "plain-4", "host": "kvm-b", "cpu_fraction": 0.05},
        {"id": 5, "name": "off-5", "host": "kvm-b", "state": "poweroff"},
    ],
}  # fmt: skip
RUNNING = {"1", "2", "3", "4"}
# Panels that show problems only (no series while all is well): checked once one is made.
PROBLEMS_ONLY = {"Agents vm_exporter could not read"}
# Grafana's variables, as a dashboard user with everything selected would send them.
GRAFANA_VARS = {
    "$one_host_id": ".*",
    "$one_vm_id": ".*",
    "$__rate_interval": "10s",
    "$__range": "2m",
    "$__interval": "5s",
}
# What a value may be, by the panel's unit (the simulated hosts draw 40 W idle + 15 W per CPU).
PLAUSIBLE = {
    "watt": (0, 500),
    "watth": (0, 50),
    "massg": (0, 1e4),
    "s": (0, 30),
    "short": (0, 1e4),
}


def quick_rules(path: Path) -> None:
    """deploy's rules, expressions untouched, with `for:` at 1 s so an alert fires in a test
    (the durations themselves are promtool-tested in test_rules.py)."""
    rules = json.loads(json.dumps(RULES))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path.write_text(yaml.safe_dump(rules))


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.cloud = Cloud(tmp, FLEET, HOSTS, authd=True)
        self.prometheus: RealPrometheus | None = None
        try:
            quick_rules(tmp / "rules.yml")
            config = tmp / "prometheus.yml"
            discovery_port = free_port()
            # The hosts' tunnel agents, scraped as deploy/prometheus/tunnel_agent.yml says:
            # discovery's host list with the port swapped.
            tunnel_port = self.cloud.start_tunnel_agents()
            tunnel_job = yaml.safe_load(TUNNEL_JOB.read_text())[0]
            tunnel_job["file_sd_configs"][0]["files"] = [str(tmp / "sd" / "scaphandre.json")]
            tunnel_job["relabel_configs"][0]["replacement"] = f"${{1}}:{tunnel_port}"
            own_jobs = {
                "one_cognit_authd": self.cloud.authd_url.split("//")[1],
                "one_cognit_discovery": f"127.0.0.1:{discovery_port}",
            }
            # The operator's part; discovery adds its jobs (file_sd) to this file.
            config.write_text(
                "# the test's Prometheus\n"
                + yaml.safe_dump(
                    {
                        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                                   "evaluation_interval": "1s"},
                        "rule_files": [str(tmp / "rules.yml")],
                        "scrape_configs": [
                            {"job_name": job, "static_configs": [{"targets": [target]}]}
                            for job, target in own_jobs.items()
                        ] + [tunnel_job],
                    }
                )
            )  # fmt: skip
            self.cloud.start_discovery(config, port=discovery_port)
            wait_for(
                lambda: (
                    {"scaphandre", "sr_exporter", "one_vm_exporter"}
                    <= {j["job_name"] for j in yaml.safe_load(config.read_text())["scrape_configs"]}
                    and len(json.loads((tmp / "sd" / "scaphandre.json").read_text())) == 2
                ),
                what="discovery to write prometheus.yml and the file_sd files",
            )
            self.prometheus = RealPrometheus(tmp, config)
        except BaseException:
            self.close()
            raise

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant query's result; AssertionError (wait_for: not yet) when it fails."""
        assert self.prometheus is not None
        url = f"{self.prometheus.url}/api/v1/query?query={urllib.parse.quote(expr)}"
        if at is not None:
            url += f"&time={at}"
        status, _, body = http("GET", url, timeout=10)
        assert status == 200, f"{expr}: HTTP {status}: {body[:300]!r}"
        reply = json.loads(body)
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def values(self, expr: str) -> dict[str, float]:
        """{labels as text: value} of an instant query."""
        return {
            ",".join(f"{k}={v}" for k, v in sorted(r["metric"].items())): float(r["value"][1])
            for r in self.query(expr)
        }

    def by(self, expr: str, label: str, at: float | None = None) -> dict[str, float]:
        """{value of `label`: value} of an instant query."""
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr, at)}

    def exported(self) -> set[str]:
        """Every metric name Prometheus has stored."""
        assert self.prometheus is not None
        status, _, body = http("GET", f"{self.prometheus.url}/api/v1/label/__name__/values")
        assert status == 200
        return set(json.loads(body)["data"])

    def close(self) -> None:
        if self.prometheus is not None:
            self.prometheus.close()
        self.cloud.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("live"))
    try:
        # Enough data for rates and for every recording rule fed by present metrics.
        wait_for(
            lambda: (
                len(s.values("increase(opennebula_vm_energy_joules_total[1m]) > 0")) >= 4
                and len(s.values("flavour:opennebula_vm_power_watts:sum")) == 3
                and len(s.values("service_id:opennebula_vm_power_watts:sum")) == 2
                and len(s.values('up{job="scaphandre"} == 1')) == 2
            ),
            timeout=60,
            what="Prometheus to hold energy increases and recording rules",
        )
        yield s
    finally:
        s.close()


def grafana(expr: str) -> str:
    for name, value in GRAFANA_VARS.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


RECORDS = {r["record"]: r["expr"] for g in RULES["groups"] for r in g["rules"] if "record" in r}


def metric_names(expr: str) -> set[str]:
    """The exported metrics a query reads, through the recording rules it uses."""
    # Whole names only: not the middle of a recording rule's `level:metric:operation`.
    names = set(re.findall(r"(?<![:\w])(?:opennebula|one_cognit|scaph)_\w+(?![:\w])", expr))
    for record, rule in RECORDS.items():
        if record in expr:
            names |= metric_names(rule)
    return names


def panel_targets() -> list[tuple[dict, dict]]:
    return [(p, t) for p in DASHBOARD["panels"] if p["type"] != "row" for t in p["targets"]]


def test_dashboard_is_importable_as_upstreams_are():
    assert [i["name"] for i in DASHBOARD["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert {"one_host_id", "one_vm_id"} <= set(variables)
    # Also provisioned from a file (no import step): a data-source variable fills it in.
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["one_host_id"]["query"]["query"].endswith(", one_host_id)")
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)) and DASHBOARD["uid"] == "one-cognit-power"
    kinds = {r["id"] for r in DASHBOARD["__requires"] if r["type"] == "panel"}
    assert kinds == {p["type"] for p in DASHBOARD["panels"] if p["type"] != "row"}
    for panel, target in panel_targets():
        assert (
            panel["datasource"]
            == target["datasource"]
            == {
                "type": "prometheus",
                "uid": "${DS_PROMETHEUS}",
            }
        )
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    titles = " | ".join(p["title"] for p in DASHBOARD["panels"])
    for needed in ("Cloud power", "Top 10 VMs by power", "Hosts: power beside VMs and CPU",
                   "flavour", "OneFlow service", "Power agents", "RAPL", "CO2e per flavour",
                   "CO2e per OneFlow service", "grid intensity, its source"):  # fmt: skip
        assert needed in titles, needed


def test_every_panel_query_returns_plausible_series(stack):
    for panel, target in panel_targets():
        expr = grafana(target["expr"])
        if panel["title"] in PROBLEMS_ONLY:
            continue
        low, high = PLAUSIBLE[panel["fieldConfig"]["defaults"]["unit"]]
        result = wait_for(
            lambda expr=expr: stack.values(expr),
            timeout=20,
            what=f"data for panel {panel['title']!r}: {expr}",
        )
        for labels, value in result.items():
            assert math.isfinite(value) and low <= value <= high, (panel["title"], labels, value)


def test_panels_show_the_cloud_as_it_is(stack):
    hosts = stack.by("opennebula_host_power_consumption_uW / 1e6", "one_host_id")
    assert set(hosts) == {"0", "1"} and all(10 <= w <= 120 for w in hosts.values()), hosts
    top = stack.by("topk(10, opennebula_vm_power_consumption_uW / 1e6)", "one_vm_id")
    assert set(top) == RUNNING | {"5"} and top["5"] == 0  # powered off: 0 W, not absent
    assert all(top[v] > 0 for v in RUNNING), top
    assert stack.by("opennebula_host_vms", "one_host_id") == {"0": 2, "1": 3}


def recorded_as_computed(stack, record: str, label: str) -> dict[str, float]:
    """A recording rule's last samples, checked equal to its expression evaluated at the
    same instant (from the same stored scrapes)."""
    result = stack.query(f"timestamp({record})")
    assert result, f"{record}: no samples"
    at = float(result[0]["value"][1])
    recorded = stack.by(record, label, at)
    computed = stack.by(RECORDS[record], label, at)
    assert set(recorded) == set(computed), (record, recorded, computed)
    for key, value in recorded.items():
        assert value == pytest.approx(computed[key], rel=1e-6, abs=1e-9), (record, key)
    return recorded


def test_recording_rules_compute_what_they_say(stack):
    for name in RECORDS:
        assert stack.values(name), name
    label = {"flavour:": "flavour", "service_id:": "service_id"}
    for record in RECORDS:
        key = next((v for k, v in label.items() if record.startswith(k)), "")
        wait_for(lambda record=record, key=key: recorded_as_computed(stack, record, key),
                 what=f"{record} equal to its expression")  # fmt: skip
    # And the groups are the fleet's: flavours 4, 8 and none; services 12 and 13.
    assert set(stack.by("flavour:opennebula_vm_power_watts:sum", "flavour")) == {"4", "8", "-1"}
    assert set(stack.by("service_id:opennebula_vm_power_watts:sum", "service_id")) == {"12", "13"}
    # Grouping adds up: at one instant, the flavours' sum is every VM's power, service 12
    # is VMs 1 and 3.
    at = float(stack.query("timestamp(opennebula_vm_power_consumption_uW)")[0]["value"][1])
    vm = stack.by("opennebula_vm_power_consumption_uW / 1e6", "one_vm_id", at)
    flavours = stack.by(RECORDS["flavour:opennebula_vm_power_watts:sum"], "flavour", at)
    services = stack.by(RECORDS["service_id:opennebula_vm_power_watts:sum"], "service_id", at)
    assert sum(flavours.values()) == pytest.approx(sum(vm.values()))
    assert flavours["4"] == pytest.approx(vm["1"] + vm["2"])
    assert services["12"] == pytest.approx(vm["1"] + vm["3"])
    assert services["13"] == pytest.approx(vm["2"])


def alerts(stack) -> list[dict]:
    status, _, body = http("GET", f"{stack.prometheus.url}/api/v1/alerts")
    assert status == 200
    return json.loads(body)["data"]["alerts"]


def test_a_stopped_agent_fires_its_alerts_and_shows_on_the_dashboard(stack):
    firing = [a["labels"]["alertname"] for a in alerts(stack) if a["state"] == "firing"]
    assert "OneCognitHostPowerSourceDown" not in firing and "OneCognitPowerAgentDown" not in firing
    stack.cloud.stop_agent("kvm-b")

    def fired():
        out = {
            a["labels"]["alertname"]: a["labels"] for a in alerts(stack) if a["state"] == "firing"
        }
        return "OneCognitHostPowerSourceDown" in out and "OneCognitPowerAgentDown" in out and out

    out = wait_for(fired, timeout=30, what="the power alerts for kvm-b to fire")
    assert out["OneCognitHostPowerSourceDown"]["one_host_id"] == "1"
    assert out["OneCognitPowerAgentDown"]["one_host_name"] == "kvm-b"
    assert out["OneCognitHostPowerSourceDown"]["severity"] == "warning"
    # The health panels show it: host 1's source down, errors counted against it.
    assert stack.by("opennebula_host_power_source_up", "one_host_id") == {"0": 1, "1": 0}
    errors = wait_for(
        lambda: stack.values(
            grafana(
                next(
                    t["expr"]
                    for p, t in panel_targets()
                    if p["title"].startswith("Agents vm_exporter")
                )
            )
        ),
        what="agent errors for host 1",
    )
    assert any("one_host_id=1" in k and v > 0 for k, v in errors.items()), errors


def test_every_metric_named_by_the_rules_and_the_dashboard_exists(stack):
    """A typo in a metric name would make a panel empty or an alert silent forever (last:
    the agent errors exist once an agent has failed)."""
    exprs = [r.get("expr", "") for g in RULES["groups"] for r in g["rules"]]
    exprs += [t["expr"] for _, t in panel_targets()]
    named = set().union(*(metric_names(e) for e in exprs)) - set(RECORDS)
    exported = stack.exported()
    for name in sorted(named):
        assert name in exported, f"{name} is named in deploy/ but nothing exports it"
