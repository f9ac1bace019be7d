"""prometheus.yml: read, patch, check with promtool, back up and replace atomically (I/O).

`PrometheusConfig.apply` is blocking (the service runs it in a worker thread). It never
touches a file that is missing, unreadable or already invalid, and never replaces the file
with a version promtool rejects: each refusal is a ConfigProblem saying why, and the old
file stays as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .files import backup, fsync_dir, lock_path_for, locked
from .promconfig import ConfigFormatError, JobSd, Parsed, load, patch_parsed

PROMTOOL_TIMEOUT = 30.0
KEEP_BACKUPS = 5


class ConfigProblem(Exception):
    """The config was not (re)written; `kind` is missing, unreadable, invalid, rejected or
    unwritable, `message` says what the operator should look at."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What `apply` did: changed (and the backup it made) or not."""

    changed: bool
    backup: Path | None = None
    checked: bool = False  # promtool ran on the new version (and passed)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run_promtool(promtool: str, path: Path) -> str | None:
    """None when `promtool check config path` passes, else its message (one line)."""
    try:
        done = subprocess.run(
            [promtool, "check", "config", str(path)],
            capture_output=True,
            text=True,
            timeout=PROMTOOL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"promtool did not finish in {PROMTOOL_TIMEOUT:g}s"
    except OSError as exc:
        return f"cannot run {promtool}: {exc.strerror or exc}"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines()]
    useful = [line for line in lines if line and not line.startswith("Checking ")]
    return " | ".join(useful)[:600] or f"promtool exited {done.returncode}"


class PrometheusConfig:
    """The operator's prometheus.yml, patched only where discovery owns jobs."""

    def __init__(self, path: Path, promtool: str | None, keep: int = KEEP_BACKUPS) -> None:
        self.path = path
        self.promtool = promtool  # None: --no-config-check (YAML checks only)
        self.keep = keep
        self._known_good: str | None = None  # digest of the last text known to be valid
        self._parsed: tuple[str, Parsed] | None = None  # (digest, parse) of the last text
        self._next: tuple[str, Parsed] | None = None  # the same for the text being written

    def _read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigProblem(
                "missing",
                f"{self.path} does not exist; discovery patches Prometheus' existing config "
                "(point --prometheus-config at it) and never creates one",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 ({exc.reason})"
            raise ConfigProblem("unreadable", f"cannot read {self.path}: {reason}") from None

    def _check_current(self, text: str) -> None:
        """Refuse to touch a file that is already invalid (the operator's to fix)."""
        digest = _digest(text)
        if digest == self._known_good:
            return
        try:
            load(text)
        except ConfigFormatError as exc:
            raise ConfigProblem(
                "invalid", f"{self.path} is already invalid ({exc}); left untouched"
            ) from None
        if self.promtool is not None:
            message = run_promtool(self.promtool, self.path)
            if message is not None:
                raise ConfigProblem(
                    "invalid",
                    f"{self.path} is already invalid (promtool: {message}); "
                    "left untouched until it is fixed",
                )
        self._known_good = digest

    def plan(self, jobs: Mapping[str, JobSd]) -> tuple[str, str]:
        """(current text, patched text); ConfigProblem when the file cannot be patched."""
        return self._plan(self._read(), jobs)

    def _plan(self, text: str, jobs: Mapping[str, JobSd]) -> tuple[str, str]:
        self._check_current(text)
        digest = _digest(text)
        try:
            if self._parsed is not None and self._parsed[0] == digest:
                parsed = self._parsed[1]
            else:
                parsed = load(text)
                self._parsed = (digest, parsed)
            new, new_parsed = patch_parsed(text, parsed, jobs)
        except ConfigFormatError as exc:
            raise ConfigProblem("invalid", f"cannot patch {self.path}: {exc}") from None
        self._next = (_digest(new), new_parsed)
        return text, new

    def apply(self, jobs: Mapping[str, JobSd]) -> Outcome:
        """Make the owned jobs say `jobs`: check, back up and replace only when content changes."""
        text, new = self.plan(jobs)
        if new == text:
            return Outcome(False)
        try:
            with locked(lock_path_for(self.path)):
                # Read again under the lock: another process (or the operator) may have
                # written since; plan again only then.
                current = self._read()
                if current != text:
                    text, new = self._plan(current, jobs)
                    if new == text:
                        return Outcome(False)
                outcome = self._replace(new)
        except OSError as exc:
            raise ConfigProblem(
                "unwritable", f"cannot write beside {self.path}: {exc.strerror or exc}"
            ) from None
        self._parsed = self._next
        return outcome

    def _replace(self, new: str) -> Outcome:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".new", dir=self.path.parent
        )
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(new)
                f.flush()
                os.fsync(f.fileno())
            st = self.path.stat()
            os.chmod(tmp, st.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(tmp, st.st_uid, st.st_gid)
            if self.promtool is not None:
                # Checked where it will live, so relative rule and sd paths resolve the same.
                message = run_promtool(self.promtool, tmp)
                if message is not None:
                    raise ConfigProblem(
                        "rejected",
                        f"promtool rejected the new {self.path.name} ({message}); "
                        "the old one is kept",
                    )
            saved = backup(self.path, self.keep)
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._known_good = _digest(new)
        return Outcome(True, saved, checked=self.promtool is not None)
