"""Parsers for the /proc files the agent reads; text in, values out, no I/O."""

from __future__ import annotations

import re
from typing import NamedTuple

# /proc/stat cpu columns that count as busy (SPEC section 5); guest time is already in user/nice.
_BUSY = ("user", "nice", "system", "irq", "softirq", "steal")
_CPU_COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


class SystemStat(NamedTuple):
    """The aggregate `cpu` line and the counters of /proc/stat."""

    busy_jiffies: int  # user+nice+system+irq+softirq+steal over all CPUs
    total_jiffies: int  # busy + idle + iowait: the capacity of every CPU over the same time
    forks: int | None  # `processes`
    context_switches: int | None  # `ctxt`
    procs_running: int | None
    procs_blocked: int | None


class PidStat(NamedTuple):
    """What the agent needs from /proc/<pid>/stat."""

    comm: str
    jiffies: int  # utime + stime
    starttime: int  # clock ticks after boot; with the pid, a process's identity
    vsize: int = 0  # virtual memory size, bytes
    rss: int = 0  # resident set size, pages


def parse_proc_stat(text: str) -> SystemStat:
    """Parse /proc/stat; ValueError when the aggregate cpu line is missing or malformed."""
    busy = total = None
    counters: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "cpu":
            values = [int(v) for v in rest.split()]
            if len(values) < 4:
                raise ValueError(f"/proc/stat cpu line has {len(values)} columns")
            columns = dict(zip(_CPU_COLUMNS, values, strict=False))
            busy = sum(columns.get(c, 0) for c in _BUSY)
            total = sum(columns.values())
        elif key in ("processes", "ctxt", "procs_running", "procs_blocked"):
            counters[key] = int(rest)
    if busy is None or total is None:
        raise ValueError("/proc/stat has no aggregate cpu line")
    return SystemStat(
        busy,
        total,
        counters.get("processes"),
        counters.get("ctxt"),
        counters.get("procs_running"),
        counters.get("procs_blocked"),
    )


def parse_pid_stat(data: bytes) -> PidStat:
    """Parse /proc/<pid>/stat; comm may hold spaces and parentheses: split at the last ')'."""
    open_paren = data.find(b"(")
    close_paren = data.rfind(b")")
    if open_paren < 0 or close_paren < open_paren:
        raise ValueError("no (comm) in /proc/<pid>/stat")
    # Fields after comm: state(3) ppid(4) ... utime(14) stime(15) ... starttime(22) vsize(23)
    # rss(24); the kernel has printed all of them since 2.6.
    rest = data[close_paren + 2 :].split(b" ", 22)
    if len(rest) < 22:
        raise ValueError("/proc/<pid>/stat is truncated")
    comm = data[open_paren + 1 : close_paren].decode("utf-8", "replace")
    return PidStat(comm, int(rest[11]) + int(rest[12]), int(rest[19]), int(rest[20]), int(rest[21]))


def parse_cmdline(data: bytes) -> tuple[str, ...]:
    """argv from /proc/<pid>/cmdline: NUL-separated; empty for kernel threads."""
    if not data.strip(b"\0"):
        return ()
    if data.endswith(b"\0"):
        data = data[:-1]
    return tuple(arg.decode("utf-8", "replace") for arg in data.split(b"\0"))


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages from /proc/loadavg."""
    one, five, fifteen = text.split()[:3]
    return float(one), float(five), float(fifteen)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per field (`MemTotal: 16 kB` -> {"MemTotal": 16384})."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
        out[key.strip()] = int(parts[0]) * scale
    return out


def parse_uptime(text: str) -> float:
    """Seconds since boot from /proc/uptime; ValueError when empty (a half-written copy)."""
    fields = text.split()
    if not fields:
        raise ValueError("/proc/uptime is empty")
    return float(fields[0])


class Mount(NamedTuple):
    """One line of /proc/<pid>/mounts."""

    device: str
    mount_point: str
    fs_type: str


# File systems that hold no disk space (sysinfo's list, which Scaphandre uses), and network
# file systems, whose statvfs can block for minutes on a dead server: never a disk here.
_NOT_DISKS = frozenset(
    (
        "rootfs sysfs proc tmpfs devtmpfs cgroup cgroup2 pstore squashfs rpc_pipefs iso9660 "
        "nfs nfs4 cifs smb3 smbfs ceph glusterfs fuse.glusterfs fuse.sshfs fuse.s3fs 9p afs "
        "lustre gpfs davfs fuse.rclone"
    ).split()
)
_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """The kernel writes space, tab, newline and backslash in mount fields as octal escapes."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field) if "\\" in field else field


def parse_mounts(text: str, limit: int = 256) -> list[Mount]:
    """The mounts that are disks, as Scaphandre (sysinfo) picks them, at most `limit`.

    Pseudo and network file systems, and mount points under /sys, /proc and /run (but
    /run/media), are left out; a mount point mounted over keeps its last line.
    """
    mounts: dict[str, Mount] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount_point, fs_type = fields[0], _unescape(fields[1]), fields[2]
        if fs_type in _NOT_DISKS or device.startswith("sunrpc"):
            continue
        if mount_point.startswith(("/sys", "/proc")) or (
            mount_point.startswith("/run") and not mount_point.startswith("/run/media")
        ):
            continue
        mounts.pop(mount_point, None)
        mounts[mount_point] = Mount(device, mount_point, fs_type)
    return list(mounts.values())[:limit]
