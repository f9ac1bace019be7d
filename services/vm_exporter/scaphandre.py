"""Per-VM power out of a real Scaphandre `/metrics` page (started with `--qemu`), pure.

The fallback for hosts that run Scaphandre instead of our agent (SPEC section 6). Scaphandre's
exposition has quirks this reader absorbs:
- `cmdline` is argv joined with no separator (`...-nameguest=one-42,debug-threads=on...`) and
  `vmname` is only set for `qemu-system*` processes, so the OpenNebula id is matched on
  `guest=one-<id>` exactly (one-52 is not one-524);
- the families of each process are interleaved with HELP/TYPE printed once, and the same
  series or the same label name may appear twice: a pid is counted once, a label name that
  appears twice on a line keeps its first value;
- the QEMU process's helper kernel threads (`vhost-<pid>`, `kvm-nx-lpage-recovery-<pid>`,
  `kvm-pit/<pid>`) are listed as their own processes and belong to the VM of that pid.

The page is read line by line as it arrives, and only the two families used are parsed. The
sample lines are read here rather than by prometheus-client's text parser: that parser copies
the label text once per quote (`value_term[:i]`) and once per label, so a page whose label
values are long and full of `\\"` costs time quadratic in their length (minutes for one hostile
page, on the event loop). Here each line costs one pass; a line over `MAX_LINE` or a label
value over `MAX_LABEL_VALUE` makes the page a `ReadingError` (that host's `bad_reply`).
"""

from __future__ import annotations

import math
import re

from services.common.vm_identity import helper_owner, one_vm_id, vm_id_from_joined_cmdline

from .readings import SCAPHANDRE, HostReading, ReadingBuilder, ReadingError, power_uw, read_whole

PROCESS_POWER = "scaph_process_power_consumption_microwatts"
HOST_POWER = "scaph_host_power_microwatts"
_WANTED = (PROCESS_POWER.encode(), HOST_POWER.encode())

# A QEMU cmdline with many disks and NICs is a few KiB; Scaphandre prints it whole.
MAX_LABEL_VALUE = 32 * 1024
MAX_LINE = 64 * 1024
# A sample value as Go or Python writes a float is at most ~25 characters.
_MAX_NUMBER = 64
# One label: name, "=", a quoted value. Lines are matched after `_masked`, so a value holds no
# escaped quote and ends at the next `"`; possessive quantifiers keep a failed match from
# backtracking. One pass per line.
_LABEL = re.compile(r'[ \t]*+([a-zA-Z_][a-zA-Z0-9_]*+)[ \t]*+=[ \t]*+"([^"]*+)"[ \t]*+')
_PID = re.compile(r"[0-9]{1,10}")


def _masked(line: str) -> str:
    """`line` with each escape pair (`\\\\`, `\\"`) turned into two NULs: same length, same
    positions, and every `"` left is a real quote. Pairs are taken left to right, as the text
    format reads them (a run of backslashes pairs up from its start)."""
    if "\\" not in line:
        return line
    return line.replace("\\\\", "\0\0").replace('\\"', "\0\0")


def _unescape(value: str) -> str:
    """A label value's text: `\\\\`, `\\"` and `\\n` read, in a few linear passes."""
    if "\\" not in value:
        return value
    # Escaped backslashes first (left to right, as they pair), parked on a character the
    # value does not hold, so that what follows a backslash left is the escaped character.
    park = "\0"
    if park in value:
        used = set(value)  # one pass; then some character of the first len + 1 is free
        park = next(chr(c) for c in range(1, len(used) + 2) if chr(c) not in used)
    value = value.replace("\\\\", park).replace('\\"', '"').replace("\\n", "\n")
    return value.replace(park, "\\")


def vm_id_of(labels: dict[str, str]) -> int | None:
    """The OpenNebula VM id of a QEMU process's labels, None for any other process."""
    vmname = labels.get("vmname", "")
    if vmname:
        # Scaphandre cut the name out of `guest=` already: it decides, so a libvirt guest
        # named `one-52-test` is not read from the cmdline as `one-52`.
        return one_vm_id(vmname)
    return vm_id_from_joined_cmdline(labels.get("cmdline", ""))


