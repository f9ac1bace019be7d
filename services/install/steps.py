"""The steps install and uninstall take, as values: what `apply.py` does and undoes (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .hookspec import HookSpec


@dataclasses.dataclass(frozen=True)
class MakeDir:
    """Create a directory (owned like its parent)."""

    path: str
    mode: int = 0o755

    def describe(self) -> str:
        return f"create directory {self.path} (mode {self.mode:04o})"


@dataclasses.dataclass(frozen=True)
class Move:
    """Rename a file (OpenNebula's migrate to migrate_default, and back)."""

    path: str
    to: str
    why: str

    def describe(self) -> str:
        return f"rename {self.path} to {self.to} ({self.why})"


@dataclasses.dataclass(frozen=True)
class CopyFile:
    """Copy a file with its mode and owner (a backup, or a backup put back)."""

    path: str
    to: str
    why: str

    def describe(self) -> str:
        return f"copy {self.path} to {self.to} ({self.why})"


@dataclasses.dataclass(frozen=True)
class WriteFile:
    """Write a file atomically with this content and mode."""

    path: str
    content: bytes = dataclasses.field(repr=False)
    mode: int
    owner: str  # "parent": like its directory; "oneadmin": oneadmin when that user exists
    what: str
    replaces: bool  # a file is there now (backed up by an earlier step when not ours)

    def describe(self) -> str:
        verb = "replace" if self.replaces else "install"
        return f"{verb} {self.path} ({self.what}, mode {self.mode:04o})"


@dataclasses.dataclass(frozen=True)
class RemoveFile:
    """Remove a file install wrote (or a backup once put back)."""

    path: str
    what: str

    def describe(self) -> str:
        return f"remove {self.path} ({self.what})"


@dataclasses.dataclass(frozen=True)
class RemoveDir:
    """Remove a directory install created, when it is empty by then."""

    path: str

    def describe(self) -> str:
        return f"remove directory {self.path} (when empty)"


@dataclasses.dataclass(frozen=True)
class AllocateHook:
    """`one.hook.allocate` of a hook file."""

    spec: HookSpec
    source: str

    def describe(self) -> str:
        return f"register hook {self.spec.name} (from {self.source})"


@dataclasses.dataclass(frozen=True)
class UpdateHook:
    """`one.hook.update` (replace) of a registered hook's template."""

    hook_id: int
    name: str
    template: Mapping[str, str]
    previous: Mapping[str, str]
    why: str

    def describe(self) -> str:
        return f"update hook {self.name} (id {self.hook_id}): {self.why}"


@dataclasses.dataclass(frozen=True)
class DeleteHook:
    """`one.hook.delete` of a hook install registered (type and template kept to undo it)."""

    hook_id: int
    name: str
    type: str
    template: Mapping[str, str]

    def describe(self) -> str:
        return f"delete hook {self.name} (id {self.hook_id})"


@dataclasses.dataclass(frozen=True)
class WriteManifest:
    """Write the manifest (None: remove it, nothing is installed any more)."""

    path: str
    content: bytes | None = dataclasses.field(repr=False)

    def describe(self) -> str:
        if self.content is None:
            return f"remove the install manifest {self.path}"
        return f"record what was done in {self.path}"


Step = (
    MakeDir
    | Move
    | CopyFile
    | WriteFile
    | RemoveFile
    | RemoveDir
    | AllocateHook
    | UpdateHook
    | DeleteHook
    | WriteManifest
)
