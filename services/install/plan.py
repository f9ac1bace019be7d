"""From what is there to the steps that install or uninstall one-cognit (pure).

The planner sees the machine as a mapping of paths to their state and the hooks oned has by
name; it returns the steps, the manifest as it will be after them, and conflicts (things it
will not overwrite or remove: an operator's change). Nothing here touches a file or oned.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Iterable, Mapping, Sequence

from services.common.oned import Hook

from .hookspec import HookSpec
from .manifest import Entry, Manifest, sha256
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


@dataclasses.dataclass(frozen=True)
class PathState:
    """A path as found: missing, a regular file (with content and mode), a dir, or other."""

    kind: str
    content: bytes | None = dataclasses.field(default=None, repr=False)
    mode: int | None = None

    @property
    def sha256(self) -> str | None:
        return None if self.content is None else sha256(self.content)


MISSING = PathState("missing")
DIRECTORY = PathState("dir")


@dataclasses.dataclass(frozen=True)
class Want:
    """A file install puts in place."""

    role: str
    service: str
    path: str
    content: bytes = dataclasses.field(repr=False)
    mode: int
    what: str
    owner: str = "parent"
    keep_original: str | None = None  # move a file already at `path` to this sibling first
    replace: bool = True  # False: a file already there is kept whatever it holds


@dataclasses.dataclass(frozen=True)
class WantHook:
    """A hook install registers."""

    role: str
    service: str
    spec: HookSpec
    source: str


@dataclasses.dataclass(frozen=True)
class Plan:
    """The steps in order, the manifest after them, and why the plan cannot run (if so)."""

    steps: tuple[Step, ...]
    manifest: Manifest
    conflicts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def ancestors(path: str) -> list[str]:
    """`/a/b/c` -> [`/a`, `/a/b`]: the directories above a path, outermost first."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def backup_path(backup_dir: str, path: str) -> str:
    """Where the file install replaces at `path` is kept."""
    return posixpath.join(backup_dir, path.lstrip("/"))


def paths_to_look_at(
    wants: Iterable[Want], manifest: Manifest, manifest_path: str, backup_dir: str
) -> set[str]:
    """Every path the planners read the state of."""
    paths = {manifest_path, *ancestors(manifest_path)}
    for want in wants:
        backup = backup_path(backup_dir, want.path)
        paths |= {want.path, *ancestors(want.path), backup, *ancestors(backup)}
        if want.keep_original:
            paths.add(posixpath.join(posixpath.dirname(want.path), want.keep_original))
    for entry in manifest.entries:
        paths |= {p for p in (entry.path, entry.to, entry.backup) if p}
    return paths


class _View:
    """The observed paths with the effect of the steps planned so far laid over them."""

    def __init__(self, paths: Mapping[str, PathState]) -> None:
        self._paths = paths
        self._over: dict[str, PathState] = {}

    def __getitem__(self, path: str) -> PathState:
        if path in self._over:
            return self._over[path]
        return self._paths.get(path, MISSING)

    def __setitem__(self, path: str, state: PathState) -> None:
        self._over[path] = state


