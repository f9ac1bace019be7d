"""`one-rapl-agent` / `python -m services.rapl_agent`: not built yet."""

from __future__ import annotations

from services.common.runner import not_built

main = not_built("one-rapl-agent", "issue 4")

if __name__ == "__main__":
    main()
