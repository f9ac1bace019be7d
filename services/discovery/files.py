"""Writing files the way an operator can trust: atomic, durable, locked, backed up (I/O).

Blocking calls: the service runs them in a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BACKUP_TAG = ".one-discovery."
BACKUP_SUFFIX = ".bak"


def write_atomic(path: Path, data: bytes, *, like: Path | None = None, mode: int = 0o644) -> None:
    """Replace `path` with `data`: written to a temporary file beside it, fsynced, renamed.

    Readers (Prometheus' file_sd watcher) see the old or the new content, never a part. The
    new file takes the mode and owner of `like` when given (the file it replaces).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _take_mode(Path(tmp), like, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _take_mode(tmp: Path, like: Path | None, mode: int) -> None:
    if like is None:
        os.chmod(tmp, mode)
        return
    st = like.stat()
    os.chmod(tmp, st.st_mode & 0o7777)
    with contextlib.suppress(PermissionError):
        os.chown(tmp, st.st_uid, st.st_gid)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) for the block: two discovery processes writing
    the same file take turns instead of interleaving."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lock_path_for(path: Path) -> Path:
    """The lock file of `path`: a hidden file beside it (the file itself is replaced by rename,
    so a lock on it would not exclude a process that opened the new one)."""
    return path.parent / f".{path.name}.lock"


def backups_of(path: Path) -> list[Path]:
    """discovery's backups of `path`, oldest first."""
    prefix = path.name + BACKUP_TAG
    found = [
        p
        for p in path.parent.iterdir()
        if p.name.startswith(prefix) and p.name.endswith(BACKUP_SUFFIX)
    ]
    return sorted(found, key=lambda p: p.name)


def backup(path: Path, keep: int, now: float | None = None) -> Path:
    """Copy `path` to `<name>.one-discovery.<UTC time>.bak` beside it; keep the last `keep`."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.6f}"[1:]
    target = path.parent / f"{path.name}{BACKUP_TAG}{stamp}Z{BACKUP_SUFFIX}"
    shutil.copy2(path, target)
    for old in backups_of(path)[:-keep]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return target
