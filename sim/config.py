"""`one-cognit sim` flags: one frozen dataclass, validated once."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from services.common.config import Listen, ServiceConfig, option

MAX_BURNERS = 256


def parse_ipv4(text: object) -> str:
    try:
        return str(ipaddress.IPv4Address(str(text).strip()))
    except ValueError:
        raise ValueError(f"expected an IPv4 address, got {text!r}") from None


@dataclasses.dataclass(frozen=True)
class SimConfig(ServiceConfig):
    """The simulator's configuration (SPEC section 10)."""

    listen: Listen = option(
        Listen("127.0.0.1", 2633), "oned XML-RPC address (POST /RPC2), HOST:PORT"
    )
    control_listen: Listen = option(
        Listen("127.0.0.1", 2634), "JSON control API address, HOST:PORT"
    )
    hosts: int = option(3, "number of generated hosts (ignored with --fleet)")
    vms_per_host: int = option(3, "generated VMs per host (ignored with --fleet)")
    seed: int = option(0, "random seed of the generated fleet (same seed, same fleet)")
    poweroff_fraction: float = option(
        0.0, "share of generated VMs left POWEROFF instead of RUNNING", metavar="FRACTION"
    )
    fleet: Path | None = option(
        None, "YAML file with explicit hosts, VMs and users", metavar="FILE"
    )
    auth: str = option(
        "oneadmin:opennebula", "oneadmin's session, user:password", metavar="USER:PASSWORD"
    )
    host_ip_base: str = option(
        "127.0.1.1",
        "TEMPLATE/HOSTNAME of the first generated host; host N gets base+N-1, so each "
        "simulated host has its own loopback address for its agents",
        parse=parse_ipv4,
        metavar="IPV4",
    )
    hypervisors: Path | None = option(
        None,
        "directory for simulated hypervisors: one powercap tree + /proc view per host "
        "under DIR/<host name>/ and a QEMU-like process per RUNNING VM",
        metavar="DIR",
    )
    auth_driver_dir: Path = option(
        Path("/var/lib/one/remotes/auth"),
        "auth drivers: users whose AUTH_DRIVER is not core are checked by "
        "DIR/<driver>/authenticate",
    )
    session_expiration: float = option(
        900.0, "seconds a driver-accepted session stays valid (SESSION_EXPIRATION_TIME)"
    )
    hook_dir: Path = option(
        Path("/var/lib/one/remotes/hooks"), "base directory of hook COMMANDs that are not absolute"
    )
    hook_timeout: float = option(
        60.0, "seconds a hook may run when its template has no TIMEOUT", metavar="SECONDS"
    )
    one_version: str = option("7.0.0", "what one.system.version answers", metavar="VERSION")
    idle_w: float = option(40.0, "hypervisor power model: idle watts per host", metavar="W")
    w_per_cpu: float = option(15.0, "hypervisor power model: watts per fully busy CPU", metavar="W")
    max_energy_range_uj: int = option(
        262_143_328_850, "powercap counters wrap at this many microjoules", metavar="UJ"
    )

    def __post_init__(self) -> None:
        if self.hosts < 0 or self.vms_per_host < 0:
            raise ValueError("--hosts and --vms-per-host must be >= 0")
        if ":" not in self.auth or not self.auth.partition(":")[0]:
            raise ValueError("--auth must be user:password")
        last = int(ipaddress.IPv4Address(self.host_ip_base)) + max(self.hosts - 1, 0)
        if last > int(ipaddress.IPv4Address("255.255.255.255")):
            raise ValueError(
                f"--host-ip-base {self.host_ip_base} leaves no room for {self.hosts} hosts"
            )
        if not 0.0 <= self.poweroff_fraction <= 1.0:
            raise ValueError("--poweroff-fraction must be between 0 and 1")
        if self.session_expiration < 0:
            raise ValueError("--session-expiration must be >= 0")
        if self.hook_timeout <= 0:
            raise ValueError("--hook-timeout must be > 0")
        if self.max_energy_range_uj <= 0:
            raise ValueError("--max-energy-range-uj must be > 0")
        if self.listen == self.control_listen:
            raise ValueError("--listen and --control-listen must differ")
