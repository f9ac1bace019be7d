"""`one-cognit demo` / `make demo`: not built yet (issue 3)."""

from __future__ import annotations

from services.common.runner import not_built

main = not_built("one-cognit demo", "issue 3")
