"""Small MaxMind-format databases written for a test (mmdb-writer), beside the real DB-IP one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def city(latitude: Any, longitude: Any, name: str = "", country: str = "") -> dict[str, Any]:
    """A record shaped like GeoLite2-City's (only the fields geo reads)."""
    record: dict[str, Any] = {"location": {"latitude": latitude, "longitude": longitude}}
    if name:
        record["city"] = {"names": {"en": name}}
    if country:
        record["country"] = {"iso_code": country, "names": {"en": f"Country {country}"}}
    return record


def write_mmdb(
    path: Path,
    networks: dict[str, dict[str, Any]],
    *,
    database_type: str = "GeoLite2-City",
    ip_version: int = 6,
) -> Path:
    """Write a database whose networks map to the given records; atomically (tmp + rename)."""
    writer = MMDBWriter(
        ip_version=ip_version,
        database_type=database_type,
        languages=["en"],
        description={"en": f"one-cognit test database {path.name}"},
        ipv4_compatible=ip_version == 6,
    )
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    tmp = path.with_name(path.name + ".tmp")
    writer.to_db_file(str(tmp))
    os.replace(tmp, path)
    return path
