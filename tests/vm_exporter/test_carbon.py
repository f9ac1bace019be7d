"""Carbon per VM and per host (pure): where each host's intensity comes from, the counters over
refreshes, the bundled table and its country codes, the operator's file."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from types import MappingProxyType

import pycountry
import pytest

from services.common.health import Health
from services.common.oned import Host, Vm
from services.vm_exporter.carbon import (
    COUNTRY,
    DATA_FILE,
    MAX_INTENSITY,
    TEMPLATE,
    UJ_PER_KWH,
    WORLD,
    CarbonDataError,
    Intensity,
    accrue_hosts,
    accrue_vms,
    host_intensity,
    parse_grid,
    parse_operator_figures,
)
from services.vm_exporter.carbon_sources import CHECK, MAX_FILE, OperatorFile, load_grid
from services.vm_exporter.energy import advance, advance_hosts
from services.vm_exporter.join import NOT_ON_HOST, UNKNOWN, Attribution
from services.vm_exporter.readings import AGENT, HostReading, VmReading
from testkit import ROOT

GRID = load_grid()
SE, PL = GRID.countries["SE"][0], GRID.countries["PL"][0]


def _host(host_id: int = 3, name: str = "node3", **template: str) -> Host:
    return Host(
        host_id, name, name, 2, None, None, None, None, None, None, 1,
        template=MappingProxyType(template),
    )  # fmt: skip


# -- where a host's intensity comes from ---------------------------------------------------


def test_the_template_figure_comes_first():
    figures = parse_operator_figures({"hosts": {"3": 10}, "countries": {"SE": 20}}, GRID)
    host = _host(CARBON_INTENSITY="35.5", GEOLOCATION_COUNTRY="SE")
    assert host_intensity(host, figures, GRID) == (Intensity(35.5, TEMPLATE, "SE"), ())


def test_then_the_data_file_by_host_id_or_name_then_by_country():
    figures = parse_operator_figures(
        {"hosts": {3: 10, "edge-7": 11}, "countries": {"SWE": 20}, "year": 2024}, GRID
    )
    assert host_intensity(_host(GEOLOCATION_COUNTRY="SE"), figures, GRID)[0] == Intensity(
        10, DATA_FILE, "SE", "2024"
    )
    by_name = _host(9, "edge-7", GEOLOCATION_COUNTRY="SE")
    assert host_intensity(by_name, figures, GRID)[0].gco2e_per_kwh == 11
    other = _host(5, "node5", GEOLOCATION_COUNTRY="se")
    assert host_intensity(other, figures, GRID)[0] == Intensity(20, DATA_FILE, "SE", "2024")


def test_then_the_country_average_then_the_world():
    figures = parse_operator_figures({"countries": {"SE": 20}}, GRID)
    polish = host_intensity(_host(GEOLOCATION_COUNTRY="PL"), figures, GRID)[0]
    assert polish == Intensity(PL, COUNTRY, "PL", GRID.countries["PL"][1])
    assert polish.gco2e_per_kwh == pytest.approx(661.926) and polish.year == "2023"
    nowhere = host_intensity(_host(), figures, GRID)[0]
    assert nowhere == Intensity(475.0, WORLD, "", "2019")
    # A country the table has no figure for (Antarctica) also falls to the world average.
    assert host_intensity(_host(GEOLOCATION_COUNTRY="AQ"), None, GRID)[0].source == WORLD


@pytest.mark.parametrize("bad", ["-5", "2000.5", "lots", "nan", "inf", "", "1e400", "12 g"])
def test_a_bad_template_figure_is_ignored_and_said_and_the_next_source_used(bad):
    intensity, problems = host_intensity(
        _host(CARBON_INTENSITY=bad, GEOLOCATION_COUNTRY="SE"), None, GRID
    )
    assert intensity == Intensity(SE, COUNTRY, "SE", "2023")
    assert len(problems) == 1 and "CARBON_INTENSITY" in problems[0] and "next source" in problems[0]


def test_the_bounds_themselves_are_figures():
    assert host_intensity(_host(CARBON_INTENSITY="0"), None, GRID)[0].gco2e_per_kwh == 0
    top = host_intensity(_host(CARBON_INTENSITY=str(MAX_INTENSITY)), None, GRID)[0]
    assert top.gco2e_per_kwh == MAX_INTENSITY


@pytest.mark.parametrize("bad", ["XX", "Sweden", "S", "12", "ÅÄ", "SE,PL"])
def test_a_country_that_is_no_iso_code_is_said_and_the_world_average_used(bad):
    intensity, problems = host_intensity(_host(GEOLOCATION_COUNTRY=bad), None, GRID)
    assert intensity.source == WORLD and intensity.country == ""
    assert len(problems) == 1 and "GEOLOCATION_COUNTRY" in problems[0]


# -- the operator's file -----------------------------------------------------------------------


def test_an_operator_file_with_alpha2_or_alpha3_keys():
    figures = parse_operator_figures(
        {"countries": {"se": 45, "POL": "610.5"}, "hosts": {"node1": 0}}, GRID
    )
    assert dict(figures.countries) == {"SE": 45.0, "PL": 610.5}
    assert dict(figures.hosts) == {"node1": 0.0} and figures.year == ""
    assert parse_operator_figures(None, GRID).countries == {}


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "text",
        {"countries": {"XX": 10}},
        {"countries": {"SE": -1}},
        {"countries": {"SE": 2001}},
        {"hosts": {"a": "lots"}},
        {"hosts": {"a": True}},
        {"hosts": {"a": [1]}},
        {"hosts": ["a"]},
        {"host": {"a": 1}},
    ],
)
def test_an_operator_file_that_is_wrong_anywhere_is_refused_whole(doc):
    with pytest.raises(CarbonDataError):
        parse_operator_figures(doc, GRID)


# -- the counters over refreshes ---------------------------------------------------------------

VM = Vm(42, 3, 3, 0, "node-se", None, None, 1, (), ())
HOSTS = {
    0: _host(0, "node-se", GEOLOCATION_COUNTRY="SE"),
    1: _host(1, "node-pl", GEOLOCATION_COUNTRY="PL"),
}
INTENSITY = {h: host_intensity(host, None, GRID)[0] for h, host in HOSTS.items()}
GAP = 50.0


def _agent(host: int, energy: int, pid: int = 1) -> Attribution:
    return Attribution(1, VmReading(1, energy, pid), (host, AGENT))


def _refreshes(steps):
    """(time, host id or None, attribution) steps: the VM's grams after each."""
    energy, carbon, out = {}, {}, []
    for at, host, attribution in steps:
        vm = dataclasses.replace(VM, host_id=-1 if host is None else host)
        after = advance(energy, [vm], {42: attribution}, at, GAP)
        carbon = accrue_vms(carbon, energy, after, [vm], {42: attribution}, INTENSITY)
        energy = after
        out.append(carbon.get(42))
    return out


