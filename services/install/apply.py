"""Doing the planned steps, each undone (newest first) when a later one fails."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import pwd
import stat
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from services.common.errors import OneError
from services.common.oned import Oned
from services.common.oned.templates import TemplateValueError

from .observe import at
from .steps import (
    AllocateHook,
    CopyFile,
    DeleteHook,
    MakeDir,
    Move,
    RemoveDir,
    RemoveFile,
    Step,
    UpdateHook,
    WriteFile,
    WriteManifest,
)

Undo = Callable[[], Awaitable[None]]


class ApplyError(Exception):
    """A step failed; `undo_failures` lists what could not be undone (empty: all was)."""

    def __init__(self, step: Step, reason: str, undo_failures: list[str]) -> None:
        super().__init__(f"{step.describe()}: failed: {reason}")
        self.step = step
        self.reason = reason
        self.undo_failures = undo_failures


@dataclasses.dataclass(frozen=True)
class _Prior:
    """A file as it was before a step touched it (to put it back)."""

    content: bytes
    mode: int
    uid: int
    gid: int


def _prior(path: Path) -> _Prior | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return _Prior(path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)


def _owner(path: Path, owner: str) -> tuple[int, int] | None:
    """uid/gid a new file or directory gets (None: the writer's, when not running as root)."""
    if os.geteuid() != 0:
        return None
    if owner == "oneadmin":
        try:
            user = pwd.getpwnam("oneadmin")
        except KeyError:
            return (0, 0)
        return (user.pw_uid, user.pw_gid)
    info = path.parent.stat()
    return (info.st_uid, info.st_gid)


def write_atomic(path: Path, content: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    """Write beside `path`, set mode and owner, fsync, then rename over it."""
    tmp = path.with_name(f".{path.name}.one-cognit-tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            os.fchmod(f.fileno(), mode)
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _put_back(path: Path, prior: _Prior | None) -> None:
    if prior is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        write_atomic(path, prior.content, prior.mode, (prior.uid, prior.gid))


def _vm_custom(template: dict[str, str]) -> dict[str, str]:
    """A stored VM hook template made allocatable again: its STATE/LCM_STATE with ON=CUSTOM."""
    return {**template, "ON": "CUSTOM"} if template.get("RESOURCE") == "VM" else template


class Executor:
    """Runs steps under `root`, reporting each; on a failure undoes what it did, newest first."""

    def __init__(self, root: Path, oned: Oned | None, report: Callable[[str], None]) -> None:
        self.root = root
        self.oned = oned
        self.report = report
        self._undo: list[tuple[str, Undo]] = []
        self._label = ""

    def _path(self, path: str) -> Path:
        return at(self.root, path)

    def _api(self) -> Oned:
        if self.oned is None:
            raise OneError("no oned connection for a hook step")
        return self.oned

    async def run(self, steps: Sequence[Step]) -> None:
        """Every step, or none: raises ApplyError after undoing the steps already done."""
        total = len(steps)
        for n, step in enumerate(steps, 1):
            self._label = f"[{n}/{total}] {step.describe()}"
            try:
                result = await self._do(step)
            except (OSError, OneError, TemplateValueError) as exc:
                reason = getattr(exc, "message", None) or _os_reason(exc)
                self.report(f"  {self._label}: FAILED: {reason}")
                raise ApplyError(step, reason, await self._rollback()) from None
            self.report(f"  {self._label}: {result}")

    async def _rollback(self) -> list[str]:
        if self._undo:
            self.report(f"  undoing the {len(self._undo)} change(s) this run made, newest first:")
        failures = []
        while self._undo:
            label, undo = self._undo.pop()
            try:
                await undo()
                self.report(f"  undo {label}: done")
            except (OSError, OneError, TemplateValueError) as exc:
                reason = getattr(exc, "message", None) or _os_reason(exc)
                self.report(f"  undo {label}: FAILED: {reason}")
                failures.append(f"{label}: {reason}")
        return failures

    def _remember(self, undo: Callable[[], None | Awaitable[None]]) -> None:
        """How to undo the step being done (kept until the run ends)."""

        async def run() -> None:
            result = undo()
            if result is not None:
                await result

        self._undo.append((self._label, run))

    async def _do(self, step: Step) -> str:
        """Do one step, remember how to undo it; what to report ("done", or more)."""
        if isinstance(step, MakeDir):
            path = self._path(step.path)
            owner = _owner(path, "parent")
            path.mkdir(mode=step.mode)
            self._remember(path.rmdir)
            os.chmod(path, step.mode)  # not narrowed by the umask
            if owner is not None:
                os.chown(path, *owner)
        elif isinstance(step, Move):
            src, dst = self._path(step.path), self._path(step.to)
            if os.path.lexists(dst):
                raise FileExistsError(errno.EEXIST, "destination exists", str(dst))
            os.rename(src, dst)
            self._remember(lambda: os.rename(dst, src))
        elif isinstance(step, CopyFile):
            src, dst = self._path(step.path), self._path(step.to)
            prior, source = _prior(dst), _prior(src)
            if source is None:
                raise FileNotFoundError(errno.ENOENT, "no such file", str(src))
            write_atomic(dst, source.content, source.mode, (source.uid, source.gid))
            self._remember(lambda: _put_back(dst, prior))
        elif isinstance(step, WriteFile | WriteManifest):
            path = self._path(step.path)
            prior = _prior(path)
            if step.content is None:
                path.unlink()
            else:
                mode, owner = (
                    (step.mode, step.owner) if isinstance(step, WriteFile) else (0o644, "parent")
                )
                write_atomic(path, step.content, mode, _owner(path, owner))
            self._remember(lambda: _put_back(path, prior))
        elif isinstance(step, RemoveFile):
            path = self._path(step.path)
            prior = _prior(path)
            path.unlink()
            self._remember(lambda: _put_back(path, prior))
        elif isinstance(step, RemoveDir):
            path = self._path(step.path)
            info = path.stat()
            try:
                path.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    return "kept: it holds files install did not put there"
                raise
            self._remember(lambda: _remake_dir(path, info))
        elif isinstance(step, AllocateHook):
            oned = self._api()
            hook_id = await oned.hook_allocate(step.spec.attributes)
            self._remember(lambda: oned.hook_delete(hook_id))
            return f"done, id {hook_id}"
        elif isinstance(step, UpdateHook):
            oned = self._api()
            await oned.hook_update(step.hook_id, step.template, merge=False)
            previous = dict(step.previous)
            self._remember(lambda: oned.hook_update(step.hook_id, previous, merge=False))
        elif isinstance(step, DeleteHook):
            oned = self._api()
            await oned.hook_delete(step.hook_id)
            attrs = {"NAME": step.name, "TYPE": step.type, **_vm_custom(dict(step.template))}
            self._remember(lambda: oned.hook_allocate(attrs))
        else:  # pragma: no cover - every Step kind is handled above
            raise TypeError(f"unknown step {step!r}")
        return "done"


def _remake_dir(path: Path, info: os.stat_result) -> None:
    path.mkdir(mode=stat.S_IMODE(info.st_mode))
    if os.geteuid() == 0:
        os.chown(path, info.st_uid, info.st_gid)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__
