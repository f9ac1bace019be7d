"""Carbon figures on disk: the bundled grid table, and the operator's `--carbon-data` file.

The operator's file is re-read when it changes (a cron job writing a grid operator's current
figures plugs in that way). It is parsed and checked whole before it replaces the figures in
use; a file that cannot be read or does not parse leaves the last good figures in place,
and `/healthz` says so until a good version arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from importlib import resources
from pathlib import Path

import yaml

from services.common.health import Health

from .carbon import CarbonDataError, Grid, OperatorFigures, parse_grid, parse_operator_figures

log = logging.getLogger(__name__)

GRID_TABLE = "data/grid_intensity.json"
CHECK = "carbon_data"  # the /healthz check of the operator's file
# A figure per host of a large cloud is well under this.
MAX_FILE = 1024 * 1024
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Stamp = tuple[int, int, int, int, int]


def load_grid() -> Grid:
    """The bundled table (`scripts/make_grid_intensity.py`'s output, shipped as package data)."""
    text = resources.files("services.vm_exporter").joinpath(GRID_TABLE).read_text("utf-8")
    return parse_grid(json.loads(text))


def _stamp(path: Path) -> Stamp:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


def _read(path: Path, grid: Grid) -> OperatorFigures:
    """The file's figures, or CarbonDataError / OSError saying why not (runs in a thread)."""
    with open(path, "rb") as f:
        data = f.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise CarbonDataError(f"over {MAX_FILE} bytes")
    try:
        doc = yaml.load(data, Loader=_LOADER)  # a safe loader: plain data only
    except yaml.YAMLError as exc:
        raise CarbonDataError(f"not YAML: {str(exc)[:200]}") from None
    except RecursionError:
        raise CarbonDataError("not YAML: nested too deeply") from None
    return parse_operator_figures(doc, grid)


class OperatorFile:
    """The `--carbon-data` file: `current()` gives the figures in use, re-reading on change."""

    def __init__(self, path: Path | None, grid: Grid, health: Health) -> None:
        self.path = path
        self._grid = grid
        self._health = health
        self._stamp: Stamp | None = None
        self._figures: OperatorFigures | None = None
        self._loaded_at: float | None = None
        self._error: str | None = None

    def _check(self) -> tuple[Stamp | None, OperatorFigures | Exception | None]:
        """(the file's stamp, its figures or why not, or None when it did not change)."""
        assert self.path is not None
        try:
            stamp = _stamp(self.path)
        except OSError as exc:
            return None, exc
        if stamp == self._stamp:
            return stamp, None
        try:
            return stamp, _read(self.path, self._grid)
        except (OSError, CarbonDataError) as exc:
            return stamp, exc

    async def current(self) -> OperatorFigures | None:
        """The figures in use: the file's newest good version (None when there is none)."""
        if self.path is None:
            return None
        stamp, result = await asyncio.to_thread(self._check)
        if result is None:
            return self._figures
        if isinstance(result, OperatorFigures):
            self._stamp, self._figures, self._loaded_at = stamp, result, time.time()
            log.info(
                "--carbon-data %s: %d host and %d country figures",
                self.path,
                len(result.hosts),
                len(result.countries),
            )
            if self._error is not None:
                self._error = None
                self._health.ok(CHECK)
            return self._figures
        # Unreadable or unparsable: keep the last good figures, and say so until it changes.
        self._stamp = stamp
        reason = str(result.strerror or result) if isinstance(result, OSError) else str(result)
        kept = (
            "keeping the figures read at "
            + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._loaded_at))
            if self._loaded_at is not None
            else "no figures from it yet"
        )
        message = f"--carbon-data {self.path}: {reason}; {kept}"
        if message != self._error:
            log.warning("%s", message)
        self._error = message
        self._health.fail(CHECK, message)
        return self._figures
