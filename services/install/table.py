"""What `one-cognit install` puts where, per role: one entry per shim, hook file set and unit.

Adding a service's shim, hooks or unit is one entry below. Paths are absolute on the machine
(`--root` is prefixed at the I/O edge); sources are relative to the source tree (`--source`,
the checkout this package runs from by default).
"""

from __future__ import annotations

import dataclasses

FRONTEND, HOST = "frontend", "host"
REMOTES = "/var/lib/one/remotes"
STATE_DIR = "/var/lib/one-cognit"
MANIFEST = f"{STATE_DIR}/install-manifest.json"
BACKUP_DIR = f"{STATE_DIR}/backup"
ONED_CONF = "/etc/one/oned.conf"
UNIT_DIR = "/etc/systemd/system"
TOKEN_FILE = "/etc/one-cognit/token"
AUTH_SNIPPET = "deploy/one/auth/oned.conf.biscuit"
# The bin directory the unit files in deploy/systemd name; install writes its own instead.
UNIT_BIN = "/opt/one-cognit/bin/"


@dataclasses.dataclass(frozen=True)
class Item:
    """A file of the source tree installed at `target` (mode, and what it is, for the report)."""

    role: str
    service: str
    source: str
    target: str
    mode: int
    what: str
    keep_original: str | None = None  # an existing target is renamed to this, once
    unit: bool = False  # a systemd unit: ExecStart's bin directory is rewritten


@dataclasses.dataclass(frozen=True)
class HookFiles:
    """Hook templates (a glob in the source tree) registered through oned's API."""

    service: str
    pattern: str


def shim(service: str, source: str, remote: str, what: str, **kw: str) -> Item:
    """A script oned runs, under its remotes directory (synced to hosts by onehost sync)."""
    return Item(FRONTEND, service, source, f"{REMOTES}/{remote}", 0o755, what, **kw)


def unit(role: str, service: str) -> Item:
    name = "one-" + service.replace("_", "-") + ".service"
    return Item(
        role,
        service,
        f"deploy/systemd/{name}",
        f"{UNIT_DIR}/{name}",
        0o644,
        "systemd unit",
        unit=True,
    )


ITEMS: tuple[Item, ...] = (
    shim(
        "authd",
        "services/authd/shim/authenticate",
        "auth/biscuit/authenticate",
        "biscuit auth driver",
    ),
    shim(
        "tunnel_agent",
        "services/tunnel_agent/shim/migrate",
        "vmm/kvm/migrate",
        "KVM migrate wrapper (OpenNebula's driver over a per-migration overlay)",
        keep_original="migrate_default",
    ),
    shim(
        "discovery",
        "services/discovery/shim/vm_hook",
        "hooks/one-cognit/discovery_vm_hook",
        "VM state hook",
    ),
    shim(
        "discovery",
        "services/discovery/shim/host_hook",
        "hooks/one-cognit/discovery_host_hook",
        "host state hook",
    ),
    shim("geo", "services/geo/shim/host_hook", "hooks/one-cognit/geo_host_hook", "host state hook"),
    unit(FRONTEND, "vm_exporter"),
    unit(FRONTEND, "authd"),
    unit(FRONTEND, "discovery"),
    unit(FRONTEND, "geo"),
    unit(HOST, "rapl_agent"),
    unit(HOST, "tunnel_agent"),
    Item(
        HOST,
        "rapl_agent",
        "deploy/modules-load.d/one-cognit-rapl.conf",
        "/etc/modules-load.d/one-cognit-rapl.conf",
        0o644,
        "RAPL kernel modules loaded at boot",
    ),
)

HOOKS: tuple[HookFiles, ...] = (
    HookFiles("discovery", "deploy/one/hooks/discovery-*.hook"),
    HookFiles("geo", "deploy/one/hooks/geo-*.tmpl"),
)

# Services whose units install enables, per role, in the order to start them.
SERVICES = {
    FRONTEND: ("authd", "vm_exporter", "discovery", "geo"),
    HOST: ("rapl_agent", "tunnel_agent"),
}


def unit_name(service: str) -> str:
    return "one-" + service.replace("_", "-")


def render_unit(text: str, bin_dir: str) -> str:
    """A unit of deploy/systemd with its programs taken from `bin_dir`."""
    return text.replace(UNIT_BIN, bin_dir.rstrip("/") + "/")
