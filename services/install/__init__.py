"""`one-cognit install` / `uninstall`: shims, hooks, units and files placed, recorded, undone.

Pure planning (`plan.py`, from what is on disk and in oned to the steps that bring it where
`table.py` says) is kept apart from doing it (`apply.py`, which undoes what it did when a
step fails) and from looking (`observe.py`).
"""