def parse_sample(line: str) -> tuple[str, dict[str, str], float]:
    """`name{labels} value [timestamp]` as (name, labels, value); ReadingError when it is not.

    Linear in the line's length. A label name given twice keeps its first value.
    """
    brace = line.find("{")
    if brace < 0:
        name, _, rest = line.replace("\t", " ").partition(" ")
        labels: dict[str, str] = {}
    else:
        name, labels, pos = line[:brace].strip(), {}, brace + 1
        masked = _masked(line)
        while True:
            match = _LABEL.match(masked, pos)
            if match is None:
                if masked[pos:].lstrip(" \t").startswith("}"):
                    pos = masked.index("}", pos) + 1  # `{}` or a trailing comma
                    break
                raise ReadingError(f"not a sample line: {line[:80]!r}...")
            if match.end(2) - match.start(2) > MAX_LABEL_VALUE:
                raise ReadingError(
                    f"label {match.group(1)} is over {MAX_LABEL_VALUE} characters: {name}"
                )
            labels.setdefault(match.group(1), line[match.start(2) : match.end(2)])
            pos = match.end()
            sep = masked[pos : pos + 1]
            pos += 1
            if sep == "}":
                break
            if sep != ",":
                raise ReadingError(f"not a sample line: {line[:80]!r}...")
        rest = line[pos:]
    parts = rest.split()
    if not 1 <= len(parts) <= 2 or len(parts[0]) > _MAX_NUMBER:
        raise ReadingError(f"not a sample value: {rest[:80]!r}")
    try:
        value = float(parts[0])
    except ValueError:
        raise ReadingError(f"not a sample value: {parts[0]!r}") from None
    return name, {k: _unescape(v) for k, v in labels.items()}, value


class ScaphandreReader:
    """Feed the page's bytes as they arrive (`feed`), then `close()` for the HostReading."""

    def __init__(self) -> None:
        self._tail: list[bytes] = []  # the line being received
        self._tail_size = 0
        self._host_power: int | None = None
        self._seen_any = False
        self._per_pid: dict[int, float] = {}
        self._vm_of_pid: dict[int, int] = {}
        self._helpers: dict[int, int] = {}  # helper pid -> qemu pid

    def feed(self, data: bytes) -> None:
        """Read the lines `data` completes; ReadingError on a line the page must not have."""
        lines = data.split(b"\n")
        last = lines.pop()
        if lines and self._tail:
            # Joined once per line, not once per chunk: a trickling agent stays linear.
            lines[0] = b"".join(self._tail) + lines[0]
            self._tail, self._tail_size = [], 0
        if last:
            self._tail.append(last)
            self._tail_size += len(last)
            if self._tail_size > MAX_LINE:
                raise ReadingError(f"a line is over {MAX_LINE} bytes")
        for line in lines:
            if len(line) > MAX_LINE:
                raise ReadingError(f"a line is over {MAX_LINE} bytes")
            if line.startswith(_WANTED):
                self._line(line)

    def close(self) -> HostReading:
        """The whole page has arrived: host power and per-VM power, or ReadingError."""
        last = b"".join(self._tail)
        self._tail, self._tail_size = [], 0
        if last.startswith(_WANTED):
            self._line(last)
        if not self._seen_any:
            raise ReadingError(f"no {HOST_POWER} or {PROCESS_POWER} samples: not a Scaphandre page")
        totals: dict[int, float] = {}
        for pid, vm_id in self._vm_of_pid.items():
            totals[vm_id] = totals.get(vm_id, 0.0) + self._per_pid[pid]
        for pid, owner in self._helpers.items():
            vm_id = self._vm_of_pid.get(owner)
            if vm_id is not None:
                totals[vm_id] += self._per_pid[pid]
        reading = ReadingBuilder(SCAPHANDRE)
        reading.host_power_uw = self._host_power
        for vm_id, power in totals.items():
            reading.add_vm(vm_id, power_uw(round(power), f"VM {vm_id}'s power"), None, None)
        return reading.build()

    def _line(self, raw: bytes) -> None:
        name, labels, value = parse_sample(raw.decode("utf-8", errors="replace").strip())
        if name not in (HOST_POWER, PROCESS_POWER):
            return  # a longer name that starts like one of ours
        self._seen_any = True
        if math.isnan(value) or value < 0:
            return  # not a power (Scaphandre prints no such thing; skipped as before)
        power_uw(value, f"{name} of pid {labels.get('pid', '?')[:20]}")  # absurd: bad_reply
        if name == HOST_POWER:
            if self._host_power is None:
                self._host_power = int(value)
            return
        pid_text = labels.get("pid", "")
        if _PID.fullmatch(pid_text) is None:
            return
        pid = int(pid_text)
        self._per_pid[pid] = value  # a repeated series counts once
        vm_id = vm_id_of(labels)
        if vm_id is not None:
            self._vm_of_pid[pid] = vm_id
            return
        owner = helper_owner(labels.get("exe", ""))
        if owner is not None:
            self._helpers[pid] = owner


def parse_scaphandre(text: str | bytes) -> HostReading:
    """A whole Scaphandre page as a HostReading, or ReadingError."""
    return read_whole(ScaphandreReader(), text, MAX_LINE)
