"""A simulated KVM hypervisor: a kernel-like powercap tree, a /proc view and QEMU-like VMs.

`SimHypervisor` writes a powercap tree shaped like `/sys/class/powercap` (flat symlinks into
`devices/virtual/powercap/...`, nested sub-zones, an optional psys zone and mmio twins) whose
`energy_uj` counters advance by the power model of `power_model.py` on a daemon ticker thread,
and keeps a per-host `/proc` view holding only this host's burner processes. The agent reads
both exactly as it reads a real host, through `--powercap-root` and `--proc-root`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import burner
from .power_model import Zone, layout, zone_watts

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Files a /proc view links to; the agent reads them as on a real host.
PROC_FILES = ("stat", "loadavg", "uptime", "cpuinfo", "meminfo", "mounts")
DEVICES = Path("sys/devices/virtual/powercap")
CLASS = Path("sys/class/powercap")
BREAKAGES = ("garbage", "denied", "missing", "empty")

_live: weakref.WeakSet[SimHypervisor] = weakref.WeakSet()


@dataclass
class QemuProcess:
    """One QEMU-like VM process and its vhost helpers (all real, all burning CPU)."""

    vm_id: int
    pid: int
    helper_pids: list[int]
    cpu_fraction: float
    argv: list[str]
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return f"one-{self.vm_id}"

    @property
    def pids(self) -> list[int]:
        """The QEMU pid followed by its helpers' pids."""
        return [self.pid, *self.helper_pids]

    def alive(self) -> bool:
        """True while the QEMU process runs."""
        return bool(self._procs) and self._procs[0].poll() is None


