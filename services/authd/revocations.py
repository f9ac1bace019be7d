"""The revocation list: one hex revocation id per line (SPEC section 7). Pure parsing."""

from __future__ import annotations

import dataclasses
import re

_HEX = re.compile(r"[0-9a-f]+")


@dataclasses.dataclass(frozen=True)
class RevocationList:
    """Revoked ids (lower-case hex) and the lines that were not ids, by line number."""

    ids: frozenset[str] = frozenset()
    bad_lines: tuple[int, ...] = ()

    def first_revoked(self, token_ids: tuple[str, ...]) -> int | None:
        """Index of the first block whose id is revoked (revoking a block revokes its heirs)."""
        for index, rid in enumerate(token_ids):
            if rid.lower() in self.ids:
                return index
        return None


def parse_revocations(text: str) -> RevocationList:
    """Parse the file's text: blank lines and `#` comments are skipped, bad lines reported."""
    ids: set[str] = set()
    bad: list[int] = []
    # A byte order mark (Windows editors) would otherwise make the first id a "bad line".
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        entry = line.split("#", 1)[0].strip().lower()
        if not entry:
            continue
        if _HEX.fullmatch(entry) and len(entry) % 2 == 0:
            ids.add(entry)
        else:
            bad.append(number)
    return RevocationList(frozenset(ids), tuple(bad))
