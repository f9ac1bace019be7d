"""Whose location a host's template holds, and what geo would change in it (pure).

geo owns a host's location attributes only while `GEOLOCATION_SOURCE = "one-geo"` marks
them. A `GEOLOCATION` or `GEOLOCATION_COUNTRY` without that marker, or a
`GEOLOCATION_SOURCE` with any other value, is an operator's: geo leaves that host alone
(the three attributes go together, so a pinned location never gets a country from geo).
"""

from __future__ import annotations

from collections.abc import Mapping

GEOLOCATION = "GEOLOCATION"
COUNTRY = "GEOLOCATION_COUNTRY"
SOURCE = "GEOLOCATION_SOURCE"
MARK = "one-geo"
ATTRIBUTES = (GEOLOCATION, COUNTRY, SOURCE)


def operator_reason(template: Mapping[str, str]) -> str | None:
    """None when geo may write the host's location, else why it is the operator's."""
    source = template.get(SOURCE)
    if source is not None:
        if source.strip() == MARK:
            return None
        return f"{SOURCE} is {source[:60]!r}, not {MARK!r}"
    for name in (GEOLOCATION, COUNTRY):
        if name in template:
            return f"{name} was set without {SOURCE} = {MARK!r} (by hand or by another tool)"
    return None


def changes(template: Mapping[str, str], geolocation: str, country: str) -> dict[str, str]:
    """The attributes to merge so the template says `geolocation` and `country` as geo's.

    Only what differs: an unchanged host costs no write. A country geo wrote before and the
    database no longer knows becomes "" (a merge cannot remove an attribute).
    """
    wanted = {GEOLOCATION: geolocation, COUNTRY: country, SOURCE: MARK}
    return {name: value for name, value in wanted.items() if template.get(name, "") != value}