def test_a_vm_accrues_each_hosts_own_rate_across_a_migration_and_an_agent_restart():
    kwh = UJ_PER_KWH
    grams = _refreshes(
        [
            (0, 0, _agent(0, 5 * kwh)),  # first sight: a baseline
            (15, 0, _agent(0, 6 * kwh)),  # 1 kWh in Sweden
            (30, 1, _agent(1, 2 * kwh, pid=7)),  # migrated: 2 kWh since, in Poland
            (45, 1, UNKNOWN),  # the Polish agent is down: unknown adds nothing
            (60, 1, UNKNOWN),
            (75, 1, _agent(1, 3 * kwh, pid=7)),  # back: 1 kWh more, drawn in Poland
            (90, 1, _agent(1, kwh // 2, pid=7)),  # agent restart: its new counter, in Poland
            (105, None, NOT_ON_HOST),  # powered off: known to draw nothing
        ]
    )
    expected = [0.0, SE, SE + 2 * PL, SE + 2 * PL, SE + 2 * PL, SE + 3 * PL, SE + 3.5 * PL]
    assert grams[:-1] == pytest.approx(expected)
    assert grams[-1] == grams[-2]
    assert all(b >= a for a, b in zip(grams, grams[1:], strict=False))


def test_a_vm_never_known_has_no_carbon_series_and_one_that_left_is_dropped():
    assert _refreshes([(0, 0, UNKNOWN), (15, 0, UNKNOWN)]) == [None, None]
    energy = advance({}, [VM], {42: _agent(0, 10)}, 0, GAP)
    carbon = accrue_vms({}, {}, energy, [VM], {42: _agent(0, 10)}, INTENSITY)
    assert accrue_vms(carbon, energy, {}, [], {}, INTENSITY) == {}


def test_a_host_accrues_its_own_energy_at_its_rate():
    def reading(energy_uj: int) -> HostReading:
        return HostReading(AGENT, 1, MappingProxyType({}), energy_uj)

    energy, carbon, seen = {}, {}, []
    for at, uj in ((0, 10 * UJ_PER_KWH), (15, 12 * UJ_PER_KWH), (30, UJ_PER_KWH)):  # restart
        after = advance_hosts(energy, [0], {0: reading(uj)}, at, GAP)
        carbon = accrue_hosts(carbon, energy, after, INTENSITY)
        energy = after
        seen.append(carbon[0])
    assert seen == pytest.approx([0.0, 2 * SE, 3 * SE])


# -- the bundled table and its country codes --------------------------------------------------


def test_every_country_of_the_table_converts_both_ways_as_iso_3166_says():
    assert len(GRID.countries) >= 200
    for alpha2 in GRID.countries:
        country = pycountry.countries.get(alpha_2=alpha2)
        assert country is not None, alpha2
        assert GRID.alpha2_to_3[alpha2] == country.alpha_3
        assert GRID.alpha2(country.alpha_3) == alpha2
        assert GRID.alpha2(country.alpha_3.lower()) == alpha2 == GRID.alpha2(alpha2.lower())
    # The code table covers every ISO 3166-1 country, not only those with a figure.
    assert dict(GRID.alpha2_to_3) == {c.alpha_2: c.alpha_3 for c in pycountry.countries}


def test_the_table_holds_codecarbons_figures_with_their_year_and_source():
    assert SE == pytest.approx(40.695) and GRID.countries["SE"][1] == "2023"
    assert PL == pytest.approx(661.926)
    assert GRID.world == 475.0 and GRID.world_year == "2019"
    # Every figure is plausible (an all-hydro grid is 0) and dated.
    assert all(0 <= v <= MAX_INTENSITY and y.isdigit() for v, y in GRID.countries.values())


def _script():
    spec = importlib.util.spec_from_file_location(
        "make_grid_intensity", ROOT / "scripts" / "make_grid_intensity.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_records_where_each_figure_came_from():
    doc = _script().build(ROOT / "tests" / "fixtures" / "codecarbon", "9.9.9")
    assert set(doc["countries"]) == {"DE", "PL", "SE"}
    sweden = doc["countries"]["SE"]
    assert sweden["alpha3"] == "SWE" and sweden["year"] == 2023
    assert sweden["gco2e_per_kwh"] == 40.695
    assert "CodeCarbon 9.9.9" in sweden["source"] and "[SWE]" in sweden["source"]
    assert doc["world"]["gco2e_per_kwh"] == 475 and "iea.org" in doc["world"]["source"]
    grid = parse_grid(doc)
    assert grid.countries["DE"] == (380.95, "2023")
    # The bundled table is this script's output over CodeCarbon's whole file.
    bundled = load_grid()
    for alpha2 in ("DE", "PL", "SE"):
        assert bundled.countries[alpha2] == grid.countries[alpha2]


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["world"].update(gco2e_per_kwh=-1),
        lambda d: d["countries"]["SE"].update(alpha3="POL"),
        lambda d: d["countries"]["SE"].update(gco2e_per_kwh="x"),
        lambda d: d.pop("iso3166"),
    ],
)
def test_a_broken_table_is_refused(change):
    doc = _script().build(ROOT / "tests" / "fixtures" / "codecarbon", "9.9.9")
    change(doc)
    with pytest.raises(CarbonDataError):
        parse_grid(doc)


def test_grams_of_a_kwh_are_the_intensity():
    assert math.isclose(UJ_PER_KWH * INTENSITY[0].gco2e_per_kwh / UJ_PER_KWH, SE)


# -- the operator's file on disk ---------------------------------------------------------------


async def test_the_operator_file_is_reread_on_change_and_a_bad_one_keeps_the_last_good(
    tmp_path, caplog
):
    path = tmp_path / "carbon.yaml"
    path.write_text("countries:\n  SE: 45\nhosts:\n  node7: 30\n")
    health = Health("vm_exporter")
    operator = OperatorFile(path, GRID, health)
    first = await operator.current()
    assert dict(first.countries) == {"SE": 45.0} and health.healthy
    assert await operator.current() is first  # unchanged: not read again
    path.write_text("countries:\n  SE: 50\n")
    assert dict((await operator.current()).countries) == {"SE": 50.0}
    for broken in ("countries: [unclosed", "countries:\n  SE: -3\n", "x" * (MAX_FILE + 1)):
        path.write_text(broken)
        kept = await operator.current()
        assert dict(kept.countries) == {"SE": 50.0}
        reason = health.report()["failing"][CHECK]
        assert str(path) in reason and "keeping the figures read at" in reason
    path.unlink()
    assert dict((await operator.current()).countries) == {"SE": 50.0}
    assert "No such file" in health.report()["failing"][CHECK]
    path.write_text("countries:\n  PL: 600\n")  # a good version again
    assert dict((await operator.current()).countries) == {"PL": 600.0} and health.healthy
    assert "SE: -3" not in caplog.text and "countries.SE" in caplog.text


async def test_an_operator_file_bad_from_the_start_gives_no_figures_and_says_so(tmp_path):
    health = Health("vm_exporter")
    operator = OperatorFile(tmp_path / "absent.yaml", GRID, health)
    assert await operator.current() is None
    assert "no figures from it yet" in health.report()["failing"][CHECK]
    assert await OperatorFile(None, GRID, health).current() is None
