"""The /metrics product text for one snapshot: Scaphandre's names, labels, HELP texts and numbers.

Rendered once per snapshot, in a worker thread, from `services.common.textformat` pieces:
prometheus-client writes every value as a float (`4.2416304e+07`), while Scaphandre prints
microwatts, microjoules, bytes and counts as integers, and scripts in the field read them with
regular expressions and integer conversion. The per-process families can hold thousands of
samples, so each process's label block is rendered once per process life (`process_labels`,
cached with the process) and each snapshot only appends values. Tests prove the text parses to
the same samples as prometheus-client's rendering of the same families.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from services.common.textformat import Number, escape_label, header, number

from .figures import Snapshot

PROCESS_POWER = "scaph_process_power_consumption_microwatts"
# Scaphandre 0.5's text (src/exporters/mod.rs); 1.0 copies the disk-read text here by mistake.
PROCESS_POWER_HELP = (
    "Power consumption due to the process, measured on at the topology level, in microwatts"
)
# Scaphandre types its raw *_microjoules energies as counters without `_total`, which the
# text format reserves for `_total` names; untyped keeps the exact name and stays valid.
UNTYPED = "untyped"

_MEMORY = (
    (
        "scaph_host_memory_total_bytes",
        "MemTotal",
        "Random Access Memory installed on the host, in bytes.",
    ),
    (
        "scaph_host_memory_available_bytes",
        "MemAvailable",
        "Random Access Memory available to be re-used on the host, in bytes.",
    ),
    (
        "scaph_host_memory_free_bytes",
        "MemFree",
        "Random Access Memory free to be used (not reused) on the host, in bytes.",
    ),
    ("scaph_host_swap_free_bytes", "SwapFree", "Swap space free to be used on the host, in bytes."),
    ("scaph_host_swap_total_bytes", "SwapTotal", "Total swap space on the host, in bytes."),
)


def process_labels(pid: int, comm: str, cmdline: str, vmname: str | None) -> str:
    """The `{cmdline=..,exe=..,pid=..[,vmname=..]}` block, labels in name order."""
    block = f'{{cmdline="{escape_label(cmdline)}",exe="{escape_label(comm)}",pid="{pid}"'
    if vmname is not None:
        block += f',vmname="{escape_label(vmname)}"'
    return block + "}"


def labels(**pairs: str) -> str:
    """A label block, names in order, values escaped; empty without labels."""
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(pairs.items()))
    return f"{{{inner}}}"


def family(name: str, kind: str, doc: str, samples: Iterable[tuple[str, Number]]) -> str:
    """HELP, TYPE and one line per (label block, value): integers stay integers."""
    lines = [f"{name}{block} {number(value)}\n" for block, value in samples]
    return header(name, kind, doc) + "".join(lines)


def scaphandre_version(version: str) -> float:
    """A version as Scaphandre reports it in scaph_self_version: 1.0.3 -> 1.03."""
    parts = (version.split(".") + ["0", "0"])[:3]
    digits = [p if p.isdigit() else "0" for p in parts]
    return float(f"{digits[0]}.{digits[1]}{digits[2]}")


def _gauge(name: str, doc: str, value: Number) -> str:
    return family(name, "gauge", doc, [("", value)])


def _self_metrics(snap: Snapshot, version: str) -> Iterator[str]:
    yield _gauge(
        "scaph_self_version",
        "Version number of scaphandre represented as a float.",
        scaphandre_version(version),
    )
    if snap.own_cpu_percent is not None:
        yield _gauge(
            "scaph_self_cpu_usage_percent",
            "CPU time consumed by scaphandre, as Percentage",
            snap.own_cpu_percent,
        )
    if snap.own is not None:
        yield _gauge(
            "scaph_self_memory_virtual_bytes",
            "Total program size, measured in Bytes.",
            snap.own.vsize_bytes,
        )
        yield _gauge(
            "scaph_self_memory_bytes", "Resident set size, measured in bytes.", snap.own.rss_bytes
        )
    yield _gauge(
        "scaph_self_topo_stats_nb", "Number of CPUStat traces stored for the host.", snap.records
    )
    yield _gauge(
        "scaph_self_topo_records_nb",
        "Number of energy consumption Records stored for the host.",
        snap.records,
    )
    yield _gauge(
        "scaph_self_topo_procs_nb",
        "Number of processes monitored for the host.",
        snap.process_count,
    )
    sockets = [(labels(socket_id=str(s.socket_id)), snap.records) for s in snap.sockets]
    yield family(
        "scaph_self_socket_stats_nb",
        "gauge",
        "Number of CPUStat traces stored for each socket",
        sockets,
    )
    yield family(
        "scaph_self_socket_records_nb",
        "gauge",
        "Number of energy consumption Records stored for each socket",
        sockets,
    )
    yield family(
        "scaph_self_domain_records_nb",
        "gauge",
        "Number of energy consumption Records stored for a Domain",
        [
            (labels(socket_id=str(d.socket_id), rapl_domain_name=d.kind), snap.records)
            for d in snap.domains
        ],
    )


def _host(snap: Snapshot) -> Iterator[str]:
    source = labels(value_source=snap.source)
    yield family(
        "scaph_host_energy_microjoules",
        UNTYPED,
        "Energy measurement for the whole host, as extracted from the sensor, in microjoules.",
        [(source, snap.host_energy_uj)],
    )
    if snap.host_power_uw is not None:
        yield family(
            "scaph_host_power_microwatts",
            "gauge",
            "Power measurement on the whole host, in microwatts",
            [(source, snap.host_power_uw)],
        )
    if snap.load is not None:
        for suffix, period, value in zip(
            ("one", "five", "fifteen"),
            ("1 minute", "5 minutes", "15 minutes"),
            snap.load,
            strict=True,
        ):
            yield _gauge(f"scaph_host_load_avg_{suffix}", f"Load average on {period}.", value)
    memory = snap.memory or {}
    for name, field, doc in _MEMORY:
        if field in memory:
            yield _gauge(name, doc, memory[field])


def _sockets(snap: Snapshot) -> Iterator[str]:
    energy = [(labels(socket_id=str(s.socket_id)), s.energy_uj) for s in snap.sockets]
    power = [
        (labels(socket_id=str(s.socket_id)), s.power_uw)
        for s in snap.sockets
        if s.power_uw is not None
    ]
    d_labels = [
        labels(domain_name=d.kind, domain_id=str(d.domain_id), socket_id=str(d.socket_id))
        for d in snap.domains
    ]
    d_energy = [(block, d.energy_uj) for block, d in zip(d_labels, snap.domains, strict=True)]
    d_power = [
        (block, d.power_uw)
        for block, d in zip(d_labels, snap.domains, strict=True)
        if d.power_uw is not None
    ]
    for name, kind, doc, samples in (
        (
            "scaph_socket_energy_microjoules",
            UNTYPED,
            "Socket related energy measurement in microjoules.",
            energy,
        ),
        (
            "scaph_socket_power_microwatts",
            "gauge",
            "Power measurement relative to a CPU socket, in microwatts",
            power,
        ),
        (
            "scaph_domain_energy_microjoules",
            UNTYPED,
            "Domain related energy measurement in microjoules.",
            d_energy,
        ),
        (
            "scaph_domain_power_microwatts",
            "gauge",
            "Power measurement relative to a RAPL Domain, in microwatts",
            d_power,
        ),
    ):
        if samples:
            yield family(name, kind, doc, samples)


def _system(snap: Snapshot) -> Iterator[str]:
    system = snap.system
    if system is None:
        return
    if system.forks is not None:
        yield family(
            "scaph_forks_since_boot_total",
            "counter",
            "Number of forks that have occured since boot "
            "(number of processes to have existed so far).",
            [("", system.forks)],
        )
    if system.procs_running is not None:
        yield _gauge(
            "scaph_processes_running_current",
            "Number of processes currently running.",
            system.procs_running,
        )
    if system.procs_blocked is not None:
        yield _gauge(
            "scaph_processes_blocked_current",
            "Number of processes currently blocked waiting for I/O.",
            system.procs_blocked,
        )
    if system.context_switches is not None:
        yield family(
            "scaph_context_switches_total",
            "counter",
            "Number of context switches since boot.",
            [("", system.context_switches)],
        )


def render_processes(snapshot: Snapshot) -> str:
    """The per-process power family; its label blocks come pre-rendered with each process."""
    if not snapshot.processes:
        return ""
    head = header(PROCESS_POWER, "gauge", PROCESS_POWER_HELP)
    lines = [f"{PROCESS_POWER}{info.labels} {uw}\n" for info, uw in snapshot.processes]
    return head + "".join(lines)


def render(snapshot: Snapshot, version: str) -> bytes:
    """The whole scaph_* text for one snapshot."""
    parts = [
        *_self_metrics(snapshot, version),
        *_host(snapshot),
        *_sockets(snapshot),
        *_system(snapshot),
        render_processes(snapshot),
    ]
    return "".join(parts).encode("utf-8")
