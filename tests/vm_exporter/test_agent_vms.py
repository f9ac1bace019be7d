"""Our agent's /api/v1/vms reply (SPEC section 5): accepted whole or rejected whole."""

from __future__ import annotations

import json

import pytest

from services.vm_exporter.agent_client import base_url
from services.vm_exporter.readings import AGENT, ReadingError, VmReading, parse_agent_vms


def _reply(**changes):
    doc = {
        "timestamp": 1718000000.5,
        "host": {"power_uw": 61_000_000, "energy_uj": 9_000_000_000},
        "vms": [
            {
                "name": "one-42",
                "one_vm_id": 42,
                "pid": 4242,
                "helper_pids": [4250],
                "power_uw": 18_000_000,
                "energy_uj": 5_000_000,
            },
            {
                "name": "one-52",
                "one_vm_id": 52,
                "pid": 5252,
                "helper_pids": [],
                "power_uw": None,
                "energy_uj": 0,
            },
            {
                "name": "win-builder",
                "one_vm_id": None,
                "pid": 6100,
                "helper_pids": [],
                "power_uw": 3_000_000,
                "energy_uj": 10,
            },
        ],
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def test_reads_host_and_vms_by_opennebula_id():
    reading = parse_agent_vms(_reply())
    assert reading.source == AGENT
    assert reading.host_power_uw == 61_000_000 and reading.host_energy_uj == 9_000_000_000
    assert dict(reading.vms) == {
        42: VmReading(18_000_000, 5_000_000, 4242),
        52: VmReading(None, 0, 5252),  # first sample: power not known yet
    }


def test_host_power_null_until_two_samples():
    reading = parse_agent_vms(_reply(host={"power_uw": None, "energy_uj": 0}))
    assert reading.host_power_uw is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>oops</html>",
        b"[]",
        json.dumps({"host": {}, "vms": {}}).encode(),
        _reply(vms=[{"one_vm_id": "42", "power_uw": 1, "energy_uj": 1}]),
        _reply(vms=[{"one_vm_id": 42, "power_uw": -5, "energy_uj": 1}]),
        _reply(vms=[{"one_vm_id": 42, "power_uw": True, "energy_uj": 1}]),
        _reply(vms=[{"one_vm_id": 42, "power_uw": 1, "energy_uj": "lots"}]),
        _reply(vms=["one-42"]),
        _reply(host={"power_uw": "61 W", "energy_uj": 0}),
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError in json, not ValueError
    ],
)
def test_malformed_reply_is_rejected_whole(body):
    with pytest.raises(ReadingError):
        parse_agent_vms(body)


def test_a_vm_listed_twice_counts_both_processes():
    reading = parse_agent_vms(
        _reply(
            vms=[
                {"one_vm_id": 7, "power_uw": 10, "energy_uj": 100},
                {"one_vm_id": 7, "power_uw": 5, "energy_uj": 50},
            ]
        )
    )
    assert reading.vms[7] == VmReading(15, 150)


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("node1.cognit.lan", "http://node1.cognit.lan:8080"),
        ("127.0.1.5", "http://127.0.1.5:8080"),
        ("fd00::5", "http://[fd00::5]:8080"),
        ("[fd00::5]", "http://[fd00::5]:8080"),
    ],
)
def test_agent_url_of_a_host_name_or_address(address, url):
    assert base_url(address, 8080) == url
