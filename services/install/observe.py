"""Reading what install needs: the source tree's files, the machine's paths, oned's hooks."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from services.common.oned import Hook, Oned

from .hookspec import HookTemplateError, hook_spec
from .plan import DIRECTORY, MISSING, PathState, Want, WantHook
from .table import HOOKS, HOST, ITEMS, TOKEN_FILE, UNIT_DIR, Item, render_unit, unit_name

# Files compared or backed up are small scripts and units; anything bigger is not ours.
MAX_READ = 16 * 1024 * 1024


class SourceError(Exception):
    """The source tree lacks something install needs (exit 2)."""


def at(root: Path, path: str) -> Path:
    """`path` (absolute on the machine) under `root`."""
    return root / path.lstrip("/")


def read_source(source: Path, relative: str) -> bytes:
    try:
        return (source / relative).read_bytes()
    except OSError as exc:
        raise SourceError(
            f"cannot read {source / relative}: {exc.strerror or exc} "
            "(--source must be a one-cognit checkout)"
        ) from None


def new_token() -> bytes:
    """A fresh bearer token: 32 random bytes, URL-safe text."""
    return (secrets.token_urlsafe(32) + "\n").encode()


def load_wants(
    role: str,
    source: Path,
    bin_dir: str,
    skip: Iterable[str],
    token: bytes | None,
    items: Sequence[Item] = ITEMS,
) -> tuple[list[Want], list[WantHook]]:
    """The files and hooks of `role` from the source tree; token None: generate one if needed."""
    skipped = set(skip)
    wants: list[Want] = []
    for item in items:
        if item.role != role or item.service in skipped:
            continue
        content = read_source(source, item.source)
        if item.unit:
            content = render_unit(content.decode(), bin_dir).encode()
        wants.append(
            Want(
                role,
                item.service,
                item.target,
                content,
                item.mode,
                f"{item.service} {item.what}",
                keep_original=item.keep_original,
            )
        )
    if role == HOST and "tunnel_agent" not in skipped:
        wants.append(
            Want(
                HOST,
                "tunnel_agent",
                TOKEN_FILE,
                token if token is not None else new_token(),
                0o600,
                "bearer token of the tunnel agents and the migrate shim",
                owner="oneadmin",
                replace=token is not None,
            )
        )
    hooks: list[WantHook] = []
    for group in HOOKS:
        if role != "frontend" or group.service in skipped:
            continue
        files = sorted(source.glob(group.pattern))
        if not files:
            raise SourceError(f"no hook templates match {source / group.pattern}")
        for path in files:
            text = read_source(source, str(path.relative_to(source))).decode(errors="replace")
            try:
                spec = hook_spec(text, str(path.relative_to(source)))
            except HookTemplateError as exc:
                raise SourceError(str(exc)) from None
            hooks.append(WantHook(role, group.service, spec, str(path.relative_to(source))))
    return wants, hooks


def look(root: Path, paths: Iterable[str], read: Iterable[str]) -> dict[str, PathState]:
    """The state of each path under `root`; content for the paths in `read` that are files."""
    wanted = set(read)
    out: dict[str, PathState] = {}
    for path in paths:
        real = at(root, path)
        try:
            info = real.stat()
        except FileNotFoundError:
            out[path] = MISSING
            continue
        except NotADirectoryError:
            out[path] = PathState("other")  # a file stands where a directory should
            continue
        if stat.S_ISDIR(info.st_mode):
            out[path] = DIRECTORY
        elif not stat.S_ISREG(info.st_mode):
            out[path] = PathState("other")
        elif path in wanted and info.st_size <= MAX_READ:
            out[path] = PathState("file", real.read_bytes(), stat.S_IMODE(info.st_mode))
        else:
            out[path] = PathState("file", None, stat.S_IMODE(info.st_mode))
    return out


def read_optional(path: Path) -> bytes | None:
    """A file's bytes, None when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def enabled_units(root: Path, services: Iterable[str]) -> list[str]:
    """Units of `services` that systemd would start at boot (a link in a .wants directory)."""
    out = []
    for service in services:
        name = unit_name(service) + ".service"
        wants_dirs = at(root, UNIT_DIR).glob("*.wants")
        if any(os.path.lexists(d / name) for d in wants_dirs):
            out.append(name)
    return out


async def registered_hooks(oned: Oned) -> Mapping[str, Hook]:
    """oned's hooks by name."""
    return {hook.name: hook for hook in (await oned.hook_pool()).items}