def _write_atomic(path: Path, text: str, mode: int = 0o444) -> None:
    """Replace `path` with `text` in one rename so a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _cpu_jiffies(pid: int) -> int | None:
    """utime + stime of a process in clock ticks, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class SimHypervisor:
    """A simulated hypervisor whose RAPL counters follow the CPU its VMs really burn."""

    def __init__(
        self,
        root: Path,
        *,
        name: str = "host0",
        sockets: int = 1,
        psys: bool = False,
        dram: bool = True,
        mmio: bool = True,
        idle_w: float = 40.0,
        w_per_cpu: float = 15.0,
        max_energy_range_uj: int = 262_143_328_850,
        tick: float = 0.25,
    ) -> None:
        if sockets < 1:
            raise ValueError("sockets must be at least 1")
        if tick <= 0 or max_energy_range_uj <= 0:
            raise ValueError("tick and max_energy_range_uj must be positive")
        self.root = Path(root)
        self.name = name
        self.sockets = sockets
        self.idle_w = float(idle_w)
        self.w_per_cpu = float(w_per_cpu)
        self.max_energy_range_uj = int(max_energy_range_uj)
        self.tick = float(tick)
        self.powercap_root = self.root / CLASS
        self.proc_root = self.root / "proc"
        self.zones: list[Zone] = layout(sockets, psys=psys, dram=dram, mmio=mmio)
        self._by_key = {z.key: z for z in self.zones}
        self._lock = threading.RLock()
        # Energy kept as floats in microjoules so fractions of a microjoule are not lost.
        self._energy: dict[str, float] = {
            z.key: float((i + 1) * 1_000_003 % self.max_energy_range_uj)
            for i, z in enumerate(self.zones)
            if z.mirror_of is None
        }
        self._broken: dict[str, str] = {}
        self._vms: dict[int, QemuProcess] = {}
        self._jiffies: dict[int, int] = {}
        self._power_w = self.idle_w
        self._last = time.monotonic()
        # (model time, monotonic time its counters were written) of the recent ticks.
        self._ticks: deque[tuple[float, float]] = deque(maxlen=20_000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._stopped = False

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> SimHypervisor:
        """Create the trees and start the ticker thread; returns self."""
        with self._lock:
            if self._started:
                return self
            self._started = True
            self._build_powercap()
            self._build_proc()
            self._write_counters()
            _live.add(self)
        self._last = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, name=f"sim-hypervisor-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the ticker and every process this host started; safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        with self._lock:
            vms = list(self._vms.values())
            self._vms.clear()
            self._stopped = True
        burner.stop([p for vm in vms for p in vm._procs])
        for vm in vms:
            self._unlink_pids(vm.pids)

    def __enter__(self) -> SimHypervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- VMs -----------------------------------------------------------------------------

    def start_vm(self, vm_id: int, cpu_fraction: float = 0.2, helpers: int = 1) -> QemuProcess:
        """Start a QEMU-like process for VM `vm_id` and `helpers` vhost helpers."""
        if not self._started or self._stopped:
            raise RuntimeError(f"{self.name}: start() the hypervisor before start_vm()")
        with self._lock:
            if vm_id in self._vms:
                raise ValueError(f"{self.name}: VM {vm_id} already runs")
        argv = burner.qemu_argv(vm_id)
        procs = [burner.spawn(argv, burner.QEMU_COMM, cpu_fraction)]
        try:
            burner.wait_disguised(procs[0], burner.QEMU_COMM)
            qemu_pid = procs[0].pid
            helper_comm = f"vhost-{qemu_pid}"
            # Helpers burn a small fraction, as vhost workers do for a busy NIC.
            helper_fraction = min(0.05, cpu_fraction / 4)
            for _ in range(helpers):
                procs.append(burner.spawn(None, helper_comm, helper_fraction))
            for proc in procs[1:]:
                burner.wait_disguised(proc, helper_comm)
        except BaseException:
            burner.stop(procs)
            raise
        qp = QemuProcess(vm_id, qemu_pid, [p.pid for p in procs[1:]], cpu_fraction, argv, procs)
        with self._lock:
            for pid in qp.pids:
                self._jiffies[pid] = _cpu_jiffies(pid) or 0
            self._link_pids(qp.pids)
            self._vms[vm_id] = qp
        return qp

    def stop_vm(self, vm_id: int) -> None:
        """Stop a VM's processes and drop them from the /proc view; unknown ids are ignored."""
        with self._lock:
            qp = self._vms.pop(vm_id, None)
        if qp is None:
            return
        self._unlink_pids(qp.pids)
        burner.stop(qp._procs)

    @property
    def vms(self) -> dict[int, QemuProcess]:
        """The running VMs by id (a copy)."""
        with self._lock:
            return dict(self._vms)

    # -- the model -----------------------------------------------------------------------

    def host_power_w(self) -> float:
        """The model's host power over the last tick, in watts."""
        with self._lock:
            return self._power_w

    def zone_power_w(self) -> dict[str, float]:
        """The model's power per zone (directory name) over the last tick, in watts."""
        with self._lock:
            watts = zone_watts(self.zones, self._power_w, sockets=self.sockets)
        for zone in self.zones:
            if zone.mirror_of is not None:
                watts[zone.key] = watts[zone.mirror_of]
        return watts

    def energy_uj(self, zone: str) -> int:
        """A zone's counter as the kernel would show it (wrapped), by directory name."""
        key = self._counter_key(zone)
        with self._lock:
            return int(self._energy[key]) % self.max_energy_range_uj

    def set_energy_uj(self, zone: str, uj: int) -> None:
        """Jump a zone's counter (e.g. just below max_energy_range_uj for a wrap test)."""
        key = self._counter_key(zone)
        if not 0 <= uj < self.max_energy_range_uj:
            raise ValueError(f"energy must be in [0, {self.max_energy_range_uj})")
        with self._lock:
            self._energy[key] = float(uj)
            self._write_counters()

    def break_counter(self, zone: str, how: str = "garbage") -> None:
        """Make a zone's energy_uj unreadable: garbage, denied (mode 0), missing or empty."""
        if how not in BREAKAGES:
            raise ValueError(f"how must be one of {', '.join(BREAKAGES)}")
        self._zone(zone)
        with self._lock:
            self._broken[zone] = how
            self._write_counters()

    def repair_counter(self, zone: str) -> None:
        """Undo `break_counter`; the counter shows the energy it kept integrating."""
        with self._lock:
            self._broken.pop(zone, None)
            self._write_counters()

    @contextlib.contextmanager
    def synced(self) -> Iterator[float]:
        """Tick now on the caller's thread and hold the ticker while the block runs.

        Yields the monotonic time the counters (files and `energy_uj`) are current to. The
        ticker thread can lag its tick by a scheduling stall on a loaded machine; a test that
        compares counters with CPU time it reads itself must read both at one known moment.
        """
        with self._lock:
            yield self._step()

    def max_counter_lag(self, since: float, until: float | None = None) -> float:
        """The most a counter file lagged the model between two monotonic times, in seconds.

        A reader at any moment of [since, until] saw the energy of at most this long before
        that moment: the tick interval, plus any stall of the ticker thread. Tests that
        compare measured power with the model derive their tolerance from it.
        """
        until = time.monotonic() if until is None else until
        with self._lock:
            ticks = list(self._ticks)
        worst = 0.0
        # Between two writes a reader sees the first one's model time.
        for (model_time, written), (_, written_next) in zip(ticks, ticks[1:], strict=False):
            if written_next > since and written <= until:
                worst = max(worst, min(written_next, until) - model_time)
        if ticks and ticks[-1][1] <= until:
            worst = max(worst, until - ticks[-1][0])
        return worst

    def zone_path(self, zone: str) -> Path:
        """The real directory of a zone (under devices/, not the class symlink)."""
        z = self._zone(zone)
        base = self.root / DEVICES / z.control
        if z.parent is not None:
            base = base / z.parent
        return base / z.key

    # -- internals -----------------------------------------------------------------------

    def _zone(self, zone: str) -> Zone:
        try:
            return self._by_key[zone]
        except KeyError:
            raise KeyError(f"{self.name} has no zone {zone!r}") from None

    def _counter_key(self, zone: str) -> str:
        z = self._zone(zone)
        return z.mirror_of or z.key

    def _build_powercap(self) -> None:
        devices = self.root / DEVICES
        self.powercap_root.mkdir(parents=True, exist_ok=True)
        for control in sorted({z.control for z in self.zones}):
            (devices / control).mkdir(parents=True, exist_ok=True)
            _write_atomic(devices / control / "enabled", "1\n", 0o644)
            self._class_link(control, devices / control)
        for zone in self.zones:
            path = self.zone_path(zone.key)
            path.mkdir(parents=True, exist_ok=True)
            _write_atomic(path / "name", zone.name + "\n")
            _write_atomic(path / "enabled", "1\n", 0o644)
            _write_atomic(path / "max_energy_range_uj", f"{self.max_energy_range_uj}\n")
            if zone.parent is None:
                _write_atomic(path / "constraint_0_name", "long_term\n")
                _write_atomic(path / "constraint_0_power_limit_uw", "150000000\n", 0o644)
                _write_atomic(path / "constraint_0_time_window_us", "999424\n", 0o644)
            self._class_link(zone.key, path)

    def _class_link(self, name: str, target: Path) -> None:
        link = self.powercap_root / name
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(target, self.powercap_root))

    def _build_proc(self) -> None:
        self.proc_root.mkdir(parents=True, exist_ok=True)
        for name in PROC_FILES:
            link = self.proc_root / name
            if not link.is_symlink():
                link.symlink_to(f"/proc/{name}")

    def _link_pids(self, pids: list[int]) -> None:
        for pid in pids:
            link = self.proc_root / str(pid)
            if not link.is_symlink():
                link.symlink_to(f"/proc/{pid}")

    def _unlink_pids(self, pids: list[int]) -> None:
        for pid in pids:
            (self.proc_root / str(pid)).unlink(missing_ok=True)

    def _write_counters(self) -> None:
        for zone in self.zones:
            path = self.zone_path(zone.key) / "energy_uj"
            value = int(self._energy[zone.mirror_of or zone.key]) % self.max_energy_range_uj
            how = self._broken.get(zone.key)
            if how is None:
                _write_atomic(path, f"{value}\n")
            elif how == "garbage":
                _write_atomic(path, "not-a-number\n")
            elif how == "empty":
                _write_atomic(path, "")
            elif how == "denied":
                # Kernels >= 5.10 make energy_uj root-only (0400). The tests run as root, so
                # mode 0 stands in: only CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH can read it.
                _write_atomic(path, f"{value}\n", 0o000)
            elif how == "missing":
                path.unlink(missing_ok=True)

    def _busy_cpu_seconds(self) -> float:
        """CPU seconds the host's processes burned since the last tick."""
        total = 0
        with self._lock:
            pids = [pid for vm in self._vms.values() for pid in vm.pids]
        for pid in pids:
            now = _cpu_jiffies(pid)
            if now is None:
                continue
            before = self._jiffies.get(pid, now)
            self._jiffies[pid] = now
            total += max(0, now - before)
        return total / CLK_TCK

    def _step(self) -> float:
        """Advance the model to now (the caller holds the lock); returns that moment."""
        now = time.monotonic()
        dt = now - self._last
        if dt <= 0:
            return self._last
        self._last = now
        busy = self._busy_cpu_seconds()
        self._power_w = self.idle_w + self.w_per_cpu * busy / dt
        for key, watts in zone_watts(self.zones, self._power_w, sockets=self.sockets).items():
            self._energy[key] = (self._energy[key] + watts * dt * 1e6) % self.max_energy_range_uj
        self._write_counters()
        self._ticks.append((now, time.monotonic()))
        return now

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                with self._lock:
                    self._step()
            except OSError:
                # The tree was removed under us (test teardown); keep ticking until stopped.
                continue


@atexit.register
def _stop_all() -> None:
    for hv in list(_live):
        hv.stop()
