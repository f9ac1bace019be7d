"""Zone discovery on stored powercap trees: one zone per directory, mmio never double counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.rapl_agent.powercap import CounterError, discover, read_counter, read_counters
from services.rapl_agent.zones import SOURCE_PKG, SOURCE_PSYS, ZoneEntry, build_topology, describe

SYS = Path(__file__).resolve().parent.parent / "fixtures" / "sys"


def powercap(tag: str) -> Path:
    return SYS / tag / "class" / "powercap"


def test_client_prefers_psys_and_skips_the_mmio_twin():
    topo = discover(powercap("client"))
    kinds = {z.key: z.kind for z in topo.zones}
    assert kinds == {
        "intel-rapl:0": "package",
        "intel-rapl:0:0": "core",
        "intel-rapl:0:1": "uncore",
        "intel-rapl:1": "psys",
    }
    assert topo.host_keys == ("intel-rapl:1",)
    assert topo.source == SOURCE_PSYS
    assert [z.key for z in topo.zones if z.kind == "psys"] == ["intel-rapl:1"]
    assert ("intel-rapl-mmio:0", "mmio twin of package-0, read through MSR") in topo.skipped
    assert [z.domain_id for z in topo.domains()] == [0, 1]


def test_server_host_is_packages_plus_dram_once_each():
    topo = discover(powercap("server"))
    assert topo.host_keys == ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:1", "intel-rapl:1:0")
    assert topo.source == SOURCE_PKG
    assert topo.socket_ids == (0, 1)
    assert [z.key for z in topo.packages(1)] == ["intel-rapl:1"]
    # Flat symlinks and nested directories are the same zones: nothing listed twice.
    assert len({z.path for z in topo.zones}) == len(topo.zones) == 4
    assert all("mmio" not in z.key for z in topo.zones)
    values, errors = read_counters(topo)
    assert errors == {}
    assert sum(values[k] for k in topo.host_keys) == 100_000_000 + 20_000_000 + 110_000_000 + (
        21_000_000
    )


def test_nested_subzones_without_flat_symlinks_are_found():
    topo = discover(powercap("nested"))
    assert [(z.key, z.kind) for z in topo.zones] == [
        ("intel-rapl:0", "package"),
        ("intel-rapl:0:0", "core"),
        ("intel-rapl:0:1", "dram"),
    ]
    assert topo.host_keys == ("intel-rapl:0", "intel-rapl:0:1")


def test_mmio_is_used_when_it_is_the_only_package_interface():
    topo = discover(powercap("mmio_only"))
    assert [(z.key, z.kind, z.socket_id) for z in topo.zones] == [
        ("intel-rapl-mmio:0", "package", 0)
    ]
    assert topo.host_keys == ("intel-rapl-mmio:0",)


def test_missing_root_gives_an_empty_topology(tmp_path):
    topo = discover(tmp_path / "nope")
    assert topo.zones == () and topo.host_keys == ()


def test_broken_counters_name_the_zone_and_the_reason():
    topo = discover(powercap("broken"))
    # A zone without energy_uj is not a counter; it is reported, not silently read as 0.
    assert ("intel-rapl:0:1", "no energy_uj file") in topo.skipped
    values, errors = read_counters(topo)
    assert values == {}
    assert "holds 'not-a-number', not a counter" in errors["intel-rapl:0"]
    assert "is empty" in errors["intel-rapl:0:0"]


def test_read_counter_reasons(tmp_path):
    with pytest.raises(CounterError, match="vanished"):
        read_counter(str(tmp_path / "energy_uj"))
    (tmp_path / "energy_uj").write_text("  12345\n")
    assert read_counter(str(tmp_path / "energy_uj")) == 12345


def test_build_topology_dedupes_by_resolved_path():
    entries = [
        ZoneEntry("intel-rapl:0", "/d/intel-rapl:0", "package-0", 100, True),
        ZoneEntry("intel-rapl:0:0", "/d/intel-rapl:0/intel-rapl:0:0", "dram", 100, True),
        ZoneEntry("intel-rapl:0:0", "/d/intel-rapl:0/intel-rapl:0:0", "dram", 100, True),
        ZoneEntry("intel-rapl", "/d", None, None, False),
        ZoneEntry("dtpm:0", "/x", "cpu", None, True),
    ]
    topo = build_topology(entries)
    assert [z.key for z in topo.zones] == ["intel-rapl:0", "intel-rapl:0:0"]
    assert topo.host_keys == ("intel-rapl:0", "intel-rapl:0:0")


def test_multi_die_packages_add_up_to_one_socket():
    entries = [
        ZoneEntry("intel-rapl:0", "/a", "package-0-die-0", 100, True),
        ZoneEntry("intel-rapl:1", "/b", "package-0-die-1", 100, True),
        ZoneEntry("intel-rapl:2", "/c", "weird", 100, True),
    ]
    topo = build_topology(entries)
    assert topo.socket_ids == (0,)
    assert [z.key for z in topo.packages(0)] == ["intel-rapl:0", "intel-rapl:1"]
    assert ("intel-rapl:2", "unknown zone name 'weird'") in topo.skipped


def test_describe_names_each_zone_read_and_each_skipped_with_why():
    line = describe(discover(powercap("client")))
    assert "intel-rapl:0 (package)" in line and "intel-rapl:1 (psys)" in line
    assert "host power = intel-rapl:1 (powercap_rapl_psys)" in line
    assert "skipped: intel-rapl-mmio:0 (mmio twin of package-0, read through MSR)" in line
