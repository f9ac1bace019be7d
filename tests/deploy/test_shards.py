"""Beyond one Prometheus: two real Prometheus shards read one-discovery's http_sd targets and
split them with deploy/prometheus/shards.yml's hashmod relabelling; every host's agent (and
every Serverless Runtime exporter) is scraped by exactly one shard, the one its hash names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from testkit import ROOT, free_port, free_port_on, get_json, run, wait_for
from testkit.cloud import Cloud
from testkit.prometheus import RealPrometheus

SNIPPET = ROOT / "deploy" / "prometheus" / "shards.yml"
SHARDS = 2
NET = "127.0.82"
HOSTS = {f"edge-{n}": f"{NET}.{n}" for n in range(1, 7)}
FLEET = {
    "hosts": [{"name": name, "hostname": addr} for name, addr in HOSTS.items()],
    "vms": [
        {"id": n, "name": f"sr-{n}", "host": f"edge-{n}", "cpu_fraction": 0.02,
         "user_template": {"PROMETHEUS_EXPORTER": f"{NET}.{100 + n}:9"}}
        for n in range(1, 5)
    ],
}  # fmt: skip


def shard_of(address: str) -> int:
    """Prometheus' hashmod: md5 of the label value, its last 8 bytes big-endian, mod N."""
    digest = hashlib.md5(address.encode()).digest()
    return int.from_bytes(digest[8:], "big") % SHARDS


def agent_port() -> int:
    """A port free on every host address that puts agents on both shards (else the test
    could not tell a split from no split)."""
    for _ in range(50):
        port = free_port_on(list(HOSTS.values()))
        if len({shard_of(f"{a}:{port}") for a in HOSTS.values()}) == SHARDS:
            return port
    raise RuntimeError("no port splits the agents over both shards")


def shard_jobs(url: str, shard: int) -> list[dict]:
    """deploy's snippet for one shard: discovery's URL, this shard's number."""
    text = SNIPPET.read_text().replace("http://127.0.0.1:9930", url)
    jobs = yaml.safe_load(text)
    for job in jobs:
        keep = job["relabel_configs"][1]
        assert job["relabel_configs"][0]["modulus"] == SHARDS and keep["regex"] == "0"
        keep["regex"] = str(shard)
    return jobs


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    cloud = Cloud(tmp, FLEET, HOSTS, agent_port=agent_port())
    prometheis: list[RealPrometheus] = []
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        configs = []
        for shard in range(SHARDS):
            config = tmp / f"shard-{shard}.yml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
                        "scrape_configs": shard_jobs(url, shard),
                    }
                )
            )
            configs.append(config)
        # discovery owns shard 0's file; it must keep the relabelling there.
        cloud.start_discovery(configs[0], "--mode", "http_sd", "--http-sd-url", url, port=port)
        wait_for(
            lambda: len(get_json(f"{url}/v1/sd/scaphandre")[1]) == len(HOSTS),
            what="discovery to serve every host's agent",
        )
        for shard, config in enumerate(configs):
            prometheis.append(RealPrometheus(tmp / f"data-{shard}", config))
        yield cloud, configs, prometheis
    finally:
        for prom in prometheis:
            prom.close()
        cloud.close()


def scraped(prom: RealPrometheus, job: str) -> dict[str, str]:
    return {
        t["labels"]["instance"]: t["health"] for t in prom.targets() if t["labels"]["job"] == job
    }


def test_discovery_keeps_the_shard_relabelling_in_the_file_it_owns(shards):
    cloud, configs, _ = shards
    jobs = {j["job_name"]: j for j in yaml.safe_load(configs[0].read_text())["scrape_configs"]}
    assert jobs["scaphandre"]["relabel_configs"][0]["action"] == "hashmod"
    assert jobs["scaphandre"]["http_sd_configs"][0]["url"].endswith("/v1/sd/scaphandre")


def test_every_agent_is_scraped_by_exactly_one_shard(shards):
    cloud, _, prometheis = shards
    agents = {f"{addr}:{cloud.agent_port}" for addr in HOSTS.values()}

    def split():
        seen = [scraped(p, "scaphandre") for p in prometheis]
        if set().union(*seen) != agents or not all(h == "up" for s in seen for h in s.values()):
            return None
        return seen

    seen = wait_for(split, timeout=45, what="both shards to scrape every agent, each once")
    assert not set(seen[0]) & set(seen[1])
    for shard, instances in enumerate(seen):
        assert instances and {shard_of(i) for i in instances} == {shard}, (shard, instances)
    # The data is there too: each shard holds the host power of its own agents only.
    for shard, prom in enumerate(prometheis):
        status, body = get_json(f"{prom.url}/api/v1/query?query=scaph_host_power_microwatts")
        held = {r["metric"]["instance"] for r in body["data"]["result"]}
        assert held == set(seen[shard]), json.dumps(body)[:300]


def test_serverless_runtime_exporters_are_split_too(shards):
    _, _, prometheis = shards
    exporters = {vm["user_template"]["PROMETHEUS_EXPORTER"] for vm in FLEET["vms"]}
    seen = wait_for(
        lambda: (
            (s := [set(scraped(p, "sr_exporter")) for p in prometheis])
            and s[0] | s[1] == exporters
            and s
        ),
        timeout=30,
        what="the SR exporters' targets on the shards",
    )
    assert not seen[0] & seen[1]
    for shard, instances in enumerate(seen):
        assert all(shard_of(i) == shard for i in instances)


def test_the_snippet_is_valid_prometheus_config(tmp_path: Path):
    config = tmp_path / "p.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": shard_jobs("http://fe:9930", 1)}))
    result = run(["promtool", "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
