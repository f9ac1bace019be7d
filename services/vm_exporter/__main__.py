"""`one-vm-exporter` / `python -m services.vm_exporter`: not built yet."""

from __future__ import annotations

from services.common.runner import not_built

main = not_built("one-vm-exporter", "issue 5")

if __name__ == "__main__":
    main()
