"""The city database: the real DB-IP City Lite read through geo agrees with maxminddb read
directly; hostile records; replaced, garbage and missing files."""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import shutil

import pytest

from services.geo.database import (
    FOUND,
    INVALID,
    NO_COORDINATES,
    NOT_FOUND,
    NOT_PUBLIC,
    Database,
    DatabaseError,
    GeoDatabase,
    attribution,
    default_path,
)
from services.geo.public import is_public
from sim.fleet import DEMO_PUBLIC_IPS

from .lab import expected, reader
from .mmdbs import city, write_mmdb


@pytest.fixture(scope="module")
def dbip():
    database = Database(default_path())
    yield database
    database.close()


def test_the_default_database_is_db_ip_city_lite(dbip):
    assert default_path().name == "dbip-city-lite-latest.mmdb"
    assert dbip.current.database_type == "DBIP-City-Lite"
    assert dbip.current.is_city
    assert "DB-IP" in dbip.current.label and "CC BY 4.0" in dbip.current.label
    assert "built 2023-04-01" in dbip.current.label


def _agrees(dbip, ip: str) -> str:
    got = dbip.lookup(ip)
    address = ipaddress.ip_address(ip)
    if not is_public(address):
        assert got.result == NOT_PUBLIC, (ip, got)
        return NOT_PUBLIC
    record = reader().get(ip)
    if record is None:
        assert got.result == NOT_FOUND, (ip, got)
        return NOT_FOUND
    where = record.get("location")
    if not where:
        assert got.result == NO_COORDINATES, (ip, got)
        return NO_COORDINATES
    assert got.result == FOUND, (ip, got)
    loc = got.location
    assert (loc.latitude, loc.longitude) == (where["latitude"], where["longitude"]), ip
    assert loc.city == record.get("city", {}).get("names", {}).get("en", ""), ip
    assert loc.country == record.get("country", {}).get("iso_code", ""), ip
    assert loc.coordinates == f"{where['latitude']:.4f},{where['longitude']:.4f}"
    return FOUND


def test_lookups_agree_with_the_database_read_directly(dbip):
    rng = random.Random(7)
    v4 = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(4000)]
    v6 = [str(ipaddress.IPv6Address((1 << 125) | rng.getrandbits(125))) for _ in range(1000)]
    # IPv6 networks DB-IP knows well: random hosts inside the RIPE region's big allocations
    v6 += [str(ipaddress.IPv6Address(0x2A00 << 112 | rng.getrandbits(100))) for _ in range(1000)]
    results = {ip: _agrees(dbip, ip) for ip in v4 + v6}
    counts = {r: list(results.values()).count(r) for r in set(results.values())}
    assert counts.get(FOUND, 0) > 2000 and counts.get(NOT_PUBLIC, 0) > 300, counts
    assert any(results[ip] == FOUND for ip in v6), "no IPv6 address found"


def test_the_demo_fleets_addresses_are_in_several_countries(dbip):
    countries = set()
    for ip in DEMO_PUBLIC_IPS:
        got = dbip.lookup(ip)
        assert got.result == FOUND, got
        assert (got.location.coordinates, got.location.country) == expected(ip)
        countries.add(got.location.country)
    assert {"SE", "PL", "ES"} <= countries


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("10.0.0.1", NOT_PUBLIC),
        ("100.64.0.1", NOT_PUBLIC),
        ("::ffff:8.8.8.8", NOT_PUBLIC),  # the database would answer for it: the filter first
        ("2002:808:808::1", NOT_PUBLIC),
        ("2001:3::1", NOT_FOUND),  # public (AMT), but DB-IP has no entry
        ("2001:20::1", NOT_FOUND),
        ("not an address", INVALID),
        ("", INVALID),
        ("1" * 70, INVALID),
    ],
)
def test_results_other_than_found(dbip, text, result):
    got = dbip.lookup(text)
    assert got.result == result and got.location is None and got.reason


def test_counts_by_result(dbip):
    before = dict(dbip.lookups)
    dbip.lookup("8.8.8.8")
    dbip.lookup("8.8.8.8")  # a cache hit counts too
    dbip.lookup("10.0.0.1")
    assert dbip.lookups[FOUND] - before[FOUND] == 2
    assert dbip.lookups[NOT_PUBLIC] - before[NOT_PUBLIC] == 1


