"""deploy/prometheus/vm_exporter.yml is a scrape job Prometheus accepts, aimed at port 9925."""

from __future__ import annotations

import yaml

from testkit import ROOT, run

SNIPPET = ROOT / "deploy" / "prometheus" / "vm_exporter.yml"


def test_scrape_job_passes_promtool_check_config(tmp_path):
    jobs = yaml.safe_load(SNIPPET.read_text())
    assert [job["job_name"] for job in jobs] == ["one_vm_exporter"]
    assert jobs[0]["static_configs"][0]["targets"] == ["127.0.0.1:9925"]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
    result = run(["promtool", "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_commented_coexistence_job_is_valid_too(tmp_path):
    lines = SNIPPET.read_text().splitlines()
    start = lines.index("  # - job_name: opennebula_exporter")
    jobs = yaml.safe_load("\n".join(line.removeprefix("  # ") for line in lines[start:]))
    assert jobs[0]["metric_relabel_configs"][0]["regex"] == "opennebula_(vm|host)_.*"
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
    result = run(["promtool", "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
