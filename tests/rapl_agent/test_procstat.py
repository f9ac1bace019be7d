"""/proc parsers on stored files, and the reader that walks a proc root."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.rapl_agent.procfs import ProcError, ProcReader
from services.rapl_agent.procstat import (
    parse_cmdline,
    parse_loadavg,
    parse_meminfo,
    parse_mounts,
    parse_pid_stat,
    parse_proc_stat,
    parse_uptime,
)

PROC = Path(__file__).resolve().parent.parent / "fixtures" / "proc"


def test_proc_stat_busy_jiffies_exclude_idle_iowait_and_guest():
    stat = parse_proc_stat((PROC / "t0" / "stat").read_text())
    # user+nice+system+irq+softirq+steal; guest (6000) is already inside user.
    assert stat.busy_jiffies == 10000 + 100 + 3000 + 0 + 200 + 0
    assert (stat.forks, stat.context_switches) == (183219, 26995664)
    assert (stat.procs_running, stat.procs_blocked) == (3, 1)


def test_proc_stat_without_cpu_line_is_an_error():
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1\nctxt 2\n")
    with pytest.raises(ValueError):
        parse_proc_stat("cpu  1 2\n")


def test_old_kernel_stat_with_four_columns():
    assert parse_proc_stat("cpu  10 20 30 40\n").busy_jiffies == 60


def test_pid_stat_with_parentheses_and_spaces_in_comm():
    stat = parse_pid_stat((PROC / "t0" / "3300" / "stat").read_bytes())
    assert stat.comm == "sd-pam) (x"
    assert stat.jiffies == 10
    assert stat.starttime == 70000


def test_pid_stat_of_qemu_and_kernel_threads():
    assert parse_pid_stat((PROC / "t1" / "2101" / "stat").read_bytes()) == (
        "qemu-kvm-one",
        15200 + 5100,
        50000,
        123456789,
        2345,
    )
    assert parse_pid_stat((PROC / "t1" / "2107" / "stat").read_bytes()).comm == (
        "kvm-nx-lpage-recovery-2101"
    )


def test_pid_stat_garbage():
    with pytest.raises(ValueError):
        parse_pid_stat(b"1234 no comm here")
    with pytest.raises(ValueError):
        parse_pid_stat(b"1234 (x) S 1 2")


def test_cmdline():
    argv = parse_cmdline((PROC / "t0" / "2101" / "cmdline").read_bytes())
    assert argv[:3] == ("/usr/bin/qemu-kvm-one", "-name", "guest=one-42,debug-threads=on")
    assert parse_cmdline(b"") == ()
    assert parse_cmdline(b"\0\0\0\0") == ()  # a kernel thread, or a burner's blanked argv
    assert parse_cmdline(b"a\0\0b\0") == ("a", "", "b")
    # setproctitle-style titles have no trailing NUL.
    assert parse_cmdline(b"nginx: worker") == ("nginx: worker",)


def test_loadavg_meminfo_uptime():
    assert parse_loadavg((PROC / "t0" / "loadavg").read_text()) == (1.25, 0.80, 0.50)
    memory = parse_meminfo((PROC / "t0" / "meminfo").read_text())
    assert memory["MemTotal"] == 16303412 * 1024
    assert memory["HugePages_Total"] == 0
    assert parse_uptime((PROC / "t1" / "uptime").read_text()) == 1002.0


def test_empty_or_garbage_uptime_is_a_value_error():
    for text in ("", " \n", "up 5"):
        with pytest.raises(ValueError):
            parse_uptime(text)


def test_empty_uptime_is_a_proc_error_not_a_crash(tmp_path):
    (tmp_path / "stat").write_text((PROC / "t1" / "stat").read_text())
    (tmp_path / "uptime").write_text("")
    with pytest.raises(ProcError, match="uptime"):
        ProcReader(tmp_path, max_cmdline=10).read_system()


def test_reader_on_a_stored_proc_tree():
    reader = ProcReader(PROC / "t1", max_cmdline=40)
    try:
        system, uptime_ticks = reader.read_system()
        times, infos = reader.read_processes()
    finally:
        reader.close()
    assert system.busy_jiffies == 13900
    assert uptime_ticks == 100200
    assert (times[3100].starttime, times[3100].jiffies) == (100100, 50)
    qemu = infos[2101]
    assert qemu.vm is not None and qemu.vm.name == "one-42" and qemu.vm.one_vm_id == 42
    # Scaphandre's cmdline label: argv joined with no separator, cut at --max-cmdline.
    assert qemu.cmdline == "/usr/bin/qemu-kvm-one-nameguest=one-42,d"
    assert len(qemu.cmdline) == 40
    assert infos[2105].cmdline == "" and infos[2105].vm is None
    assert infos[4000].vm is None  # python with a -name argument is not QEMU
    assert infos[2301].vm.name == "win10" and infos[2301].vm.one_vm_id is None


def test_reader_caches_per_pid_and_starttime(tmp_path):
    (tmp_path / "42").mkdir()
    stat = tmp_path / "42" / "stat"
    cmdline = tmp_path / "42" / "cmdline"
    stat.write_text("42 (a) S 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 500 0 0\n")
    cmdline.write_bytes(b"first\0")
    reader = ProcReader(tmp_path, max_cmdline=100)
    try:
        _, infos = reader.read_processes()
        assert infos[42].cmdline == "first"
        cmdline.write_bytes(b"second\0")
        times, infos = reader.read_processes()
        assert infos[42].cmdline == "first", "argv is cached while the process lives"
        # The same pid with another starttime is another process: described afresh.
        stat.write_text("42 (b) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 900 0 0\n")
        times, infos = reader.read_processes()
        assert infos[42].cmdline == "second"
        assert (times[42].starttime, times[42].jiffies) == (900, 2)
    finally:
        reader.close()


def test_reader_without_held_descriptors_reads_the_same(tmp_path):
    held = ProcReader(PROC / "t1", max_cmdline=512)
    plain = ProcReader(PROC / "t1", max_cmdline=512, hold_fds=0)
    try:
        assert held.read_processes() == plain.read_processes()
    finally:
        held.close()
        plain.close()


def test_unreadable_proc_root(tmp_path):
    reader = ProcReader(tmp_path / "nope", max_cmdline=10)
    with pytest.raises(ProcError, match="nope"):
        reader.read_system()
    with pytest.raises(ProcError):
        reader.read_processes()
    assert reader.read_load() is None and reader.read_memory() is None


def test_proc_stat_total_jiffies_are_every_cpu_column():
    stat = parse_proc_stat((PROC / "t0" / "stat").read_text())
    # user nice system idle iowait irq softirq steal; guest is inside user already.
    assert stat.total_jiffies == 10000 + 100 + 3000 + 40000 + 500 + 0 + 200 + 0


def test_pid_stat_memory_fields():
    stat = parse_pid_stat(b"7 (a b) S 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 500 8192 3\n")
    assert (stat.vsize, stat.rss) == (8192, 3)
    with pytest.raises(ValueError):
        parse_pid_stat(b"7 (a) S 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 500 8192\n")


MOUNTS = r"""proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0
/dev/vda / ext4 rw,relatime 0 0
/dev/vda /run/netns ext4 rw 0 0
/dev/sdb1 /run/media/usb vfat rw 0 0
server:/export /var/lib/one/datastores/0 nfs4 rw 0 0
//nas/share /mnt/share cifs rw 0 0
/dev/sdc1 /srv/my\040data ext4 rw 0 0
/dev/mapper/vg-lv /data xfs rw 0 0
/dev/sdd1 /data xfs rw 0 0
sunrpc /var/lib/nfs/rpc_pipefs rpc_pipefs rw 0 0
broken line
"""


def test_mounts_that_are_disks_as_scaphandre_picks_them():
    mounts = parse_mounts(MOUNTS)
    assert [(m.device, m.mount_point, m.fs_type) for m in mounts] == [
        ("/dev/vda", "/", "ext4"),
        ("/dev/sdb1", "/run/media/usb", "vfat"),
        ("/dev/sdc1", "/srv/my data", "ext4"),  # the kernel's \040 is a space
        ("/dev/sdd1", "/data", "xfs"),  # mounted over /dev/mapper/vg-lv: the last one shows
    ]


def test_mounts_are_bounded_however_many_lines():
    text = "".join(f"/dev/loop{i} /mnt/{i} ext4 rw 0 0\n" for i in range(20_000))
    mounts = parse_mounts(text)
    assert len(mounts) == 256 and mounts[0].mount_point == "/mnt/0"
    assert len(parse_mounts(text, limit=3)) == 3