class _Planner:
    def __init__(self, paths: Mapping[str, PathState], manifest: Manifest) -> None:
        self.view = _View(paths)
        self.manifest = manifest
        self.steps: list[Step] = []
        self.entries: list[Entry] = []
        self.conflicts: list[str] = []
        self.notes: list[str] = []

    def plan(self, final: Manifest) -> Plan:
        # A directory in the way is met once per file below it: say it once.
        conflicts = tuple(dict.fromkeys(self.conflicts))
        return Plan(tuple(self.steps), final, conflicts, tuple(dict.fromkeys(self.notes)))

    def step(self, step: Step, entry: Entry | None = None) -> None:
        self.steps.append(step)
        if entry is not None:
            self.entries.append(entry)

    def ensure_parents(self, path: str, role: str, private: str | None = None) -> bool:
        """Create the missing directories above `path`; those at or below `private` 0700."""
        for directory in ancestors(path):
            state = self.view[directory]
            if state.kind == "missing":
                inside = private is not None and (directory + "/").startswith(private + "/")
                mode = 0o700 if inside else 0o755
                self.step(MakeDir(directory, mode), Entry(role, "dir", path=directory))
                self.view[directory] = DIRECTORY
            elif state.kind != "dir":
                self.conflicts.append(f"{directory} is in the way: it should be a directory")
                return False
        return True

    # install ---------------------------------------------------------------------------

    def install_file(self, want: Want, backup_dir: str) -> None:
        if not self.ensure_parents(want.path, want.role):
            return
        if want.keep_original and not self.keep_original(want):
            return
        current = self.view[want.path]
        ours = sha256(want.content)
        recorded = self.manifest.find("file", want.path)
        if current.kind == "missing":
            self.write(want, replaces=False, entry_backup=None)
            return
        if current.kind != "file":
            self.conflicts.append(f"{want.path} is in the way: it is not a regular file")
            return
        if current.sha256 == ours and current.mode == want.mode:
            return
        if not want.replace:
            self.notes.append(f"kept {want.path} as it is ({want.what})")
            return
        if recorded is not None:
            if current.sha256 not in (recorded.sha256, ours):
                self.conflicts.append(
                    f"{want.path} was changed since one-cognit installed it: move it away "
                    "(or put back what install wrote) and run again"
                )
                return
            self.write(want, replaces=True, entry_backup=recorded.backup)
            return
        backup = backup_path(backup_dir, want.path)
        if self.view[backup].kind != "missing":
            self.conflicts.append(f"{backup} exists (an older backup?): move it away first")
            return
        # Backups may hold secrets (a token): only root reads them.
        if not self.ensure_parents(backup, want.role, private=backup_dir):
            return
        self.step(CopyFile(want.path, backup, f"backup of {want.path}"))
        self.view[backup] = current
        self.write(want, replaces=True, entry_backup=backup)

    def keep_original(self, want: Want) -> bool:
        """Move the file at want.path to its keep_original name, unless that was done."""
        original = posixpath.join(posixpath.dirname(want.path), want.keep_original or "")
        current, moved = self.view[want.path], self.view[original]
        if moved.kind == "file":
            return True
        if moved.kind != "missing":
            self.conflicts.append(f"{original} is in the way: it is not a regular file")
            return False
        if current.kind != "file":
            self.conflicts.append(
                f"neither {want.path} nor {original} exists: nothing to wrap ({want.what})"
            )
            return False
        if current.sha256 == sha256(want.content):
            self.conflicts.append(
                f"{want.path} is one-cognit's wrapper but {original}, the driver it runs, "
                "is missing: put OpenNebula's driver back there"
            )
            return False
        why = f"OpenNebula's own, kept for {posixpath.basename(want.path)} to run"
        self.step(
            Move(want.path, original, why),
            Entry(want.role, "rename", path=want.path, to=original),
        )
        self.view[original], self.view[want.path] = current, MISSING
        return True

    def write(self, want: Want, *, replaces: bool, entry_backup: str | None) -> None:
        self.step(
            WriteFile(want.path, want.content, want.mode, want.owner, want.what, replaces),
            Entry(
                want.role, "file", path=want.path, sha256=sha256(want.content), backup=entry_backup
            ),
        )
        self.view[want.path] = PathState("file", want.content, want.mode)

    def install_hook(self, want: WantHook, registered: Mapping[str, Hook]) -> None:
        spec = want.spec
        hook = registered.get(spec.name)
        if hook is None:
            self.step(
                AllocateHook(spec, want.source),
                Entry(want.role, "hook", name=spec.name, created=True),
            )
            return
        differences = spec.differences(hook.type, hook.template)
        if not differences:
            return
        resource = hook.template.get("RESOURCE", "").upper()
        if "TYPE" in differences or resource != spec.resource:
            self.conflicts.append(
                f"hook {spec.name} (id {hook.id}) exists as a {hook.type} {resource} hook, not "
                f"a {spec.type} {spec.resource} one: delete or rename it (onehook delete "
                f"{hook.id}) and run again"
            )
            return
        self.step(
            UpdateHook(
                hook.id,
                spec.name,
                dict(spec.stored),
                dict(hook.template),
                f"{', '.join(differences)} differed from {want.source}",
            ),
            Entry(
                want.role,
                "hook",
                name=spec.name,
                created=False,
                previous={"type": hook.type, "template": dict(hook.template)},
            ),
        )

    # uninstall -------------------------------------------------------------------------

    def uninstall_file(self, entry: Entry) -> None:
        current = self.view[entry.path]
        if current.kind == "file" and current.sha256 == entry.sha256:
            self.step(RemoveFile(entry.path, "installed by one-cognit"))
            self.view[entry.path] = MISSING
        elif current.kind == "missing":
            self.notes.append(f"{entry.path} was already gone")
        else:
            self.conflicts.append(
                f"{entry.path} was changed since one-cognit installed it: move it away (or put "
                "back what install wrote) and run again"
            )
            return
        if entry.backup is None:
            return
        if self.view[entry.backup].kind != "file":
            self.conflicts.append(f"the backup {entry.backup} of {entry.path} is missing")
            return
        self.step(CopyFile(entry.backup, entry.path, "what was there before install"))
        self.step(RemoveFile(entry.backup, "backup put back"))
        self.view[entry.path], self.view[entry.backup] = self.view[entry.backup], MISSING

    def uninstall_rename(self, entry: Entry) -> None:
        current, moved = self.view[entry.path], self.view[entry.to]
        if moved.kind == "file" and current.kind == "missing":
            self.step(Move(entry.to, entry.path, "OpenNebula's own, back in its place"))
            self.view[entry.path], self.view[entry.to] = moved, MISSING
        elif moved.kind == "missing" and current.kind == "file":
            self.notes.append(f"{entry.path} was already back in its place")
        else:
            self.conflicts.append(
                f"cannot move {entry.to} back to {entry.path}: "
                f"{entry.to} is {moved.kind}, {entry.path} is {current.kind}"
            )

    def uninstall_hook(self, entry: Entry, registered: Mapping[str, Hook]) -> None:
        hook = registered.get(entry.name)
        if hook is None:
            self.notes.append(f"hook {entry.name} was already gone")
        elif entry.created:
            self.step(DeleteHook(hook.id, hook.name, hook.type, dict(hook.template)))
        elif entry.previous is not None and dict(hook.template) != entry.previous["template"]:
            self.step(
                UpdateHook(
                    hook.id,
                    hook.name,
                    dict(entry.previous["template"]),
                    dict(hook.template),
                    "the template it had before install put back",
                )
            )


