"""VM -> host -> power source: which hosts to ask and what each VM's power is (pure).

SPEC section 6: a VM that is not running on a host draws 0; a running VM whose host's agent
did not answer has no power sample (unknown is not zero); a running VM the agent does not
list draws 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from services.common.oned import Host, Vm

from .readings import HostReading, VmReading


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A host to ask for its VMs' power: its id and the name its agent answers on."""

    host_id: int
    address: str


@dataclasses.dataclass(frozen=True, slots=True)
class Attribution:
    """One VM's power (None = no sample) and the source entry it came from, if it was listed."""

    power_uw: int | None
    reading: VmReading | None = None
    source: tuple[int, str] | None = None  # (host id, source kind)

    @property
    def known(self) -> bool:
        """True when the VM's power is known (listed, or known to draw nothing)."""
        return self.power_uw is not None or self.reading is not None


NOT_ON_HOST = Attribution(0)
UNKNOWN = Attribution(None)


def agent_targets(vms: Iterable[Vm], hosts: Mapping[int, Host]) -> tuple[Target, ...]:
    """Every host that runs VMs, once, by id; addressed by TEMPLATE/HOSTNAME or NAME."""
    targets: dict[int, Target] = {}
    for vm in vms:
        if not vm.on_host or vm.host_id in targets:
            continue
        host = hosts.get(vm.host_id)
        # A host missing from the host pool (read a moment apart) is reached by the VM's
        # own record of where it runs.
        address = host.hostname if host is not None else vm.hostname
        if address:
            targets[vm.host_id] = Target(vm.host_id, address)
    return tuple(sorted(targets.values(), key=lambda t: t.host_id))


def attribute(vm: Vm, readings: Mapping[int, HostReading]) -> Attribution:
    """The power of one VM given the readings of the hosts that answered."""
    if not vm.on_host:
        return NOT_ON_HOST
    reading = readings.get(vm.host_id)
    if reading is None:
        return UNKNOWN
    entry = reading.vms.get(vm.id)
    if entry is None:
        return NOT_ON_HOST
    return Attribution(entry.power_uw, entry, (vm.host_id, reading.source))
