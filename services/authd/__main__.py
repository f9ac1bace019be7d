"""`one-authd` / `python -m services.authd`: not built yet."""

from __future__ import annotations

from services.common.runner import not_built

main = not_built("one-authd", "issue 6")

if __name__ == "__main__":
    main()
