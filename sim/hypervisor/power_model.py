"""The simulated host's power model and how it splits over RAPL zones (fixed proportions).

Host watts W = idle_w + w_per_cpu x (CPU seconds burned by the host's processes / seconds).
The split, documented here once and used by the tests as the truth:

- with psys: the psys zone reads W (the whole platform); the sockets together read
  PSYS_SOCKET_SHARE x W (the rest is fans, disks, VRs that only psys sees);
- without psys: the sockets together read W, so package + dram over the sockets is the host;
- each socket gets an equal part S; package = PACKAGE_SHARE x S and dram = (1 - PACKAGE_SHARE)
  x S when dram exists (else package = S); core = CORE_SHARE x package and uncore =
  UNCORE_SHARE x package (both inside the package, as on real parts);
- the mmio twin of a package reads exactly the package's counter.
"""

from __future__ import annotations

from dataclasses import dataclass

PSYS_SOCKET_SHARE = 0.85
PACKAGE_SHARE = 0.85
CORE_SHARE = 0.70
UNCORE_SHARE = 0.10


@dataclass(frozen=True)
class Zone:
    """One simulated powercap zone: its directory name, `name` file and parent zone."""

    key: str  # directory name, e.g. intel-rapl:0:1
    name: str  # contents of the `name` file: package-0, core, uncore, dram, psys
    parent: str | None  # key of the parent zone, None for top-level zones
    control: str  # control type directory: intel-rapl or intel-rapl-mmio
    mirror_of: str | None = None  # mmio twins read the package's counter


def layout(sockets: int, *, psys: bool, dram: bool, mmio: bool) -> list[Zone]:
    """The zones a kernel would expose for this host, in the kernel's numbering."""
    zones: list[Zone] = []
    for n in range(sockets):
        pkg = f"intel-rapl:{n}"
        zones.append(Zone(pkg, f"package-{n}", None, "intel-rapl"))
        domains = ["core", "uncore"] + (["dram"] if dram else [])
        for m, domain in enumerate(domains):
            zones.append(Zone(f"{pkg}:{m}", domain, pkg, "intel-rapl"))
    if psys:
        # The kernel numbers psys after the packages: intel-rapl:<sockets>.
        zones.append(Zone(f"intel-rapl:{sockets}", "psys", None, "intel-rapl"))
    if mmio:
        for n in range(sockets):
            zones.append(
                Zone(
                    f"intel-rapl-mmio:{n}",
                    f"package-{n}",
                    None,
                    "intel-rapl-mmio",
                    mirror_of=f"intel-rapl:{n}",
                )
            )
    return zones


def zone_watts(zones: list[Zone], host_w: float, *, sockets: int) -> dict[str, float]:
    """Watts each (non-mirror) zone reads when the host draws `host_w`."""
    has_psys = any(z.name == "psys" for z in zones)
    has_dram = any(z.name == "dram" for z in zones)
    socket_w = host_w * (PSYS_SOCKET_SHARE if has_psys else 1.0) / sockets
    package_w = socket_w * (PACKAGE_SHARE if has_dram else 1.0)
    by_name = {
        "core": package_w * CORE_SHARE,
        "uncore": package_w * UNCORE_SHARE,
        "dram": socket_w - package_w,
        "psys": host_w,
    }
    watts: dict[str, float] = {}
    for zone in zones:
        if zone.mirror_of is not None:
            continue
        watts[zone.key] = package_w if zone.name.startswith("package-") else by_name[zone.name]
    return watts
