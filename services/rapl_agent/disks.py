"""The host's disks as Scaphandre reports them: the mount table, statvfs, the block queue.

Scaphandre 1.0 takes its disks from sysinfo 0.28: every mount of `/proc/mounts` that is not a
pseudo or network file system (`procstat.parse_mounts`), its size from statvfs, its type from
`/sys/block/<disk>/queue/rotational` (1 HDD, 0 SSD, else Unknown) and whether it is removable
from the `usb-*` links of `/dev/disk/by-id`. Read in the sampler's thread with the rest of a
sample; any of it unreadable leaves that part out, never the sample.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .procstat import Mount, parse_mounts

_MAX_MOUNTS_BYTES = 1 << 20
_PARTITION = re.compile(r"^(?:(sd|vd|hd|xvd)[a-z]+)\d+$")


@dataclass(frozen=True)
class Disk:
    """One mounted disk: Scaphandre's labels and its sizes in bytes."""

    name: str  # the mounted device, /dev/sda1 (Scaphandre's disk_name)
    mount_point: str
    file_system: str
    kind: str  # SSD, HDD or Unknown (disk_type)
    removable: bool
    total_bytes: int
    available_bytes: int


def block_name(resolved: str) -> str:
    """The /sys/block entry of a device path (links resolved): partitions map to their disk."""
    name = resolved.removeprefix("/dev/")
    if _PARTITION.match(name):
        return name.rstrip("0123456789")
    if name.startswith(("nvme", "mmcblk")) and "p" in name[4:]:
        # nvme0n1p1 -> nvme0n1, mmcblk0p1 -> mmcblk0
        return name[: name.rindex("p")]
    return name


def disk_kind(rotational: str | None) -> str:
    """`queue/rotational` as sysinfo reads it: 1 HDD, 0 SSD, anything else Unknown."""
    value = (rotational or "").strip()
    return {"1": "HDD", "0": "SSD"}.get(value, "Unknown")


class DiskReader:
    """Reads the disks of one proc root; `sys_root` holds `block/`, `by_id` the udev links."""

    def __init__(self, proc_root: Path, sys_root: Path | None, by_id: Path) -> None:
        self.mounts_path = proc_root / "mounts"
        self.sys_root = sys_root
        self.by_id = by_id

    def read(self) -> tuple[Disk, ...] | None:
        """Every disk now, None when the mount table cannot be read."""
        try:
            with open(self.mounts_path, "rb") as f:
                text = f.read(_MAX_MOUNTS_BYTES).decode("utf-8", "replace")
        except OSError:
            return None
        removable = self._removable()
        disks = []
        for mount in parse_mounts(text):
            disk = self._disk(mount, removable)
            if disk is not None:
                disks.append(disk)
        return tuple(disks)

    def _disk(self, mount: Mount, removable: frozenset[str]) -> Disk | None:
        try:
            st = os.statvfs(mount.mount_point)
        except (OSError, ValueError):
            return None
        # f_blocks and f_bavail count f_frsize units (sysinfo multiplies by f_bsize, the same
        # on Linux's common file systems).
        total = st.f_frsize * st.f_blocks
        if total == 0:
            return None  # sysinfo leaves out what has no size
        resolved = os.path.realpath(mount.device) if mount.device.startswith("/") else mount.device
        return Disk(
            mount.device,
            mount.mount_point,
            mount.fs_type,
            disk_kind(self._rotational(block_name(resolved))),
            resolved in removable,
            total,
            st.f_frsize * st.f_bavail,
        )

    def _rotational(self, block: str) -> str | None:
        if self.sys_root is None or not block or "/" in block or block in (".", ".."):
            return None
        try:
            with open(self.sys_root / "block" / block / "queue" / "rotational", "rb") as f:
                return f.read(16).decode("ascii", "replace")
        except OSError:
            return None

    def _removable(self) -> frozenset[str]:
        """The devices a `usb-*` link of /dev/disk/by-id points at."""
        try:
            names = os.listdir(self.by_id)
        except OSError:
            return frozenset()
        return frozenset(
            os.path.realpath(self.by_id / name) for name in names if name.startswith("usb-")
        )
