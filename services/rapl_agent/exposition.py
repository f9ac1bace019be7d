"""The /metrics product text for one snapshot: Scaphandre's names, labels and HELP texts.

Small families go through prometheus-client's own collector machinery. The per-process family
can hold thousands of samples, and `generate_latest` needs ~7 us a sample (36 ms for 5,000),
so its label block is rendered once per process life (`process_labels`, cached with the
process) and each snapshot only appends values. A test proves both paths give the same text.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from services.common.textformat import escape_label

from .figures import Snapshot

PROCESS_POWER = "scaph_process_power_consumption_microwatts"
# Scaphandre 0.5's text (src/exporters/mod.rs); 1.0 copies the disk-read text here by mistake.
PROCESS_POWER_HELP = (
    "Power consumption due to the process, measured on at the topology level, in microwatts"
)


def process_labels(pid: int, comm: str, cmdline: str, vmname: str | None) -> str:
    """The `{cmdline=..,exe=..,pid=..[,vmname=..]}` block, in prometheus-client's label order."""
    block = f'{{cmdline="{escape_label(cmdline)}",exe="{escape_label(comm)}",pid="{pid}"'
    if vmname is not None:
        block += f',vmname="{escape_label(vmname)}"'
    return block + "}"


def scaphandre_version(version: str) -> float:
    """A version as Scaphandre reports it in scaph_self_version: 1.0.3 -> 1.03."""
    parts = (version.split(".") + ["0", "0"])[:3]
    digits = [p if p.isdigit() else "0" for p in parts]
    return float(f"{digits[0]}.{digits[1]}{digits[2]}")


def _untyped(name: str, documentation: str) -> Metric:
    # Scaphandre types its raw *_microjoules energies as counters without `_total`, which
    # prometheus-client cannot print; untyped keeps the exact name and stays valid text.
    return Metric(name, documentation, "unknown")


