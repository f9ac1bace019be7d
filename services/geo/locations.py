"""From database records to the value of GEOLOCATION (pure).

A MaxMind-format city record (DB-IP City Lite, GeoLite2-City, GeoIP2-City) holds
`location.latitude/longitude`, `city.names.en` and `country.iso_code`. Records come from a
file an operator may replace with anything, so every field is checked before it is used.
maxminddb decodes maps as `dict`: the checks test for `dict`, which costs a quarter of an ABC
`Mapping` check on this path (one per lookup that misses the cache).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

_MAX_NAME = 200


class Location(NamedTuple):
    """Where one address is, as the database says: coordinates, city, ISO 3166-1 country.

    A NamedTuple, not a frozen dataclass: it is built for every database miss, and a frozen
    dataclass costs 1.6 us to build against 0.6 us (bench/bench_geo.py's cold lookups).
    """

    latitude: float
    longitude: float
    city: str = ""
    country: str = ""  # ISO 3166-1 alpha-2, "" when the database has none
    country_name: str = ""

    @property
    def coordinates(self) -> str:
        """`lat,lon` with 4 decimals (about 11 m), as GEOLOCATION holds it."""
        return f"{_four(self.latitude)},{_four(self.longitude)}"


def _four(value: float) -> str:
    text = f"{value:.4f}"
    return "0.0000" if text == "-0.0000" else text


def _is_country(code: str) -> bool:
    """Two ASCII capital letters, as ISO 3166-1 alpha-2 codes are (no regex: hot path)."""
    return len(code) == 2 and code.isascii() and code.isalpha() and code.isupper()


def _name(record: dict[str, Any], key: str) -> str:
    part = record.get(key)
    names = part.get("names") if isinstance(part, dict) else None
    name = names.get("en") if isinstance(names, dict) else None
    return name[:_MAX_NAME] if isinstance(name, str) else ""


def _coordinate(value: Any, limit: float) -> float | None:
    if type(value) is not float and type(value) is not int:  # bool is not a coordinate
        return None
    value = float(value)
    return value if math.isfinite(value) and -limit <= value <= limit else None


def location_from_record(record: Any) -> Location | None:
    """The Location of one record, None when it has no plausible coordinates."""
    if not isinstance(record, dict):
        return None
    where = record.get("location")
    if not isinstance(where, dict):
        return None
    latitude = _coordinate(where.get("latitude"), 90.0)
    longitude = _coordinate(where.get("longitude"), 180.0)
    if latitude is None or longitude is None:
        return None
    country_part = record.get("country")
    code = country_part.get("iso_code") if isinstance(country_part, dict) else None
    country = code if type(code) is str and _is_country(code) else ""
    return Location(latitude, longitude, _name(record, "city"), country, _name(record, "country"))


def distinct(locations: Iterable[Location]) -> list[Location]:
    """One Location per distinct `lat,lon` (at 4 decimals), first seen first."""
    seen: set[str] = set()
    out = []
    for location in locations:
        if location.coordinates not in seen:
            seen.add(location.coordinates)
            out.append(location)
    return out


def geolocation_value(locations: Iterable[Location]) -> str:
    """GEOLOCATION: `lat,lon lat,lon`, one entry per distinct location, in the given order."""
    return " ".join(location.coordinates for location in distinct(locations))


def country_of(locations: Iterable[Location]) -> str:
    """GEOLOCATION_COUNTRY: the country of the first location (in order) that has one.

    A host whose public addresses lie in several countries gets one country, the first's:
    the order is the operator's PUBLIC_IP order, else the stable address order, so the
    choice does not flip between runs.
    """
    return next((location.country for location in locations if location.country), "")
