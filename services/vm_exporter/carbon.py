"""Grams of CO2e per VM and per host: each host's grid intensity, and the counters (pure).

A host's intensity (gCO2e per kWh) comes from the first source that has one:
1. the host template's `CARBON_INTENSITY`, the operator's own figure (supplier, PPA); a value
   that is not a number, negative or over `MAX_INTENSITY` is ignored (and reported) and the
   next source is used;
2. the operator's `--carbon-data` file: a figure for the host (by ID or NAME), else for its
   country;
3. the yearly average of the host's country (`GEOLOCATION_COUNTRY`, ISO 3166-1 alpha-2,
   written by geo) from the bundled table (`data/grid_intensity.json`);
4. the world average of that table.
Each refresh, a VM's carbon counter grows by its energy increase times the intensity of the
host where that energy was used, so a VM that migrates accrues each host's own rate; a host's
counter grows by the host's own energy increase times its intensity. Like the energy
counters, they never decrease while the exporter runs, and unknown energy adds nothing.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from services.common.oned import Host, Vm

from .energy import EnergyTotal
from .join import Attribution

# The dirtiest grids are ~1,000-1,200 gCO2e/kWh (lignite, oil); twice the worst is not a grid.
MAX_INTENSITY = 2000.0
UJ_PER_KWH = 3_600_000_000_000  # 1 kWh = 3.6 MJ = 3.6e12 uJ
# Where a figure came from: the `source` label of the info series.
TEMPLATE, DATA_FILE, COUNTRY, WORLD = "template", "data_file", "country", "world"
_ALPHA2 = re.compile(r"[A-Za-z]{2}")
_ALPHA3 = re.compile(r"[A-Za-z]{3}")


class CarbonDataError(ValueError):
    """A grid-intensity table or an operator's file that cannot be used as it is."""


@dataclasses.dataclass(frozen=True, slots=True)
class Intensity:
    """One host's grid intensity and where it came from (labels of the info series)."""

    gco2e_per_kwh: float
    source: str
    country: str = ""  # the host's country (alpha-2) when known
    year: str = ""  # the year of the figure, when its source says


@dataclasses.dataclass(frozen=True, slots=True)
class Grid:
    """The bundled table: each country's yearly average, the world's, and ISO 3166-1 codes."""

    world: float
    world_year: str
    countries: Mapping[str, tuple[float, str]]  # alpha-2 -> (gCO2e/kWh, year)
    alpha2_to_3: Mapping[str, str]  # every ISO 3166-1 country
    alpha3_to_2: Mapping[str, str]

    def alpha2(self, code: str) -> str | None:
        """The ISO 3166-1 alpha-2 code of an alpha-2 or alpha-3 code in any case, else None."""
        code = code.strip().upper()
        if _ALPHA2.fullmatch(code):
            return code if code in self.alpha2_to_3 else None
        if _ALPHA3.fullmatch(code):
            return self.alpha3_to_2.get(code)
        return None