class SnapshotCollector:
    """Every scaph_* family except the per-process one, fresh from one snapshot."""

    def __init__(self, snapshot: Snapshot, version: str) -> None:
        self.snapshot = snapshot
        self.version = version

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        yield from self._self_metrics()
        source = {"value_source": snap.source}
        energy = _untyped(
            "scaph_host_energy_microjoules",
            "Energy measurement for the whole host, as extracted from the sensor, in microjoules.",
        )
        energy.add_sample("scaph_host_energy_microjoules", source, snap.host_energy_uj)
        yield energy
        if snap.host_power_uw is not None:
            power = GaugeMetricFamily(
                "scaph_host_power_microwatts",
                "Power measurement on the whole host, in microwatts",
                labels=["value_source"],
            )
            power.add_metric([snap.source], snap.host_power_uw)
            yield power
        if snap.load is not None:
            for suffix, period, value in zip(
                ("one", "five", "fifteen"),
                ("1 minute", "5 minutes", "15 minutes"),
                snap.load,
                strict=True,
            ):
                yield GaugeMetricFamily(
                    f"scaph_host_load_avg_{suffix}", f"Load average on {period}.", value=value
                )
        yield from self._memory()
        yield from self._sockets()
        yield from self._system()

    def _self_metrics(self) -> Iterator[Metric]:
        snap = self.snapshot
        yield GaugeMetricFamily(
            "scaph_self_version",
            "Version number of scaphandre represented as a float.",
            value=scaphandre_version(self.version),
        )
        if snap.own_cpu_percent is not None:
            yield GaugeMetricFamily(
                "scaph_self_cpu_usage_percent",
                "CPU time consumed by scaphandre, as Percentage",
                value=snap.own_cpu_percent,
            )
        if snap.own is not None:
            yield GaugeMetricFamily(
                "scaph_self_memory_virtual_bytes",
                "Total program size, measured in Bytes.",
                value=snap.own.vsize_bytes,
            )
            yield GaugeMetricFamily(
                "scaph_self_memory_bytes",
                "Resident set size, measured in bytes.",
                value=snap.own.rss_bytes,
            )
        yield GaugeMetricFamily(
            "scaph_self_topo_stats_nb",
            "Number of CPUStat traces stored for the host.",
            value=snap.records,
        )
        yield GaugeMetricFamily(
            "scaph_self_topo_records_nb",
            "Number of energy consumption Records stored for the host.",
            value=snap.records,
        )
        yield GaugeMetricFamily(
            "scaph_self_topo_procs_nb",
            "Number of processes monitored for the host.",
            value=snap.process_count,
        )
        stats = GaugeMetricFamily(
            "scaph_self_socket_stats_nb",
            "Number of CPUStat traces stored for each socket",
            labels=["socket_id"],
        )
        records = GaugeMetricFamily(
            "scaph_self_socket_records_nb",
            "Number of energy consumption Records stored for each socket",
            labels=["socket_id"],
        )
        for socket in snap.sockets:
            stats.add_metric([str(socket.socket_id)], snap.records)
            records.add_metric([str(socket.socket_id)], snap.records)
        domains = GaugeMetricFamily(
            "scaph_self_domain_records_nb",
            "Number of energy consumption Records stored for a Domain",
            labels=["socket_id", "rapl_domain_name"],
        )
        for domain in snap.domains:
            domains.add_metric([str(domain.socket_id), domain.kind], snap.records)
        yield from (stats, records, domains)

    def _memory(self) -> Iterator[Metric]:
        memory = self.snapshot.memory
        if not memory:
            return
        helps = {
            "MemTotal": "Random Access Memory installed on the host, in bytes.",
            "MemAvailable": "Random Access Memory available to be re-used on the host, in bytes.",
            "MemFree": "Random Access Memory free to be used (not reused) on the host, in bytes.",
            "SwapFree": "Swap space free to be used on the host, in bytes.",
            "SwapTotal": "Total swap space on the host, in bytes.",
        }
        rows = (
            ("scaph_host_memory_total_bytes", "MemTotal"),
            ("scaph_host_memory_available_bytes", "MemAvailable"),
            ("scaph_host_memory_free_bytes", "MemFree"),
            ("scaph_host_swap_free_bytes", "SwapFree"),
            ("scaph_host_swap_total_bytes", "SwapTotal"),
        )
        for name, field in rows:
            if field in memory:
                yield GaugeMetricFamily(name, helps[field], value=memory[field])

    def _sockets(self) -> Iterator[Metric]:
        snap = self.snapshot
        energy = _untyped(
            "scaph_socket_energy_microjoules", "Socket related energy measurement in microjoules."
        )
        power = GaugeMetricFamily(
            "scaph_socket_power_microwatts",
            "Power measurement relative to a CPU socket, in microwatts",
            labels=["socket_id"],
        )
        for socket in snap.sockets:
            labels = {"socket_id": str(socket.socket_id)}
            energy.add_sample("scaph_socket_energy_microjoules", labels, socket.energy_uj)
            if socket.power_uw is not None:
                power.add_metric([labels["socket_id"]], socket.power_uw)
        d_energy = _untyped(
            "scaph_domain_energy_microjoules", "Domain related energy measurement in microjoules."
        )
        d_power = GaugeMetricFamily(
            "scaph_domain_power_microwatts",
            "Power measurement relative to a RAPL Domain, in microwatts",
            labels=["domain_name", "domain_id", "socket_id"],
        )
        for domain in snap.domains:
            values = [domain.kind, str(domain.domain_id), str(domain.socket_id)]
            labels = dict(zip(("domain_name", "domain_id", "socket_id"), values, strict=True))
            d_energy.add_sample("scaph_domain_energy_microjoules", labels, domain.energy_uj)
            if domain.power_uw is not None:
                d_power.add_metric(values, domain.power_uw)
        for family in (energy, power, d_energy, d_power):
            if family.samples:
                yield family

    def _system(self) -> Iterator[Metric]:
        system = self.snapshot.system
        if system is None:
            return
        if system.forks is not None:
            yield CounterMetricFamily(
                "scaph_forks_since_boot",
                "Number of forks that have occured since boot "
                "(number of processes to have existed so far).",
                value=system.forks,
            )
        if system.procs_running is not None:
            yield GaugeMetricFamily(
                "scaph_processes_running_current",
                "Number of processes currently running.",
                value=system.procs_running,
            )
        if system.procs_blocked is not None:
            yield GaugeMetricFamily(
                "scaph_processes_blocked_current",
                "Number of processes currently blocked waiting for I/O.",
                value=system.procs_blocked,
            )
        if system.context_switches is not None:
            yield CounterMetricFamily(
                "scaph_context_switches",
                "Number of context switches since boot.",
                value=system.context_switches,
            )


def render_processes(snapshot: Snapshot) -> str:
    """The per-process power family; its label blocks come pre-rendered with each process."""
    if not snapshot.processes:
        return ""
    head = f"# HELP {PROCESS_POWER} {PROCESS_POWER_HELP}\n# TYPE {PROCESS_POWER} gauge\n"
    lines = [f"{PROCESS_POWER}{info.labels} {uw}\n" for info, uw in snapshot.processes]
    return head + "".join(lines)


def render(snapshot: Snapshot, version: str) -> bytes:
    """The whole scaph_* text for one snapshot."""
    return generate_latest(SnapshotCollector(snapshot, version)) + render_processes(
        snapshot
    ).encode("utf-8")
