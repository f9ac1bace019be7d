"""`one-geo` / `python -m services.geo`: not built yet."""

from __future__ import annotations

from services.common.runner import not_built

main = not_built("one-geo", "its issue is not filed yet")

if __name__ == "__main__":
    main()
