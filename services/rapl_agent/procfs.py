"""Reading /proc (or a copy of it under --proc-root) fast enough for thousands of processes.

Per sample the cost that matters is one read of /proc/<pid>/stat per process. The reader keeps
each process's stat file open and re-reads it with pread at offset 0 (procfs regenerates the
text on every read; a held fd of a process that exited fails with ESRCH, so a reused pid is
never mistaken for the old one). Everything that does not change while a process lives
(comm, argv, VM identity, its metric label block) is cached per (pid, starttime).
"""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

from services.common.vm_identity import helper_owner, vm_from_argv

from .exposition import process_labels
from .figures import ProcInfo
from .procstat import (
    PidStat,
    SystemStat,
    parse_cmdline,
    parse_loadavg,
    parse_meminfo,
    parse_pid_stat,
    parse_proc_stat,
    parse_uptime,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
_MAX_CMDLINE_BYTES = 256 * 1024
# File descriptors left for sockets, counters and everything else.
_FD_RESERVE = 256


class ProcError(Exception):
    """A system-wide /proc file (stat, uptime) is unreadable or malformed."""


def _read_file(path: str, limit: int = 1 << 20) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        size = 0
        while size < limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class ProcReader:
    """Reads system figures and per-process CPU times under one proc root."""

    def __init__(self, root: Path, max_cmdline: int, *, hold_fds: int | None = None) -> None:
        self.root = str(root)
        self.max_cmdline = max_cmdline
        # None: decided at the first read, from the open-files limit then in force (the app
        # raises it when it starts, after building the reader).
        self._fd_budget = None if hold_fds is None else max(0, hold_fds)
        self._fds: dict[str, int] = {}
        self._infos: dict[int, ProcInfo] = {}

    # -- system-wide files -----------------------------------------------------------------

    def read_system(self) -> tuple[SystemStat, int]:
        """/proc/stat and the uptime in clock ticks; ProcError when unusable."""
        try:
            stat = parse_proc_stat(_read_file(f"{self.root}/stat").decode("ascii", "replace"))
            uptime = parse_uptime(_read_file(f"{self.root}/uptime").decode("ascii", "replace"))
        except (OSError, ValueError) as exc:
            raise ProcError(f"cannot use {self.root}/stat or uptime: {exc}") from None
        return stat, int(uptime * CLK_TCK)

    def read_load(self) -> tuple[float, float, float] | None:
        """Load averages, None when unreadable (an optional figure)."""
        try:
            return parse_loadavg(_read_file(f"{self.root}/loadavg").decode())
        except (OSError, ValueError):
            return None

    def read_memory(self) -> dict[str, int] | None:
        """/proc/meminfo in bytes, None when unreadable (an optional figure)."""
        try:
            return parse_meminfo(_read_file(f"{self.root}/meminfo").decode()) or None
        except (OSError, ValueError):
            return None

    # -- processes -------------------------------------------------------------------------

    def read_processes(self) -> tuple[dict[int, PidStat], dict[int, ProcInfo]]:
        """(pid -> its stat figures, pid -> ProcInfo) for every process listed now."""
        try:
            names = os.listdir(self.root)
        except OSError as exc:
            raise ProcError(f"cannot list {self.root}: {exc.strerror or exc}") from None
        stats: dict[int, PidStat] = {}
        infos: dict[int, ProcInfo] = {}
        fds = self._fds
        cached = self._infos
        pread = os.pread
        # The hot loop: one pread per process while its fd is held, everything else cached.
        for name in names:
            if not name.isdigit():
                continue
            fd = fds.get(name)
            data = b""
            if fd is not None:
                try:
                    data = pread(fd, 4096, 0)
                except OSError:
                    pass
            if not data:
                data = self._reopen(name)
                if not data:
                    continue
            try:
                stat = parse_pid_stat(data)
            except ValueError:
                continue
            pid = int(name)
            info = cached.get(pid)
            if info is None or info.starttime != stat.starttime or info.comm != stat.comm:
                info = self._describe(pid, name, stat.comm, stat.starttime)
                if info is None:
                    continue
            stats[pid] = stat
            infos[pid] = info
        for name in fds.keys() - set(names):
            os.close(fds.pop(name))
        self._infos = infos
        return stats, infos

    def _reopen(self, name: str) -> bytes:
        """Open a process's stat afresh (new, or its held fd went stale); hold it if we can."""
        stale = self._fds.pop(name, None)
        if stale is not None:
            # The process behind the held fd is gone (its pid may be reused): ESRCH or empty.
            os.close(stale)
        try:
            fd = os.open(f"{self.root}/{name}/stat", os.O_RDONLY)
        except OSError:
            return b""
        try:
            data = os.pread(fd, 4096, 0)
        except OSError:
            data = b""
        if self._fd_budget is None:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            self._fd_budget = max(0, limit - _FD_RESERVE)
        if data and len(self._fds) < self._fd_budget:
            self._fds[name] = fd
        else:
            os.close(fd)
        return data

    def _describe(self, pid: int, name: str, comm: str, starttime: int) -> ProcInfo | None:
        try:
            raw = _read_file(f"{self.root}/{name}/cmdline", _MAX_CMDLINE_BYTES)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ESRCH):
                return None  # exited between stat and cmdline
            raw = b""
        argv = parse_cmdline(raw)
        cmdline = "".join(argv)[: self.max_cmdline]
        vm = vm_from_argv(argv)
        labels = process_labels(pid, comm, cmdline, vm.name if vm else None)
        return ProcInfo(pid, starttime, comm, cmdline, vm, labels, helper_owner(comm))

    def close(self) -> None:
        """Close every held file descriptor."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
