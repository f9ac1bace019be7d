"""The install manifest: what install did, in order, so uninstall undoes exactly that (pure).

Kept as JSON at /var/lib/one-cognit/install-manifest.json (under --root). Entries:
  {"role", "kind": "dir", "path"}                         a directory install created
  {"role", "kind": "rename", "path", "to"}                a file install moved aside
  {"role", "kind": "file", "path", "sha256", "backup"}    a file install wrote; backup holds
                                                          what was there (null: nothing was)
  {"role", "kind": "hook", "name", "created", "previous"} a hook install registered, or
                                                          updated (previous = its type and
                                                          template before)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

VERSION = 1
KINDS = ("dir", "rename", "file", "hook")
ROLES = ("frontend", "host")


class ManifestError(ValueError):
    """A manifest uninstall cannot trust; the message says what is wrong."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True)
class Entry:
    """One thing install did; `key` identifies what it is about (a path, a hook name)."""

    role: str
    kind: str
    path: str = ""  # dir, rename, file
    to: str = ""  # rename
    sha256: str = ""  # file: what install wrote
    backup: str | None = None  # file: where the content it replaced was kept
    name: str = ""  # hook
    created: bool = False  # hook: registered by install (else updated)
    previous: Mapping[str, Any] | None = None  # hook: {"type", "template"} before the update

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name if self.kind == "hook" else self.path)

    def to_json(self) -> dict[str, Any]:
        fields = {
            "dir": ("path",),
            "rename": ("path", "to"),
            "file": ("path", "sha256", "backup"),
            "hook": ("name", "created", "previous"),
        }[self.kind]
        out: dict[str, Any] = {"role": self.role, "kind": self.kind}
        for name in fields:
            value = getattr(self, name)
            out[name] = dict(value) if isinstance(value, Mapping) else value
        return out


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Every entry, oldest first."""

    entries: tuple[Entry, ...] = ()

    def find(self, kind: str, key: str) -> Entry | None:
        return next((e for e in self.entries if e.key == (kind, key)), None)

    def with_entries(self, new: Iterable[Entry]) -> Manifest:
        """This manifest plus `new`; an entry about something already recorded replaces only
        the recorded sha256 (what was there before the first install stays known)."""
        entries = list(self.entries)
        for entry in new:
            index = next((i for i, e in enumerate(entries) if e.key == entry.key), None)
            if index is None:
                entries.append(entry)
            elif entry.kind == "file":
                entries[index] = dataclasses.replace(entries[index], sha256=entry.sha256)
        return Manifest(tuple(entries))

    def without(self, gone: Iterable[Entry]) -> Manifest:
        keys = {e.key for e in gone}
        return Manifest(tuple(e for e in self.entries if e.key not in keys))

    def to_bytes(self) -> bytes:
        body = {"version": VERSION, "entries": [e.to_json() for e in self.entries]}
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _text(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: {name} must be a non-empty string")
    return value


def _absolute(item: Mapping[str, Any], name: str, where: str) -> str:
    value = _text(item, name, where)
    if not value.startswith("/") or "\x00" in value or "/../" in value + "/":
        raise ManifestError(f"{where}: {name} must be an absolute path without '..'")
    return value


def parse_manifest(data: bytes | None) -> Manifest:
    """The manifest from its file's bytes (None: no file, nothing installed)."""
    if data is None:
        return Manifest()
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("version") != VERSION:
        raise ManifestError(f"expected an object with version {VERSION}")
    items = body.get("entries")
    if not isinstance(items, list):
        raise ManifestError("entries must be a list")
    entries = []
    for n, item in enumerate(items):
        where = f"entry {n}"
        if not isinstance(item, dict) or item.get("kind") not in KINDS:
            raise ManifestError(f"{where}: kind must be one of {', '.join(KINDS)}")
        if item.get("role") not in ROLES:
            raise ManifestError(f"{where}: role must be one of {', '.join(ROLES)}")
        kind, role = item["kind"], item["role"]
        if kind == "hook":
            previous = item.get("previous")
            if previous is not None and not (
                isinstance(previous, dict)
                and isinstance(previous.get("type"), str)
                and isinstance(previous.get("template"), dict)
                and all(isinstance(v, str) for v in previous["template"].values())
            ):
                raise ManifestError(f"{where}: previous must be {{type, template}} or null")
            entries.append(
                Entry(
                    role,
                    kind,
                    name=_text(item, "name", where),
                    created=item.get("created") is True,
                    previous=previous,
                )
            )
            continue
        path = _absolute(item, "path", where)
        if kind == "dir":
            entries.append(Entry(role, kind, path=path))
        elif kind == "rename":
            entries.append(Entry(role, kind, path=path, to=_absolute(item, "to", where)))
        else:
            backup = item.get("backup")
            entries.append(
                Entry(
                    role,
                    kind,
                    path=path,
                    sha256=_text(item, "sha256", where),
                    backup=None if backup is None else _absolute(item, "backup", where),
                )
            )
    return Manifest(tuple(entries))
