"""`one-cognit install --frontend|--host` and `one-cognit uninstall`: flags, report, exit codes.

Exit codes: 0 done (or nothing to do); 1 failed and nothing is changed (a precondition,
oned unreachable, a conflict, or a step that failed and whose run was undone); 2 bad flags
or an unusable source tree; 3 a step failed and undoing the run failed too (what is left is
listed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from services.common.config import load_config, option
from services.common.errors import ConfigError, OneError
from services.common.oned import Oned, OneOptions, read_one_auth

from .apply import ApplyError, Executor
from .manifest import Manifest, ManifestError, parse_manifest
from .observe import (
    SourceError,
    at,
    enabled_units,
    load_wants,
    look,
    read_optional,
    read_source,
    registered_hooks,
)
from .onedconf import conf_block, missing_lines
from .plan import PathState, Plan, paths_to_look_at, plan_install, plan_uninstall
from .steps import WriteFile
from .table import (
    AUTH_SNIPPET,
    BACKUP_DIR,
    FRONTEND,
    HOST,
    ITEMS,
    MANIFEST,
    ONED_CONF,
    REMOTES,
    SERVICES,
    TOKEN_FILE,
    unit_name,
)

OK, FAILED, USAGE, HALF_DONE = 0, 1, 2, 3
KNOWN_SERVICES = sorted({i.service for i in ITEMS} | {"discovery", "geo", "tunnel_agent"})
SOURCE = Path(__file__).resolve().parents[2]


def _default_bin_dir() -> Path:
    """Where this installation's console scripts are (units run them from there)."""
    here = Path(sys.executable).parent
    if (here / "one-rapl-agent").exists():
        return here
    found = shutil.which("one-rapl-agent")
    return Path(found).parent if found else here


def _parse_skip(value: object) -> tuple[str, ...]:
    names = tuple(n.strip() for n in str(value).split(",") if n.strip())
    unknown = sorted(set(names) - set(KNOWN_SERVICES))
    if unknown:
        raise ValueError(
            f"unknown service(s) {', '.join(unknown)}; known: {', '.join(KNOWN_SERVICES)}"
        )
    return names


@dataclasses.dataclass(frozen=True)
class UninstallConfig(OneOptions):
    """Flags of `one-cognit uninstall` (and the ones install shares)."""

    frontend: bool = option(False, "the OpenNebula frontend's part")
    host: bool = option(False, "a KVM host's part")
    dry_run: bool = option(False, "print every step and change nothing")
    root: Path = option(Path("/"), "prefix of every path (a test tree, an image being built)")

    def roles(self) -> list[str]:
        return [r for r, on in ((FRONTEND, self.frontend), (HOST, self.host)) if on]


