"""Which powercap zones are counters to read, and which of them make up the host's power.

Pure: works on `ZoneEntry` values that `powercap.discover` reads from the tree. A zone is one
directory, however it is reached (the flat `intel-rapl:0:1` symlink and the nested
`intel-rapl:0/intel-rapl:0:1` directory are the same zone). `intel-rapl-mmio:N` twins repeat
their package's counter and are only used for a socket that has no MSR package zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_KEY = re.compile(r"^(intel-rapl|intel-rapl-mmio):(\d+)(?::(\d+))?$")
_PACKAGE = re.compile(r"^package-(\d+)(?:-die-(\d+))?$")

SOURCE_PSYS = "powercap_rapl_psys"
SOURCE_PKG = "powercap_rapl_pkg"


@dataclass(frozen=True)
class ZoneEntry:
    """What the tree says about one zone directory."""

    key: str  # directory name, e.g. intel-rapl:0:1
    path: str  # resolved directory; its identity
    name: str | None  # contents of the `name` file
    max_range_uj: int | None  # contents of `max_energy_range_uj`
    has_energy: bool  # an `energy_uj` file exists (it may still be unreadable)


@dataclass(frozen=True)
class Zone:
    """A counter the agent reads: a package, a domain (core, uncore, dram...) or psys."""

    key: str
    path: str
    kind: str  # package, psys, or the domain's name (core, uncore, dram, ...)
    socket_id: int | None
    domain_id: int | None
    max_range_uj: int | None

    @property
    def energy_path(self) -> str:
        return f"{self.path}/energy_uj"


@dataclass(frozen=True)
class Topology:
    """The counters to read and how they add up to the host's power."""

    zones: tuple[Zone, ...]
    host_keys: tuple[str, ...]  # psys alone, else package + dram of every socket
    source: str  # Scaphandre's value_source label for host figures
    skipped: tuple[tuple[str, str], ...]  # (zone key, why it is not read)

    @property
    def socket_ids(self) -> tuple[int, ...]:
        return tuple(sorted({z.socket_id for z in self.zones if z.socket_id is not None}))

    def packages(self, socket_id: int) -> tuple[Zone, ...]:
        """The package zones of a socket (more than one on multi-die parts)."""
        return tuple(z for z in self.zones if z.kind == "package" and z.socket_id == socket_id)

    def domains(self) -> tuple[Zone, ...]:
        """Sub-zones (core, uncore, dram, ...) in socket then domain order."""
        subs = [z for z in self.zones if z.domain_id is not None]
        return tuple(sorted(subs, key=lambda z: (z.socket_id, z.domain_id)))


def build_topology(entries: Iterable[ZoneEntry]) -> Topology:
    """Classify zone directories into counters; the mmio twin never double counts."""
    unique: dict[str, ZoneEntry] = {}
    skipped: list[tuple[str, str]] = []
    for entry in entries:
        if entry.path in unique:
            continue  # a flat symlink and its nested directory: one zone
        unique[entry.path] = entry

    tops: dict[str, tuple[ZoneEntry, str]] = {}  # key -> (entry, control)
    subs: list[tuple[ZoneEntry, str, int]] = []  # (entry, parent key, domain index)
    for entry in unique.values():
        match = _KEY.match(entry.key)
        if not match or not entry.has_energy:
            if match:
                skipped.append((entry.key, "no energy_uj file"))
            continue
        control, index, sub = match.groups()
        if sub is None:
            tops[entry.key] = (entry, control)
        else:
            subs.append((entry, f"{control}:{index}", int(sub)))

    zones: dict[str, Zone] = {}
    msr_sockets: set[int] = set()
    mmio: list[tuple[ZoneEntry, int]] = []
    for key, (entry, control) in sorted(tops.items()):
        name = (entry.name or "").strip()
        package = _PACKAGE.match(name)
        if name == "psys" and control == "intel-rapl":
            zones[key] = Zone(key, entry.path, "psys", None, None, entry.max_range_uj)
        elif package and control == "intel-rapl":
            socket_id = int(package.group(1))
            msr_sockets.add(socket_id)
            zones[key] = Zone(key, entry.path, "package", socket_id, None, entry.max_range_uj)
        elif package:
            mmio.append((entry, int(package.group(1))))
        else:
            skipped.append((key, f"unknown zone name {name!r}"))
    for entry, socket_id in mmio:
        if socket_id in msr_sockets:
            skipped.append((entry.key, f"mmio twin of package-{socket_id}, read through MSR"))
            continue
        zones[entry.key] = Zone(
            entry.key, entry.path, "package", socket_id, None, entry.max_range_uj
        )
    for entry, parent_key, domain_id in sorted(subs, key=lambda s: s[0].key):
        parent = zones.get(parent_key)
        if parent is None or parent.kind != "package":
            skipped.append((entry.key, f"parent {parent_key} is not a package read"))
            continue
        kind = (entry.name or "").strip() or f"domain-{domain_id}"
        zones[entry.key] = Zone(
            entry.key, entry.path, kind, parent.socket_id, domain_id, entry.max_range_uj
        )

    ordered = tuple(sorted(zones.values(), key=_order))
    psys = [z.key for z in ordered if z.kind == "psys"]
    if psys:
        host_keys, source = tuple(psys[:1]), SOURCE_PSYS
    else:
        host_keys = tuple(z.key for z in ordered if z.kind in ("package", "dram"))
        source = SOURCE_PKG
    return Topology(ordered, host_keys, source, tuple(sorted(skipped)))


def _order(zone: Zone) -> tuple:
    return (
        zone.socket_id if zone.socket_id is not None else 1 << 30,
        -1 if zone.domain_id is None else zone.domain_id,
        zone.key,
    )


def describe(topology: Topology) -> str:
    """One log line: the zones read, where host power comes from, what is skipped and why."""
    read = ", ".join(f"{z.key} ({z.kind})" for z in topology.zones) or "none"
    skipped = "; ".join(f"{key} ({why})" for key, why in topology.skipped) or "none"
    host = " + ".join(topology.host_keys) or "none"
    return f"RAPL zones read: {read}; host power = {host} ({topology.source}); skipped: {skipped}"