def test_hostile_records_never_give_coordinates(tmp_path):
    path = write_mmdb(
        tmp_path / "hostile.mmdb",
        {
            "192.36.148.0/24": city(1.5, 2.25, "A", "AA"),
            "8.8.8.0/24": city("59.3", "18.0"),
            "9.9.9.0/24": city(float("nan"), 2.0),
            "1.1.1.0/24": city(95.0, 2.0),
            "193.0.6.0/24": {"country": {"iso_code": "NL"}},
            "193.166.3.0/24": city(60.2, 24.6, "x" * 10_000, "fin"),
            "212.77.98.0/24": {"location": [1, 2]},
        },
    )
    database = Database(path)
    try:
        assert database.current.attribution.startswith("GeoLite2 data created by MaxMind")
        found = database.lookup("192.36.148.17")
        assert (found.result, found.location.coordinates, found.location.country) == (
            FOUND,
            "1.5000,2.2500",
            "AA",
        )
        for ip in ("8.8.8.8", "9.9.9.9", "1.1.1.1", "193.0.6.139", "212.77.98.9"):
            assert database.lookup(ip).result == NO_COORDINATES, ip
        odd = database.lookup("193.166.3.2").location
        assert odd.country == "" and len(odd.city) == 200
    finally:
        database.close()


def test_an_ipv4_only_database_answers_ipv6_with_not_found(tmp_path):
    path = write_mmdb(tmp_path / "v4.mmdb", {"8.8.8.0/24": city(1, 2)}, ip_version=4)
    database = Database(path)
    try:
        assert database.lookup("8.8.8.8").result == FOUND
        got = database.lookup("2001:6b0:7::2")
        assert got.result == NOT_FOUND and "IPv4 only" in got.reason
    finally:
        database.close()


def test_a_replaced_file_is_used_and_a_bad_one_is_not(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = write_mmdb(tmp_path / "city.mmdb", {"192.36.148.0/24": city(1, 2, "A", "AA")})
    database = Database(path)
    try:
        assert database.changed_file() is None  # nothing changed
        assert database.lookup("192.36.148.17").location.country == "AA"
        # replaced atomically: the new file is read, the old one's cached answers are gone
        write_mmdb(path, {"192.36.148.0/24": city(3, 4, "B", "BB")})
        fresh = database.changed_file()
        assert fresh is not None
        database.switch(fresh)
        assert database.lookup("192.36.148.17").location.coordinates == "3.0000,4.0000"
        assert database.reloads["ok"] == 1 and database.problem is None
        # a garbage file does not replace it, is logged once, and shows as the problem
        garbage = tmp_path / "garbage"
        garbage.write_bytes(b"not a database" * 1000)
        os.replace(garbage, path)
        assert database.changed_file() is None
        assert database.changed_file() is None
        assert "not a MaxMind-format database" in database.problem
        assert "still using the database built" in database.problem
        assert database.reloads["failed"] == 1
        assert caplog.text.count("not a MaxMind-format database") == 1
        assert database.lookup("192.36.148.17").location.country == "BB"
        # copied over in place (same inode): a changed size/mtime is enough
        shutil.copyfile(write_mmdb(tmp_path / "c.mmdb", {"8.8.8.0/24": city(5, 6)}), path)
        fresh = database.changed_file()
        assert fresh is not None
        database.switch(fresh)
        assert database.problem is None
        assert database.lookup("8.8.8.8").location.coordinates == "5.0000,6.0000"
        assert database.lookup("192.36.148.17").result == NOT_FOUND
        # deleted: the one in use stays
        path.unlink()
        assert database.changed_file() is None
        assert "cannot stat" in database.problem
        assert database.lookup("8.8.8.8").result == FOUND
    finally:
        database.close()


def test_unusable_files_are_one_clear_error(tmp_path):
    with pytest.raises(DatabaseError, match="does not exist"):
        GeoDatabase(tmp_path / "missing.mmdb")
    with pytest.raises(DatabaseError, match="cannot read"):
        GeoDatabase(tmp_path)
    (tmp_path / "empty.mmdb").write_bytes(b"")
    with pytest.raises(DatabaseError, match="not a MaxMind-format database"):
        GeoDatabase(tmp_path / "empty.mmdb")
    half = tmp_path / "half.mmdb"
    half.write_bytes(default_path().read_bytes()[: 1 << 20])  # a copy cut short
    with pytest.raises(DatabaseError, match="not a MaxMind-format database"):
        GeoDatabase(half)


def test_a_country_database_is_accepted_with_a_warning(tmp_path, caplog):
    path = write_mmdb(
        tmp_path / "country.mmdb",
        {"8.8.8.0/24": {"country": {"iso_code": "US"}}},
        database_type="GeoLite2-Country",
    )
    database = Database(path)
    try:
        assert not database.current.is_city
        assert "not a city database" in caplog.text
        assert database.lookup("8.8.8.8").result == NO_COORDINATES
    finally:
        database.close()


def test_attribution():
    assert "CC BY 4.0" in attribution("DBIP-City-Lite", "")
    assert "CC BY 4.0" not in attribution("DBIP-Location-ISP (compat=City)", "")
    assert "MaxMind" in attribution("GeoLite2-City", "")
    assert "MaxMind" in attribution("GeoIP2-City", "")
    assert attribution("Custom-City", "our own data") == "our own data"
    assert attribution("Custom-City", "") == "Custom-City"
