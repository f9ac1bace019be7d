"""What geo found out about one host, and what it did about it (pure data)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .addresses import Address
from .database import Lookup
from .ownership import ATTRIBUTES, MARK, SOURCE

WRITTEN = "written"  # geo wrote GEOLOCATION (it differed)
UNCHANGED = "unchanged"  # the template already says what geo found
OPERATOR = "operator"  # the location is an operator's: left alone
NO_PUBLIC_ADDRESS = "no_public_address"
NO_MATCH = "no_match"  # public addresses, none of them in the database with coordinates
UPDATE_FAILED = "update_failed"  # oned refused or did not answer the write
ERROR = "error"  # a fault in geo itself; logged with its traceback
OUTCOMES = (WRITTEN, UNCHANGED, OPERATOR, NO_PUBLIC_ADDRESS, NO_MATCH, UPDATE_FAILED, ERROR)


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class Found:
    """The addresses each source gave, which source was used and what the database said."""

    addresses: tuple[Address, ...] = ()
    sources: Mapping[str, str] = dataclasses.field(default_factory=_empty)
    used: str | None = None
    lookups: tuple[Lookup, ...] = ()

    @property
    def locations(self) -> list:
        return [lookup.location for lookup in self.lookups if lookup.location is not None]


@dataclasses.dataclass(frozen=True)
class Report:
    """One host's last check, as `GET /v1/hosts` shows it."""

    host_id: int
    name: str
    hostname: str
    state: int
    outcome: str
    reason: str
    found: Found = dataclasses.field(default_factory=Found)
    geolocation: str = ""  # what geo found ("" when nothing)
    country: str = ""
    template: Mapping[str, str] = dataclasses.field(default_factory=_empty)
    checked_at: float = dataclasses.field(default_factory=time.time)

    @property
    def geo_owned(self) -> bool:
        """True when the template's location attributes are geo's (marked one-geo)."""
        return self.template.get(SOURCE, "").strip() == MARK

    def as_json(self) -> dict[str, Any]:
        found = self.found
        return {
            "id": self.host_id,
            "name": self.name,
            "hostname": self.hostname,
            "state": self.state,
            "addresses": [address.as_json() for address in found.addresses],
            "sources": dict(found.sources),
            "used_source": found.used,
            "locations": [
                {
                    "ip": lookup.ip,
                    "result": lookup.result,
                    **(
                        {
                            "latitude": lookup.location.latitude,
                            "longitude": lookup.location.longitude,
                            "city": lookup.location.city,
                            "country": lookup.location.country,
                        }
                        if lookup.location is not None
                        else {"reason": lookup.reason}
                    ),
                }
                for lookup in found.lookups
            ],
            "found": {"GEOLOCATION": self.geolocation, "GEOLOCATION_COUNTRY": self.country},
            "template": {name: self.template[name] for name in ATTRIBUTES if name in self.template},
            "written_by_geo": self.geo_owned,
            "outcome": self.outcome,
            "reason": self.reason,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.checked_at)),
        }
