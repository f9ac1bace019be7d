"""Records to GEOLOCATION, and whose location a template holds (pure)."""

from __future__ import annotations

import math

import pytest

from services.geo.locations import (
    Location,
    country_of,
    distinct,
    geolocation_value,
    location_from_record,
)
from services.geo.ownership import changes, operator_reason

STOCKHOLM = {
    "city": {"names": {"en": "Stockholm"}},
    "country": {"iso_code": "SE", "names": {"en": "Sweden"}},
    "location": {"latitude": 59.3293, "longitude": 18.0686},
}


def test_a_city_record_becomes_a_location():
    where = location_from_record(STOCKHOLM)
    assert where == Location(59.3293, 18.0686, "Stockholm", "SE", "Sweden")
    assert where.coordinates == "59.3293,18.0686"


def test_four_decimals_and_no_negative_zero():
    assert Location(-33.86881, 151.20929).coordinates == "-33.8688,151.2093"
    assert Location(51.5074, -0.127758).coordinates == "51.5074,-0.1278"
    assert Location(-0.00001, 0.0).coordinates == "0.0000,0.0000"
    assert Location(90, -180).coordinates == "90.0000,-180.0000"


@pytest.mark.parametrize(
    "record",
    [
        None,
        [],
        "Stockholm",
        {},
        {"location": None},
        {"location": {"latitude": 59.3}},
        {"location": {"latitude": "59.3", "longitude": "18.0"}},
        {"location": {"latitude": 91.0, "longitude": 18.0}},
        {"location": {"latitude": 59.0, "longitude": 180.5}},
        {"location": {"latitude": math.nan, "longitude": 18.0}},
        {"location": {"latitude": math.inf, "longitude": 18.0}},
        {"location": {"latitude": True, "longitude": 18.0}},
    ],
)
def test_records_without_plausible_coordinates_give_none(record):
    assert location_from_record(record) is None


def test_odd_names_and_countries_are_cleaned():
    record = {
        "location": {"latitude": 1, "longitude": 2},
        "country": {"iso_code": "sweden", "names": {"en": 7}},
        "city": {"names": {"en": "x" * 1000}},
    }
    where = location_from_record(record)
    assert where.country == "" and where.country_name == "" and len(where.city) == 200
    assert location_from_record({**STOCKHOLM, "country": "SE"}).country == ""


def test_geolocation_one_entry_per_distinct_location_in_order():
    warsaw = Location(52.2297, 21.0122, "Warsaw", "PL")
    warsaw_again = Location(52.22971, 21.01219, "Warsaw", "PL")  # the same at 4 decimals
    madrid = Location(40.4478, -3.69413, "Madrid", "ES")
    unknown = Location(10.0, 10.0, "", "")
    assert geolocation_value([warsaw, madrid, warsaw_again]) == "52.2297,21.0122 40.4478,-3.6941"
    assert geolocation_value([madrid, warsaw]) == "40.4478,-3.6941 52.2297,21.0122"
    assert len(distinct([warsaw, warsaw_again, madrid])) == 2
    # the country is the first location's that has one
    assert country_of([warsaw, madrid]) == "PL"
    assert country_of([madrid, warsaw]) == "ES"
    assert country_of([unknown, madrid]) == "ES"
    assert country_of([unknown]) == ""


def test_whose_location_it_is():
    assert operator_reason({}) is None
    assert operator_reason({"PUBLIC_IP": "8.8.8.8"}) is None
    assert operator_reason({"GEOLOCATION": "1,2", "GEOLOCATION_SOURCE": "one-geo"}) is None
    assert operator_reason({"GEOLOCATION_SOURCE": " one-geo "}) is None
    assert "set without" in operator_reason({"GEOLOCATION": "59.3294,18.0687"})
    assert "set without" in operator_reason({"GEOLOCATION": ""})
    assert "GEOLOCATION_COUNTRY" in operator_reason({"GEOLOCATION_COUNTRY": "SE"})
    assert "'manual'" in operator_reason({"GEOLOCATION": "1,2", "GEOLOCATION_SOURCE": "manual"})
    assert "not 'one-geo'" in operator_reason({"GEOLOCATION_SOURCE": "ONE-GEO"})
    assert operator_reason({"GEOLOCATION_SOURCE": ""}) is not None


def test_changes_are_only_what_differs():
    ours = {
        "GEOLOCATION": "1.0000,2.0000",
        "GEOLOCATION_COUNTRY": "SE",
        "GEOLOCATION_SOURCE": "one-geo",
    }
    assert changes(ours, "1.0000,2.0000", "SE") == {}
    assert changes(ours, "3.0000,4.0000", "SE") == {"GEOLOCATION": "3.0000,4.0000"}
    assert changes(ours, "1.0000,2.0000", "") == {"GEOLOCATION_COUNTRY": ""}
    assert changes({}, "1.0000,2.0000", "") == {
        "GEOLOCATION": "1.0000,2.0000",
        "GEOLOCATION_SOURCE": "one-geo",
    }
    assert changes({}, "1.0000,2.0000", "PL") == {
        "GEOLOCATION": "1.0000,2.0000",
        "GEOLOCATION_COUNTRY": "PL",
        "GEOLOCATION_SOURCE": "one-geo",
    }
