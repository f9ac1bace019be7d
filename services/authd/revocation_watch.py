"""Keeps the revocation list in step with `--revocation-file` (polled, reloaded on change).

`refresh` is one look at the file; the app runs it every POLL_INTERVAL seconds with the shared
`services.common.periodic.Periodic`, which also reports a failing look on `/healthz`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

from .revocations import RevocationList, parse_revocations

log = logging.getLogger(__name__)

# A change must take effect within 2 s (SPEC section 7): stat is cheap, poll often.
POLL_INTERVAL = 0.5


@dataclasses.dataclass(frozen=True)
class RevocationState:
    """What the watcher knows: the list in force and how the file looked when read."""

    revocations: RevocationList = RevocationList()
    # "loaded", "missing" (no revocations), "error" (the last good list stays in force).
    status: str = "missing"
    error: str = ""
    reloads: int = 0
    loaded_at: float = 0.0

    @property
    def unknown(self) -> bool:
        """True when the file exists but was never read: which tokens are revoked is unknown."""
        return self.status == "error" and self.reloads == 0


def _signature(path: Path) -> tuple[int, ...] | str | None:
    """What identifies a version of the file: None when missing, a reason when unreadable."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class RevocationWatcher:
    """Reloads the file when its inode, size or times change; `state` is always complete."""

    def __init__(
        self,
        path: Path | None,
        *,
        on_change: Callable[[RevocationState], None] | None = None,
    ) -> None:
        self.path = path
        self.state = RevocationState(status="disabled" if path is None else "missing")
        self._seen: tuple[int, ...] | str | None | object = object()
        self._on_change = on_change or (lambda state: None)

    def _set(self, state: RevocationState) -> None:
        self.state = state
        self._on_change(state)

    async def refresh(self) -> None:
        """Look at the file once; reload it if it changed since the last look."""
        if self.path is None:
            return
        signature = await asyncio.to_thread(_signature, self.path)
        if signature == self._seen:
            return
        self._seen = signature
        if signature is None:
            log.warning(
                "revocation file %s does not exist: no token is revoked until it does", self.path
            )
            self._set(
                RevocationState(
                    status="missing", reloads=self.state.reloads + 1, loaded_at=time.time()
                )
            )
            return
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            # Retry at every poll (the cause may go away without the file changing); log once.
            self._seen = object()
            if self.state.status != "error" or self.state.error != reason:
                log.error(
                    "cannot read revocation file %s: %s; keeping the %d ids loaded before",
                    self.path,
                    reason,
                    len(self.state.revocations.ids),
                )
                self._set(dataclasses.replace(self.state, status="error", error=reason))
            return
        revocations = parse_revocations(text)
        if revocations.bad_lines:
            shown = ", ".join(str(n) for n in revocations.bad_lines[:10])
            log.warning(
                "revocation file %s: %d line(s) are not hex revocation ids and were skipped "
                "(line %s)",
                self.path,
                len(revocations.bad_lines),
                shown,
            )
        log.info("revocation file %s: %d revoked ids", self.path, len(revocations.ids))
        self._set(
            RevocationState(
                revocations=revocations,
                status="loaded",
                reloads=self.state.reloads + 1,
                loaded_at=time.time(),
            )
        )
