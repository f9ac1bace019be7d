"""Patching the operator's prometheus.yml: only the owned jobs change, every other byte stays."""

from __future__ import annotations

import difflib
import subprocess

import pytest
import yaml

from services.discovery.promconfig import ConfigFormatError, JobSd, load, patch_config
from testkit.prometheus import PROMTOOL
from tests.discovery.conftest import DEBIAN_CONFIG, FIXTURES

UPSTREAM = FIXTURES / "upstream-prometheus.yml"


def file_sd(*jobs: str, base: str = "/var/lib/one-cognit/sd") -> dict[str, JobSd]:
    return {job: JobSd("file_sd_configs", [{"files": [f"{base}/{job}.json"]}]) for job in jobs}


def changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines of a diff."""
    removed, added = [], []
    for line in difflib.ndiff(old.splitlines(), new.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def promtool_ok(tmp_path, text: str) -> None:
    path = tmp_path / "check.yml"
    path.write_text(text)
    done = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_new_jobs_are_appended_and_not_one_byte_of_debians_file_changes(tmp_path) -> None:
    old = DEBIAN_CONFIG.read_text()
    new = patch_config(old, file_sd("scaphandre", "sr_exporter", "one_vm_exporter"))
    removed, added = changed_lines(old, new)
    assert removed == []
    assert new.startswith(old)  # appended after the last job, comments and spacing intact
    assert added == [
        '  - job_name: "scaphandre"',
        "    file_sd_configs:",
        '      - files: ["/var/lib/one-cognit/sd/scaphandre.json"]',
        '  - job_name: "sr_exporter"',
        "    file_sd_configs:",
        '      - files: ["/var/lib/one-cognit/sd/sr_exporter.json"]',
        '  - job_name: "one_vm_exporter"',
        "    file_sd_configs:",
        '      - files: ["/var/lib/one-cognit/sd/one_vm_exporter.json"]',
    ]
    promtool_ok(tmp_path, new)
    assert patch_config(new, file_sd("scaphandre", "sr_exporter", "one_vm_exporter")) == new


def test_taking_over_upstream_and_seed_jobs_keeps_the_operators_parts(tmp_path) -> None:
    old = UPSTREAM.read_text()
    jobs = file_sd("node_exporter", "libvirt_exporter", "sr_exporter")
    new = patch_config(old, jobs)
    data = yaml.safe_load(new)
    by_name = {j["job_name"]: j for j in data["scrape_configs"]}
    node = by_name["node_exporter"]
    # The operator's key, relabelling and the frontend's own group (no discovery label) stay;
    # the per-host groups upstream wrote are now discovery's file.
    assert node["scrape_interval"] == "30s"
    assert node["metric_relabel_configs"][0]["action"] == "drop"
    assert node["static_configs"] == [{"targets": ["127.0.0.1:9100"]}]
    assert node["file_sd_configs"] == [{"files": ["/var/lib/one-cognit/sd/node_exporter.json"]}]
    # The seed's vm_id group and libvirt's one_host_id groups are discovery's: replaced.
    assert "static_configs" not in by_name["sr_exporter"]
    assert "static_configs" not in by_name["libvirt_exporter"]
    # Jobs not owned are untouched, and so are the comments.
    assert by_name["opennebula_exporter"]["static_configs"] == [{"targets": ["127.0.0.1:9925"]}]
    for comment in (
        "# Written by OpenNebula's patch_datasources.rb (6.10), then edited by the operator.",
        "# hosts' node exporters; the frontend's own is the first group",
        "  scrape_interval: 30s  # the operator slowed this one down",
        "  # keep in sync with the dashboards",
        "# The COGNIT seed's hook added this job for exporters inside VMs.",
    ):
        assert comment in new.splitlines()
    removed, _ = changed_lines(old, new)
    # Only lines inside the owned jobs' static_configs went.
    assert all(
        line.strip().startswith(
            (
                "- targets",
                "- 127.0.20",
                "- 10.0.0.5",
                "labels",
                "one_host_id",
                "vm_id",
                "static_configs",
                "- 127.0.0.1:9100",
            )
        )
        for line in removed
    ), removed
    promtool_ok(tmp_path, new)
    assert patch_config(new, jobs) == new


def test_static_mode_writes_groups_that_read_back_exactly(tmp_path) -> None:
    labels = {"one_vm_id": "7", "one_vm_name": 'wé"b\\ ☃ \u2028 \x85 #x: [y]', "flavour": "4"}
    groups = [{"targets": ["127.0.21.1:9100", "[::1]:9101"], "labels": labels}]
    jobs = {
        "sr_exporter": JobSd("static_configs", groups),
        "scaphandre": JobSd("static_configs", []),
    }
    new = patch_config(DEBIAN_CONFIG.read_text(), jobs)
    by_name = {j["job_name"]: j for j in yaml.safe_load(new)["scrape_configs"]}
    assert by_name["sr_exporter"]["static_configs"] == groups
    assert by_name["scaphandre"]["static_configs"] == []
    promtool_ok(tmp_path, new)


def test_http_sd_jobs(tmp_path) -> None:
    sd = [{"url": "http://127.0.0.1:9930/v1/sd/scaphandre", "refresh_interval": "15s"}]
    new = patch_config(DEBIAN_CONFIG.read_text(), {"scaphandre": JobSd("http_sd_configs", sd)})
    job = yaml.safe_load(new)["scrape_configs"][-1]
    assert job == {"job_name": "scaphandre", "http_sd_configs": sd}
    promtool_ok(tmp_path, new)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment\n",
        "global:\n  scrape_interval: 15s\n",
        "global:\n  scrape_interval: 15s\nscrape_configs:\n",
        "scrape_configs:\nrule_files: []\n",
        "global: {scrape_interval: 15s}\nscrape_configs: [{job_name: a, static_configs: []}]\n",
        "scrape_configs:\n  -\n    job_name: scaphandre\n    static_configs: []\n",
        "scrape_configs:\n- static_configs: []\n  job_name: scaphandre\n",
        "scrape_configs:\n- {job_name: scaphandre, static_configs: []}  # flow\n",
        "scrape_configs: # jobs\n- job_name: x\n  static_configs: []\n# tail comment\n",
    ],
)
def test_odd_but_valid_shapes_are_patched_to_the_right_meaning(tmp_path, text) -> None:
    jobs = file_sd("scaphandre")
    new = patch_config(text, jobs)
    data = yaml.safe_load(new)
    mine = [j for j in data["scrape_configs"] if j["job_name"] == "scaphandre"]
    assert mine == [{"job_name": "scaphandre", "file_sd_configs": jobs["scaphandre"].value}]
    for comment in ("# only a comment", "# jobs", "# tail comment"):
        if comment in text:
            assert comment in new
    assert patch_config(new, jobs) == new
    promtool_ok(tmp_path, new)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("scrape_configs: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "top level is not a mapping"),
        ("scrape_configs: {a: 1}\n", "scrape_configs is not a list"),
        ("a: 1\n---\nb: 2\n", "not valid YAML"),
    ],
)
def test_files_that_are_no_prometheus_config_are_refused(text, message) -> None:
    with pytest.raises(ConfigFormatError, match=message):
        patch_config(text, file_sd("scaphandre"))


def test_load_says_where_the_yaml_breaks() -> None:
    with pytest.raises(ConfigFormatError, match="line 3"):
        load("a: 1\nb: [\n")
