"""Atomic writes, backups and the lock that keeps two discovery processes from interleaving."""

from __future__ import annotations

import os
import threading

from services.discovery.files import backup, backups_of, lock_path_for, locked, write_atomic


def test_write_atomic_replaces_whole_and_takes_the_old_files_mode(tmp_path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    write_atomic(path, b"new\n", like=path)
    assert path.read_text() == "new\n"
    assert path.stat().st_mode & 0o777 == 0o640
    write_atomic(tmp_path / "job.json", b"[]\n")
    assert (tmp_path / "job.json").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json", "prometheus.yml"]


def test_backups_keep_the_last_five(tmp_path) -> None:
    path = tmp_path / "prometheus.yml"
    for n in range(8):
        path.write_text(f"version {n}\n")
        backup(path, keep=5, now=1_700_000_000 + n)
    saved = backups_of(path)
    assert [p.read_text() for p in saved] == [f"version {n}\n" for n in range(3, 8)]
    assert all(p.name.startswith("prometheus.yml.one-discovery.2023") for p in saved)


def test_the_lock_makes_a_second_writer_wait(tmp_path) -> None:
    lock = lock_path_for(tmp_path / "prometheus.yml")
    assert lock == tmp_path / ".prometheus.yml.lock"
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def first() -> None:
        with locked(lock):
            order.append("first in")
            holding.set()
            release.wait(10)
            order.append("first out")

    def second() -> None:
        holding.wait(10)
        with locked(lock):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    holding.wait(10)
    # The second writer is blocked as long as the first holds the lock.
    threads[1].join(0.3)
    assert threads[1].is_alive() and order == ["first in"]
    release.set()
    for t in threads:
        t.join(10)
    assert order == ["first in", "first out", "second in"]
