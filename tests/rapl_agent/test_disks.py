"""The host's disks as Scaphandre lists them: mount table, statvfs, block queue, udev links."""

from __future__ import annotations

import os

from services.rapl_agent.disks import DiskReader, block_name, disk_kind


def test_block_name_maps_partitions_to_their_disk():
    cases = {
        "/dev/sda1": "sda",
        "/dev/sda": "sda",
        "/dev/vda3": "vda",
        "/dev/xvda1": "xvda",
        "/dev/nvme0n1p2": "nvme0n1",
        "/dev/nvme0n1": "nvme0n1",
        "/dev/mmcblk0p1": "mmcblk0",
        "/dev/dm-0": "dm-0",
    }
    assert {device: block_name(device) for device in cases} == cases


def test_disk_kind_reads_rotational_as_sysinfo_does():
    assert [disk_kind(v) for v in ("1\n", "0\n", "2", "", None)] == [
        "HDD",
        "SSD",
        "Unknown",
        "Unknown",
        "Unknown",
    ]


def build(tmp_path, mounts: str):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mounts").write_text(mounts)
    sys_root = tmp_path / "sys"
    for disk, rotational in (("vdz", "0\n"), ("sdz", "1\n")):
        (sys_root / "block" / disk / "queue").mkdir(parents=True)
        (sys_root / "block" / disk / "queue" / "rotational").write_text(rotational)
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-Vendor_Stick-0:0-part1").symlink_to("/dev/sdz1")
    (by_id / "ata-Disk_123").symlink_to("/dev/vdz")
    return DiskReader(proc, sys_root, by_id)


def test_disks_with_sizes_types_and_removable(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    reader = build(
        tmp_path,
        f"/dev/vdz / ext4 rw 0 0\n/dev/sdz1 {data} vfat rw 0 0\n"
        f"tmpfs {tmp_path} tmpfs rw 0 0\n/dev/vdz {tmp_path}/gone ext4 rw 0 0\n",
    )
    disks = {d.mount_point: d for d in reader.read()}
    # tmpfs is no disk; a mount point that cannot be statvfs'ed is left out.
    assert set(disks) == {"/", str(data)}
    root, stick = disks["/"], disks[str(data)]
    assert (root.name, root.file_system, root.kind, root.removable) == (
        "/dev/vdz",
        "ext4",
        "SSD",
        False,
    )
    assert (stick.name, stick.file_system, stick.kind, stick.removable) == (
        "/dev/sdz1",
        "vfat",
        "HDD",
        True,
    )
    for path, disk in ((data, stick), ("/", root)):
        st = os.statvfs(path)
        assert disk.total_bytes == st.f_frsize * st.f_blocks > 0
        # Others write on the same file system meanwhile: available within 5 % of now.
        assert abs(disk.available_bytes - st.f_frsize * st.f_bavail) <= 0.05 * disk.total_bytes


def test_an_unreadable_mount_table_is_no_disks(tmp_path):
    reader = DiskReader(tmp_path / "nowhere", None, tmp_path / "by-id")
    assert reader.read() is None


def test_without_sys_block_or_udev_the_type_is_unknown(tmp_path):
    (tmp_path / "mounts").write_text("/dev/vdz / ext4 rw 0 0\n")
    (disk,) = DiskReader(tmp_path, None, tmp_path / "no-by-id").read()
    assert (disk.kind, disk.removable) == ("Unknown", False)