def plan_install(
    role: str,
    wants: Sequence[Want],
    hooks: Sequence[WantHook],
    paths: Mapping[str, PathState],
    registered: Mapping[str, Hook],
    manifest: Manifest,
    *,
    manifest_path: str,
    backup_dir: str,
) -> Plan:
    """Steps that put every wanted file and hook in place; nothing when all already are."""
    planner = _Planner(paths, manifest)
    for want in wants:
        planner.install_file(want, backup_dir)
    for hook in hooks:
        planner.install_hook(hook, registered)
    if planner.steps and planner.ensure_parents(manifest_path, role):
        final = manifest.with_entries(planner.entries)
        planner.step(WriteManifest(manifest_path, final.to_bytes()))
    else:
        final = manifest
    return planner.plan(final)


def plan_uninstall(
    roles: Iterable[str],
    paths: Mapping[str, PathState],
    registered: Mapping[str, Hook],
    manifest: Manifest,
    *,
    manifest_path: str,
) -> Plan:
    """Steps that undo what the manifest records for `roles`, newest first."""
    planner = _Planner(paths, manifest)
    wanted = set(roles)
    kept = [e for e in manifest.entries if e.role not in wanted]
    # A directory that still holds the manifest or what another role installed stays listed.
    needed = {d for e in kept for p in (e.path, e.to, e.backup) if p for d in ancestors(p)}
    if kept:
        needed |= set(ancestors(manifest_path))
    chosen = [
        e
        for e in manifest.entries
        if e.role in wanted and not (e.kind == "dir" and e.path in needed)
    ]
    directories: list[str] = []
    for entry in reversed(chosen):
        if entry.kind == "file":
            planner.uninstall_file(entry)
        elif entry.kind == "rename":
            planner.uninstall_rename(entry)
        elif entry.kind == "hook":
            planner.uninstall_hook(entry, registered)
        else:
            directories.append(entry.path)
    final = manifest.without(chosen)
    if chosen:
        planner.step(WriteManifest(manifest_path, final.to_bytes() if final.entries else None))
    # Deepest first, after the files in them (and the manifest) are gone.
    for directory in sorted(directories, key=lambda d: (-d.count("/"), d)):
        planner.step(RemoveDir(directory))
    return planner.plan(final)
