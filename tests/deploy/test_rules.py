"""deploy/prometheus/rules: promtool accepts the rules and their unit tests pass, and every
alert is tested firing and not firing, every recording rule on known input."""

from __future__ import annotations

import yaml

from testkit import ROOT, run

RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
RULES = RULES_DIR / "one-cognit.yml"
TESTS = RULES_DIR / "one-cognit.test.yml"


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_check_rules():
    result = run(["promtool", "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = run(["promtool", "test", "rules", str(TESTS)], timeout=60)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing_and_every_record_on_data():
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    exprs = {c["expr"] for t in tests for c in t.get("promql_expr_test", [])}
    for rule in rules():
        if "alert" in rule:
            mine = [c for c in cases if c["alertname"] == rule["alert"]]
            assert any(c["exp_alerts"] for c in mine), f"{rule['alert']} never tested firing"
            assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']} never tested quiet"
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert {"summary", "description"} <= set(rule["annotations"])
        else:
            assert rule["record"] in exprs, f"{rule['record']} has no promql_expr_test"


def test_a_broken_rule_is_caught(tmp_path):
    """The checks above can fail: a rule with a typo in its expression is refused."""
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("== 0", "=== 0", 1))
    assert run(["promtool", "check", "rules", str(broken)]).returncode != 0


def test_scrape_snippets_pass_promtool(tmp_path):
    """deploy/prometheus's job snippets are valid under `scrape_configs:`."""
    for name in ("tunnel_agent.yml", "shards.yml", "vm_exporter.yml"):
        jobs = yaml.safe_load((ROOT / "deploy" / "prometheus" / name).read_text())
        config = tmp_path / f"{name}.prometheus.yml"
        config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
        result = run(["promtool", "check", "config", str(config)])
        assert result.returncode == 0, (name, result.stdout + result.stderr)