def _figure(value: object) -> float | None:
    """A plausible intensity, None for anything else (text, bool, NaN, < 0, > MAX)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    value = float(value)
    if not math.isfinite(value) or not 0 <= value <= MAX_INTENSITY:
        return None
    return value


def parse_grid(doc: Any) -> Grid:
    """The bundled table (`scripts/make_grid_intensity.py`'s output); CarbonDataError if not."""
    try:
        world = _figure(doc["world"]["gco2e_per_kwh"])
        to3 = {str(a2): str(a3) for a2, a3 in doc["iso3166"].items()}
        to2 = {a3: a2 for a2, a3 in to3.items()}
        countries = {}
        for alpha2, row in doc["countries"].items():
            value = _figure(row["gco2e_per_kwh"])
            if value is None or to3.get(alpha2) != row["alpha3"]:
                raise CarbonDataError(f"grid table: bad entry for {alpha2!r}")
            countries[alpha2] = (value, str(row["year"]))
        if world is None or len(to2) != len(to3):
            raise CarbonDataError("grid table: bad world average or ISO 3166-1 codes")
        return Grid(
            world,
            str(doc["world"]["year"]),
            MappingProxyType(countries),
            MappingProxyType(to3),
            MappingProxyType(to2),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise CarbonDataError(f"grid table: missing or malformed {exc}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorFigures:
    """An operator's `--carbon-data` file: figures per host (ID or NAME) and per country."""

    hosts: Mapping[str, float]  # host ID (as text) or NAME -> gCO2e/kWh
    countries: Mapping[str, float]  # alpha-2 -> gCO2e/kWh
    year: str = ""


# An operator's file is small; more entries than this is not a list of hosts and countries.
MAX_ENTRIES = 100_000


def parse_operator_figures(doc: Any, grid: Grid) -> OperatorFigures:
    """`{countries: {SE: 45, POL: 610}, hosts: {node7: 30, "12": 120}, year: 2024}`, all keys
    optional; CarbonDataError naming the first thing that is wrong (the file is used whole
    or not at all)."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise CarbonDataError("expected a mapping with 'countries' and/or 'hosts'")
    unknown = set(doc) - {"countries", "hosts", "year"}
    if unknown:
        raise CarbonDataError(f"unknown key(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    parts: dict[str, dict[str, float]] = {}
    for part in ("countries", "hosts"):
        entries = doc.get(part) or {}
        if not isinstance(entries, dict):
            raise CarbonDataError(f"'{part}' must map names to gCO2e/kWh figures")
        if len(entries) > MAX_ENTRIES:
            raise CarbonDataError(f"'{part}' has over {MAX_ENTRIES} entries")
        out: dict[str, float] = {}
        for key, raw in entries.items():
            value = _figure(raw)
            if value is None:
                raise CarbonDataError(
                    f"{part}.{str(key)[:60]}: {str(raw)[:60]!r} is not a figure between 0 and "
                    f"{MAX_INTENSITY:g} gCO2e/kWh"
                )
            name = str(key).strip()
            if part == "countries":
                code = grid.alpha2(name)
                if code is None:
                    raise CarbonDataError(f"countries.{name[:60]}: not an ISO 3166-1 code")
                name = code
            out[name] = value
        parts[part] = out
    year = doc.get("year")
    return OperatorFigures(
        MappingProxyType(parts["hosts"]),
        MappingProxyType(parts["countries"]),
        "" if year is None else str(year)[:16],
    )


def host_intensity(
    host: Host, figures: OperatorFigures | None, grid: Grid
) -> tuple[Intensity, tuple[str, ...]]:
    """The host's intensity by the rules above, and what was wrong on the way (for a log)."""
    problems: list[str] = []
    country_text = host.attr("GEOLOCATION_COUNTRY")
    country = ""
    if country_text is not None and country_text.strip():
        code = grid.alpha2(country_text) if len(country_text) <= 3 else None
        if code is None:
            problems.append(
                f"GEOLOCATION_COUNTRY {country_text[:40]!r} is not an ISO 3166-1 country"
            )
        else:
            country = code
    own = host.attr("CARBON_INTENSITY")
    if own is not None:
        value = _figure(own)
        if value is not None:
            return Intensity(value, TEMPLATE, country), tuple(problems)
        problems.append(
            f"CARBON_INTENSITY {own[:40]!r} is not a figure between 0 and {MAX_INTENSITY:g} "
            "gCO2e/kWh; using the next source"
        )
    if figures is not None:
        for key in (str(host.id), host.name):
            if key in figures.hosts:
                return Intensity(figures.hosts[key], DATA_FILE, country, figures.year), tuple(
                    problems
                )
        if country and country in figures.countries:
            value = figures.countries[country]
            return Intensity(value, DATA_FILE, country, figures.year), tuple(problems)
    if country in grid.countries:
        value, year = grid.countries[country]
        return Intensity(value, COUNTRY, country, year), tuple(problems)
    return Intensity(grid.world, WORLD, country, grid.world_year), tuple(problems)


def grams(energy_uj: int, intensity: Intensity) -> float:
    """Grams of CO2e of `energy_uj` microjoules drawn at `intensity`."""
    return energy_uj * intensity.gco2e_per_kwh / UJ_PER_KWH


def accrue_vms(
    carbon: Mapping[int, float],
    before: Mapping[int, EnergyTotal],
    after: Mapping[int, EnergyTotal],
    vms: Iterable[Vm],
    attributions: Mapping[int, Attribution],
    intensities: Mapping[int, Intensity],
) -> dict[int, float]:
    """VM carbon after one refresh: each VM's energy increase at its host's intensity.

    A VM has a carbon series exactly when it has an energy series; VMs that left the pool
    are dropped. The increase was drawn where this refresh's reading came from.
    """
    out: dict[int, float] = {}
    for vm in vms:
        energy = after.get(vm.id)
        if energy is None:
            continue
        total = carbon.get(vm.id, 0.0)
        previous = before.get(vm.id)
        added = energy.total_uj - (previous.total_uj if previous is not None else 0)
        attribution = attributions.get(vm.id)
        source = attribution.source if attribution is not None else None
        if added > 0 and source is not None and source[0] in intensities:
            total += grams(added, intensities[source[0]])
        out[vm.id] = total
    return out


def accrue_hosts(
    carbon: Mapping[int, float],
    before: Mapping[int, EnergyTotal],
    after: Mapping[int, EnergyTotal],
    intensities: Mapping[int, Intensity],
) -> dict[int, float]:
    """Host carbon after one refresh: each host's own energy increase at its intensity."""
    out: dict[int, float] = {}
    for host_id, energy in after.items():
        total = carbon.get(host_id, 0.0)
        previous = before.get(host_id)
        added = energy.total_uj - (previous.total_uj if previous is not None else 0)
        if added > 0 and host_id in intensities:
            total += grams(added, intensities[host_id])
        out[host_id] = total
    return out
