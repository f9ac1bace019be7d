"""QEMU-like burner processes: real processes with QEMU's comm and argv that burn CPU.

A burner is a small Python interpreter that rewrites its own argv in place (through
`/proc/self/mem`, so `/proc/<pid>/cmdline` shows exactly the argv we chose, NUL-separated as
for any exec'd program), sets its comm through `/proc/self/comm`, then burns a fraction of one
CPU in short periods. Helpers imitate vhost kernel threads: comm `vhost-<qemu pid>` and an
argv area filled with NULs (a kernel thread's cmdline is empty). Every burner polls its parent
pid and exits as soon as the process that started it is gone, so none outlives a test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

QEMU_BINARY = "/usr/bin/qemu-kvm-one"
QEMU_COMM = "qemu-kvm-one"
PERIOD_S = 0.05

# Runs in the child with `python -S -c`; only the standard library, imported lazily.
_CHILD = r"""
import os, time
env = os.environb
argv = bytes.fromhex(env[b"ONE_SIM_ARGV"].decode())
comm = env[b"ONE_SIM_COMM"]
fraction = float(env[b"ONE_SIM_FRACTION"])
parent = int(env[b"ONE_SIM_PARENT"])
period = float(env[b"ONE_SIM_PERIOD"])
fields = open("/proc/self/stat", "rb").read().rsplit(b")", 1)[1].split()
start, end = int(fields[45]), int(fields[46])
size = end - start
if not argv:
    argv = b"\0" * size
if len(argv) != size:
    raise SystemExit(f"argv area is {size} bytes, wanted {len(argv)}")
with open("/proc/self/mem", "r+b", buffering=0) as mem:
    mem.seek(start)
    mem.write(argv)
with open("/proc/self/comm", "wb") as f:
    f.write(comm)
busy = max(0.0, min(1.0, fraction)) * period
deadline = time.monotonic()
while os.getppid() == parent:
    deadline += period
    spent = time.thread_time() + busy
    while time.thread_time() < spent and time.monotonic() < deadline:
        pass
    now = time.monotonic()
    if deadline > now:
        time.sleep(deadline - now)
    else:
        deadline = now
"""


def qemu_argv(vm_id: int, *, memory_mib: int = 1024, vcpus: int = 1) -> list[str]:
    """An argv shaped like the one libvirt gives QEMU for OpenNebula VM `vm_id`."""
    name = f"one-{vm_id}"
    domain = f"/var/lib/libvirt/qemu/domain-{vm_id + 1}-{name}"
    disk = f"/var/lib/one//datastores/0/{vm_id}/disk.0"
    mac = f"02:00:c0:a8:{(vm_id >> 8) & 0xFF:02x}:{vm_id & 0xFF:02x}"
    return [
        QEMU_BINARY,
        "-name",
        f"guest={name},debug-threads=on",
        "-S",
        "-object",
        f'{{"qom-type":"secret","id":"masterKey0","format":"raw","file":"{domain}/master-key.aes"}}',
        "-machine",
        "pc-q35-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram",
        "-accel",
        "kvm",
        "-cpu",
        "host,migratable=on",
        "-m",
        str(memory_mib),
        "-object",
        f'{{"qom-type":"memory-backend-ram","id":"pc.ram","size":{memory_mib * 1048576}}}',
        "-overcommit",
        "mem-lock=off",
        "-smp",
        f"{vcpus},sockets={vcpus},cores=1,threads=1",
        "-uuid",
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"one-cognit-sim/{vm_id}")),
        "-no-user-config",
        "-nodefaults",
        "-chardev",
        "socket,id=charmonitor,fd=31,server=on,wait=off",
        "-mon",
        "chardev=charmonitor,id=monitor,mode=control",
        "-rtc",
        "base=utc",
        "-no-shutdown",
        "-boot",
        "strict=on",
        "-blockdev",
        f'{{"driver":"file","filename":"{disk}","node-name":"libvirt-1-storage",'
        '"auto-read-only":true,"discard":"unmap"}',
        "-blockdev",
        '{"node-name":"libvirt-1-format","read-only":false,"driver":"qcow2",'
        '"file":"libvirt-1-storage"}',
        "-device",
        "virtio-blk-pci,bus=pci.0,addr=0x4,drive=libvirt-1-format,id=virtio-disk0,bootindex=1",
        "-netdev",
        "tap,fd=33,vhost=on,vhostfd=34,id=hostnet0",
        "-device",
        f"virtio-net-pci,netdev=hostnet0,id=net0,mac={mac},bus=pci.0,addr=0x3",
        "-vnc",
        f"0.0.0.0:{vm_id + 5900}",
        "-device",
        "virtio-balloon-pci,id=balloon0,bus=pci.0,addr=0x5",
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-msg",
        "timestamp=on",
    ]


def _argv_bytes(argv: list[str]) -> bytes:
    return b"".join(a.encode() + b"\0" for a in argv)


def spawn(argv: list[str] | None, comm: str, cpu_fraction: float) -> subprocess.Popen:
    """Start a burner whose cmdline is `argv` (empty when None) and comm is `comm`."""
    target = _argv_bytes(argv) if argv else b""
    code = _CHILD
    launch = [sys.executable, "-S", "-c", code]
    if target:
        # The kernel's argv area has a fixed size: pad the code so it matches the target.
        pad = len(target) - len(_argv_bytes(launch))
        if pad < 0:
            raise ValueError(f"argv for {comm} is too short to imitate ({len(target)} bytes)")
        launch[-1] = code + "#" * pad
    env = {
        "ONE_SIM_ARGV": target.hex(),
        "ONE_SIM_COMM": comm,
        "ONE_SIM_FRACTION": repr(float(cpu_fraction)),
        "ONE_SIM_PARENT": str(os.getpid()),
        "ONE_SIM_PERIOD": repr(PERIOD_S),
    }
    return subprocess.Popen(
        launch,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        close_fds=True,
    )


def wait_disguised(proc: subprocess.Popen, comm: str, timeout: float = 10.0) -> None:
    """Wait until the burner shows `comm` in /proc; raise with its stderr when it died."""
    path = Path(f"/proc/{proc.pid}/comm")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"burner {comm} exited {proc.returncode}: {err.strip()}")
        try:
            if path.read_text().rstrip("\n") == comm:
                return
        except OSError:
            pass
        time.sleep(0.01)
    stop([proc])
    raise RuntimeError(f"burner {comm} did not start within {timeout}s")


def stop(procs: list[subprocess.Popen], timeout: float = 5.0) -> None:
    """Terminate burners and reap them; SIGKILL those that do not go."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
