"""`one-cognit sim`: not built yet (issue 3)."""

from __future__ import annotations

from services.common.runner import not_built

main = not_built("one-cognit sim", "issue 3")

if __name__ == "__main__":
    main()
