"""Our agent's /api/v1/vms reply (SPEC section 5): accepted whole or rejected whole, read
incrementally, every value checked for plausibility where it enters."""

from __future__ import annotations

import json

import pytest

from services.common.agent_http import base_url
from services.vm_exporter.agent_vms import MAX_VALUE, AgentVmsReader, parse_agent_vms
from services.vm_exporter.readings import (
    AGENT,
    MAX_ENERGY_UJ,
    MAX_POWER_UW,
    ReadingError,
    VmReading,
)
from testkit.agent_replies import agent_json


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


def _fed(body: bytes, size: int):
    reader = AgentVmsReader()
    for start in range(0, len(body), size):
        reader.feed(body[start : start + size])
    return reader.close()


@pytest.mark.parametrize("size", [1, 2, 7, 64, 4096])
def test_fed_in_any_pieces_gives_the_same_reading(size):
    # The reader must not take a number cut by a chunk boundary (`12` + `34`) for a whole one.
    body = _reply()
    assert _fed(body, size) == parse_agent_vms(body)
    assert _fed(b"  \n" + body + b"\n\t ", size) == parse_agent_vms(body)


def test_json_it_accepts_is_read_as_json_loads_reads_it():
    doc = {
        "extra": {"nested": [1, {"a": "}],"}]},
        "vms": [{"one_vm_id": 3, "power_uw": 5.9, "energy_uj": 7, "name": '"one-3" ]'}],
        "host": {"power_uw": 1, "energy_uj": None},
        "timestamp": 1,
    }
    reading = parse_agent_vms(json.dumps(doc, indent=3).encode())
    assert dict(reading.vms) == {3: VmReading(5, 7)}
    assert reading.host_power_uw == 1 and reading.host_energy_uj is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"host": {}, "vms": []',  # ends early
        b'{"host": {}, "vms": []} {}',  # extra data
        b'{"host": {}, "host": {}, "vms": []}',  # a key twice
        b'{"host": {}, "vms": [{"one_vm_id": 1},]}',
        b'{"host": {}, "vms": [{"one_vm_id": 1} {"one_vm_id": 2}]}',
        b'{"host": {}, "vms": [{"one_vm_id": 1}}',
        b'{"host": {}, "vms": null}',
        b'{"host": {} "vms": []}',
        b"{1: 2}",
        b'\xef\xbb\xbf{"host": {}, "vms": []}',  # a BOM, as json.loads refuses it
    ],
)
def test_broken_json_is_rejected(body):
    with pytest.raises(ReadingError):
        parse_agent_vms(body)
    with pytest.raises(ReadingError):
        _fed(body, 1)


def test_a_value_over_the_limit_is_rejected_without_reading_on():
    # A hostile agent's one endless value (a 15 MB string, a list of floats) is refused once
    # it passes MAX_VALUE, however much more is still to come.
    for value in (b'"' + b"a" * (MAX_VALUE + 10), b"[" + b"1.5e300," * MAX_VALUE):
        reader = AgentVmsReader()
        with pytest.raises(ReadingError, match="within"):
            reader.feed(b'{"host": {}, "vms": [{"one_vm_id": 1, "name": ' + value)
            reader.feed(b"0" * 2 * MAX_VALUE)
    body = b'{"host": {"x": "' + b"a" * (MAX_VALUE + 1) + b'"}, "vms": []}'
    with pytest.raises(ReadingError, match="over"):
        parse_agent_vms(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("power_uw", "1" + "0" * 308),  # 309 digits: a float64's range, not a power
        ("energy_uj", "1" + "0" * 308),
        ("power_uw", "1e308"),
        ("power_uw", "NaN"),
        ("power_uw", "Infinity"),
        ("energy_uj", "-Infinity"),
        ("power_uw", str(MAX_POWER_UW + 1)),  # more than 100 kW
        ("energy_uj", str(MAX_ENERGY_UJ + 1)),
        ("power_uw", "9" * 5000),  # past int()'s 4,300 digits
    ],
)
def test_implausible_values_make_the_reply_a_reading_error(field, value):
    entry = {"one_vm_id": 4, "power_uw": 1, "energy_uj": 1}
    text = json.dumps({"host": {"power_uw": 1}, "vms": [entry]})
    text = text.replace(f'"{field}": 1', f'"{field}": {value}')
    with pytest.raises(ReadingError):
        parse_agent_vms(text.encode())
    host = json.dumps({"host": {field: 1}, "vms": []}).replace(": 1}", f": {value}}}")
    with pytest.raises(ReadingError):
        parse_agent_vms(host.encode())


def test_the_largest_plausible_values_are_accepted():
    reading = parse_agent_vms(agent_json({4: (MAX_POWER_UW, MAX_ENERGY_UJ)}, MAX_POWER_UW))
    assert reading.vms[4] == VmReading(MAX_POWER_UW, MAX_ENERGY_UJ, 10_004)


def test_a_vm_listed_twice_with_huge_values_is_a_reading_error_not_an_overflow():
    half = {"one_vm_id": 7, "power_uw": MAX_POWER_UW, "energy_uj": MAX_ENERGY_UJ}
    with pytest.raises(ReadingError, match="listed twice"):
        parse_agent_vms(_reply(vms=[half, half]))
    energy_only = {"one_vm_id": 7, "power_uw": None, "energy_uj": MAX_ENERGY_UJ}
    with pytest.raises(ReadingError, match="listed twice"):
        parse_agent_vms(_reply(vms=[energy_only, energy_only]))


def test_deep_nesting_anywhere_is_a_reading_error():
    deep = b"[" * 50_000 + b"]" * 50_000
    for body in (
        b'{"host": {}, "vms": [' + deep + b"]}",
        b'{"host": {}, "x": ' + deep + b', "vms": []}',
    ):
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