@dataclasses.dataclass(frozen=True)
class InstallConfig(UninstallConfig):
    """Flags of `one-cognit install`."""

    source: Path = option(SOURCE, "one-cognit checkout holding the shims, hooks and units")
    bin_dir: Path = option(
        factory=_default_bin_dir, help="directory of the one-* programs the units start"
    )
    skip: tuple[str, ...] = option(
        (), "services to leave out, comma-separated", parse=_parse_skip, metavar="NAMES"
    )
    token_file: Path | None = option(
        None,
        f"host: install this file's token as {TOKEN_FILE} (the same on every host); "
        "default: keep the one there, else write a new random one",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frontend == self.host:
            raise ValueError("give exactly one of --frontend and --host")


class Failure(Exception):
    """The command stops with this message and exit code."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@contextlib.asynccontextmanager
async def _oned(config: OneOptions, needed: bool) -> AsyncIterator[Oned | None]:
    if not needed:
        yield None
        return
    try:
        auth = read_one_auth(config.one_auth)
    except ConfigError as exc:
        raise Failure(str(exc), USAGE) from None
    async with Oned.connect(config.one_xmlrpc, auth, timeout=config.one_timeout) as oned:
        yield oned


async def _hooks(oned: Oned | None) -> dict:
    if oned is None:
        return {}
    try:
        return dict(await registered_hooks(oned))
    except OneError as exc:
        raise Failure(f"cannot read oned's hooks: {exc.message}; nothing was changed") from None


def _look(root: Path, paths: set[str], readable: set[str]) -> dict[str, PathState]:
    try:
        return look(root, paths, readable)
    except OSError as exc:
        raise Failure(f"cannot read {exc.filename}: {exc.strerror}; nothing was changed") from None


def _manifest(root: Path) -> Manifest:
    path = at(root, MANIFEST)
    try:
        return parse_manifest(read_optional(path))
    except (ManifestError, OSError) as exc:
        raise Failure(
            f"cannot use the install manifest {path}: {exc}; nothing was changed"
        ) from None


async def _run(
    plan: Plan, config: UninstallConfig, oned: Oned | None, out: Callable[[str], None], title: str
) -> None:
    for note in plan.notes:
        out(f"  note: {note}")
    if plan.conflicts:
        for conflict in plan.conflicts:
            out(f"  conflict: {conflict}")
        raise Failure(f"{len(plan.conflicts)} conflict(s), listed above; nothing was changed")
    if not plan.steps:
        out(f"{title}: nothing to change")
        return
    if config.dry_run:
        out(f"{title}: {len(plan.steps)} step(s) it would take (--dry-run: nothing is changed)")
        for n, step in enumerate(plan.steps, 1):
            out(f"  [{n}/{len(plan.steps)}] would {step.describe()}")
        return
    out(f"{title}: {len(plan.steps)} step(s)")
    try:
        await Executor(config.root, oned, out).run(plan.steps)
    except ApplyError as exc:
        if exc.undo_failures:
            left = "; ".join(exc.undo_failures)
            raise Failure(
                f"{exc}; undoing the run failed too, still changed: {left}", HALF_DONE
            ) from None
        raise Failure(f"{exc}; every change of this run was undone") from None


def _frontend_advice(config: InstallConfig, block: str, out: Callable[[str], None]) -> None:
    conf = at(config.root, ONED_CONF)
    try:
        text = conf.read_text(errors="replace")
    except OSError:
        text = None
    lines = [] if "authd" in config.skip else missing_lines(text, block, ONED_CONF)
    if lines:
        out(f"oned.conf: {ONED_CONF} lacks the biscuit auth driver; install does not edit it.")
        out("Add these lines, then restart oned (systemctl restart opennebula):")
        for line in lines:
            out(f"    {line}")
    elif "authd" not in config.skip:
        out(f"oned.conf: {ONED_CONF} already enables the biscuit auth driver")
    out("Then, as oneadmin, send the new remotes to every host: onehost sync --force")
    _unit_advice(config, FRONTEND, out)


def _unit_advice(config: InstallConfig, role: str, out: Callable[[str], None]) -> None:
    units = [unit_name(s) for s in SERVICES[role] if s not in config.skip]
    missing = [u for u in units if not (config.bin_dir / u).exists()]
    if missing:
        out(f"warning: {', '.join(missing)} not found in {config.bin_dir} (--bin-dir)")
    out(f"Start the services: systemctl daemon-reload && systemctl enable --now {' '.join(units)}")


async def install(config: InstallConfig, out: Callable[[str], None]) -> None:
    """Put this machine's part of one-cognit in place (shims, hooks, units), recorded so that
    `one-cognit uninstall` undoes exactly that; a failed run undoes itself."""
    role = FRONTEND if config.frontend else HOST
    title = f"one-cognit install --{role}" + (
        f" (root {config.root})" if str(config.root) != "/" else ""
    )
    if not config.root.is_dir():
        raise Failure(f"--root {config.root} is not a directory", USAGE)
    if role == FRONTEND and not at(config.root, REMOTES).is_dir():
        raise Failure(
            f"no OpenNebula remotes directory at {at(config.root, REMOTES)}: run this on the "
            "OpenNebula frontend; nothing was changed"
        )
    token = None
    if config.token_file is not None:
        try:
            token = config.token_file.read_bytes()
        except OSError as exc:
            raise Failure(
                f"cannot read --token-file {config.token_file}: {exc.strerror}", USAGE
            ) from None
        if not token.strip():
            raise Failure(f"--token-file {config.token_file} is empty", USAGE)
    try:
        wants, hooks = load_wants(role, config.source, str(config.bin_dir), config.skip, token)
        block = conf_block(read_source(config.source, AUTH_SNIPPET).decode())
    except (SourceError, ValueError) as exc:
        raise Failure(str(exc), USAGE) from None
    manifest = _manifest(config.root)
    async with _oned(config, bool(hooks)) as oned:
        registered = await _hooks(oned)
        paths = paths_to_look_at(wants, manifest, MANIFEST, BACKUP_DIR)
        readable = {w.path for w in wants} | {e.path for e in manifest.entries if e.kind == "file"}
        state = _look(config.root, paths, readable)
        plan = plan_install(
            role,
            wants,
            hooks,
            state,
            registered,
            manifest,
            manifest_path=MANIFEST,
            backup_dir=BACKUP_DIR,
        )
        await _run(plan, config, oned, out, title)
    new_token = any(isinstance(s, WriteFile) and s.path == TOKEN_FILE for s in plan.steps)
    if token is None and new_token and not config.dry_run:
        out(
            f"A new token is in {TOKEN_FILE}: every host's agents and migrate shim need the same "
            "one; install the other hosts with --token-file (a copy of this file)."
        )
    if role == FRONTEND:
        _frontend_advice(config, block, out)
    else:
        out(
            "Load the RAPL drivers now (from now on they load at boot): "
            "modprobe intel_rapl_common intel_rapl_msr"
        )
        _unit_advice(config, HOST, out)


async def uninstall(config: UninstallConfig, out: Callable[[str], None]) -> None:
    """Undo what `one-cognit install` recorded in its manifest (both roles unless one is
    given): files removed and backups put back, hooks deleted or restored, nothing else."""
    roles = config.roles() or [FRONTEND, HOST]
    title = "one-cognit uninstall" + "".join(f" --{r}" for r in config.roles())
    if not config.root.is_dir():
        raise Failure(f"--root {config.root} is not a directory", USAGE)
    manifest = _manifest(config.root)
    chosen = [e for e in manifest.entries if e.role in roles]
    if not chosen:
        where = at(config.root, MANIFEST)
        out(f"{title}: nothing to undo: {where} records no install of {' or '.join(roles)}")
        return
    services = [s for r in roles for s in SERVICES[r]]
    enabled = enabled_units(config.root, services)
    if enabled and not config.dry_run:
        raise Failure(
            f"{', '.join(enabled)} still enabled: first run systemctl disable --now "
            f"{' '.join(u.removesuffix('.service') for u in enabled)}; nothing was changed"
        )
    needs_oned = any(e.kind == "hook" for e in chosen)
    async with _oned(config, needs_oned) as oned:
        registered = await _hooks(oned)
        paths = paths_to_look_at([], manifest, MANIFEST, BACKUP_DIR)
        readable = {e.path for e in manifest.entries if e.kind == "file"}
        state = _look(config.root, paths, readable)
        plan = plan_uninstall(roles, state, registered, manifest, manifest_path=MANIFEST)
        await _run(plan, config, oned, out, title)
    if FRONTEND in roles:
        out("Then, as oneadmin, send the remotes to every host again: onehost sync --force")


def main(command: str, argv: Sequence[str]) -> None:
    """`one-cognit install|uninstall ...`: run, report on stdout, exit with the code above."""
    prog = f"one-cognit {command}"
    out = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if command == "install":
            config = load_config(InstallConfig, argv, prog=prog, description=install.__doc__ or "")
            asyncio.run(install(config, out))
        else:
            config = load_config(
                UninstallConfig, argv, prog=prog, description=uninstall.__doc__ or ""
            )
            asyncio.run(uninstall(config, out))
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(USAGE) from None
    except Failure as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        raise SystemExit(exc.code) from None
    raise SystemExit(OK)
