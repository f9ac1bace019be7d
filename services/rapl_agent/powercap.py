"""Reading the powercap tree: zone discovery and energy counters (the I/O side of zones.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .zones import Topology, ZoneEntry, build_topology

_DENIED_HINT = (
    "permission denied (energy_uj is readable by root only since kernel 5.10: "
    "run the agent as root or give it CAP_DAC_READ_SEARCH)"
)


class CounterError(Exception):
    """A zone's energy_uj could not be read or parsed; the message says why."""


def _read_small(path: str) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 256).decode("ascii", "replace")
    finally:
        os.close(fd)


def _entry(key: str, path: str) -> ZoneEntry:
    try:
        name: str | None = _read_small(f"{path}/name").strip()
    except OSError:
        name = None
    try:
        max_range: int | None = int(_read_small(f"{path}/max_energy_range_uj"))
    except (OSError, ValueError):
        max_range = None
    return ZoneEntry(key, path, name, max_range, os.path.lexists(f"{path}/energy_uj"))


def discover(root: Path) -> Topology:
    """Every zone under `root`, reached by flat symlink or nested directory, classified."""
    entries: list[ZoneEntry] = []
    try:
        children = sorted(os.listdir(root))
    except OSError:
        return build_topology(())
    for child in children:
        path = os.path.realpath(root / child)
        if not os.path.isdir(path):
            continue
        entries.append(_entry(child, path))
        try:
            nested = sorted(os.listdir(path))
        except OSError:
            continue
        for sub in nested:
            sub_path = os.path.join(path, sub)
            if sub.startswith(child + ":") and os.path.isdir(sub_path):
                entries.append(_entry(sub, os.path.realpath(sub_path)))
    return build_topology(entries)


def read_counter(path: str) -> int:
    """A zone's raw energy_uj, or CounterError naming the zone and the reason."""
    try:
        text = _read_small(path)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            reason = _DENIED_HINT
        elif exc.errno == errno.ENOENT:
            reason = "the file vanished"
        else:
            reason = exc.strerror or str(exc)
        raise CounterError(f"cannot read {path}: {reason}") from None
    value = text.strip()
    if not value:
        raise CounterError(f"{path} is empty, not a counter")
    if not value.isdigit():
        raise CounterError(f"{path} holds {value[:40]!r}, not a counter")
    return int(value)


def read_counters(topology: Topology) -> tuple[dict[str, int], dict[str, str]]:
    """Raw counters that read well, and the reason for each that did not, by zone key."""
    values: dict[str, int] = {}
    errors: dict[str, str] = {}
    for zone in topology.zones:
        try:
            values[zone.key] = read_counter(zone.energy_path)
        except CounterError as exc:
            errors[zone.key] = str(exc)
    return values, errors
