"""Patch the jobs discovery owns in the operator's prometheus.yml, and nothing else (pure).

The file is the operator's: every byte outside the owned jobs is kept, comments and blank
lines included. The new text is spliced in line by line, guided by the YAML parser's positions
of `scrape_configs` and its items; inside an owned job only the service-discovery keys
(`static_configs`, `file_sd_configs`, `http_sd_configs`) change, and the operator's other keys
(scrape_interval, relabel_configs, ...) and their comments stay. Static groups of an owned job
that carry none of discovery's labels (upstream's `127.0.0.1:9100` in `node_exporter`) are the
operator's and are kept too.

The result is parsed again and compared with what it must mean; when a shape defeats the
splice (flow-style lists, a job whose first key is a discovery key, ...), the file goes through
ruamel.yaml's round trip instead, which keeps comments and key order but may re-indent, and is
checked the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from .targets import OWN_LABELS

SD_KEYS = ("static_configs", "file_sd_configs", "http_sd_configs")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# JSON escapes only C0 controls; YAML also breaks lines at these and forbids the others raw.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff]")


class ConfigFormatError(ValueError):
    """The file is not a Prometheus configuration discovery can patch."""


class _Unsupported(Exception):
    """A shape the line splice does not handle; the round trip takes over."""


@dataclasses.dataclass(frozen=True)
class JobSd:
    """How an owned job finds its targets: one SD key and its value (plain data)."""

    key: str
    value: list[dict[str, Any]]


def load(text: str) -> tuple[Any, yaml.Node | None]:
    """(data, root node) of a YAML document; ConfigFormatError when it is not valid YAML."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise ConfigFormatError(f"not valid YAML: {first[:300]}") from None
    finally:
        loader.dispose()
    return data, node


def _operator_groups(job: Mapping[str, Any]) -> list[Any]:
    """Static groups of an owned job that are not discovery's (none of its labels)."""
    kept = []
    for group in job.get("static_configs") or []:
        labels = group.get("labels") if isinstance(group, dict) else None
        if not (isinstance(labels, dict) and OWN_LABELS & set(map(str, labels))):
            kept.append(group)
    return kept


def _sd_items(job: Mapping[str, Any] | None, sd: JobSd) -> list[tuple[str, list]]:
    """The SD keys an owned job ends up with, in order."""
    kept = _operator_groups(job) if job else []
    if sd.key == "static_configs":
        return [("static_configs", kept + sd.value)]
    return ([("static_configs", kept)] if kept else []) + [(sd.key, sd.value)]


def _check_shape(data: Any) -> list[Any] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigFormatError("the top level is not a mapping")
    jobs = data.get("scrape_configs")
    if jobs is not None and not isinstance(jobs, list):
        raise ConfigFormatError("scrape_configs is not a list")
    return jobs


def expected_data(data: Any, jobs: Mapping[str, JobSd]) -> dict[str, Any]:
    """What the patched file must mean: `data` with the owned jobs set as `jobs` say."""
    _check_shape(data)
    out = copy.deepcopy(data) if data is not None else {}
    items = out.get("scrape_configs")
    if items is None:
        items = out["scrape_configs"] = []
    seen = set()
    for item in items:
        name = item.get("job_name") if isinstance(item, dict) else None
        if name in jobs:
            seen.add(name)
            sd = _sd_items(item, jobs[name])
            for key in SD_KEYS:
                item.pop(key, None)
            item.update(sd)
    for name, sd in jobs.items():
        if name not in seen:
            items.append({"job_name": name, **dict(_sd_items(None, sd))})
    return out


Parsed = tuple[Any, "yaml.Node | None"]


def patch_config(text: str, jobs: Mapping[str, JobSd]) -> str:
    """`text` with the owned `jobs` pointing where they say; ConfigFormatError if impossible."""
    return patch_parsed(text, load(text), jobs)[0]


def patch_parsed(text: str, parsed: Parsed, jobs: Mapping[str, JobSd]) -> tuple[str, Parsed]:
    """`patch_config` for a text already parsed (`load(text)`); also gives the new text parsed.

    In static mode prometheus.yml holds every target, and parsing it is most of a change's
    cost: the caller keeps the parse of the version it wrote for the next change.
    """
    data, root = parsed
    expected = expected_data(data, jobs)
    if data == expected:
        return text, parsed  # already says it, whatever its layout: nothing to write
    try:
        new = _splice(text, root, jobs, data)
        checked = load(new)
        if checked[0] == expected:
            return new, checked
    except (_Unsupported, ConfigFormatError):
        pass
    new = _round_trip(text, jobs)
    checked = load(new)
    if checked[0] != expected:
        raise ConfigFormatError("the patched file would not mean what it must; left unchanged")
    return new, checked


# -- rendering -------------------------------------------------------------------------------


def yaml_scalar(value: Any) -> str:
    """A JSON value written so that YAML reads it back unchanged (JSON is YAML flow)."""
    text = json.dumps(value, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _key(name: Any) -> str:
    return name if isinstance(name, str) and _PLAIN_KEY.match(name) else yaml_scalar(name)


def _sd_lines(items: list[tuple[str, list]], col: int) -> list[str]:
    pad = " " * col
    out = []
    for key, groups in items:
        if not groups:
            out.append(f"{pad}{key}: []\n")
            continue
        out.append(f"{pad}{key}:\n")
        for group in groups:
            if not isinstance(group, dict) or not group:
                out.append(f"{pad}  - {yaml_scalar(group)}\n")
                continue
            for i, (k, v) in enumerate(group.items()):
                lead = f"{pad}  - " if i == 0 else f"{pad}    "
                out.append(f"{lead}{_key(k)}: {yaml_scalar(v)}\n")
    return out


def _new_item(name: str, sd: JobSd, dash: int, col: int) -> list[str]:
    gap = " " * max(1, col - dash - 1)
    first = f"{' ' * dash}-{gap}job_name: {yaml_scalar(name)}\n"
    return [first, *_sd_lines(_sd_items(None, sd), col)]


# -- the line splice -------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _is_filler(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _content_end(lines: list[str], start: int, end: int) -> int:
    """The end (exclusive) of [start, end) without its trailing blank and comment lines."""
    while end > start + 1 and _is_filler(lines[end - 1]):
        end -= 1
    return end


def _dash_col(lines: list[str], node: yaml.Node) -> int:
    line, col = node.start_mark.line, node.start_mark.column
    prefix = lines[line][:col].rstrip()
    if not prefix.endswith("-") or prefix[:-1].strip():
        raise _Unsupported("a list item not on its dash line")
    return len(prefix) - 1


def _splice(text: str, root: yaml.Node | None, jobs: Mapping[str, JobSd], data: Any) -> str:
    lines = _lines(text)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if root is None:
        return (
            "".join(lines)
            + "scrape_configs:\n"
            + "".join(line for name, sd in jobs.items() for line in _new_item(name, sd, 2, 4))
        )
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise _Unsupported("top level")
    pairs = root.value
    index = next((i for i, (k, _) in enumerate(pairs) if k.value == "scrape_configs"), None)
    if index is None:
        key_col = pairs[0][0].start_mark.column if pairs else 0
        if key_col:
            raise _Unsupported("indented top level")
        new = [line for name, sd in jobs.items() for line in _new_item(name, sd, 2, 4)]
        return "".join(lines) + "scrape_configs:\n" + "".join(new)
    key, value = pairs[index]
    seq_end = pairs[index + 1][0].start_mark.line if index + 1 < len(pairs) else len(lines)
    if isinstance(value, yaml.ScalarNode):
        if value.value != "" or value.start_mark.line != key.start_mark.line:
            raise _Unsupported("scrape_configs scalar")
        after = key.start_mark.line + 1
        dash = key.start_mark.column + 2
        new = [line for name, sd in jobs.items() for line in _new_item(name, sd, dash, dash + 2)]
        return "".join(lines[:after] + new + lines[after:])
    if not isinstance(value, yaml.SequenceNode) or value.flow_style or not value.value:
        raise _Unsupported("scrape_configs shape")
    items = value.value
    starts = [node.start_mark.line for node in items]
    dashes = [_dash_col(lines, node) for node in items]
    first = items[0]
    dash, col = dashes[0], first.start_mark.column
    out = lines[: starts[0]]
    seen = set()
    for i, node in enumerate(items):
        region_end = starts[i + 1] if i + 1 < len(items) else seq_end
        end = _content_end(lines, starts[i], region_end)
        job = data["scrape_configs"][i]
        name = job.get("job_name") if isinstance(job, dict) else None
        if name in jobs:
            seen.add(name)
            out += _owned_item(lines, node, starts[i], end, job, jobs[name])
        else:
            out += lines[starts[i] : end]
        if i + 1 < len(items):
            out += lines[end:region_end]
    last_end = _content_end(lines, starts[-1], seq_end)
    for name, sd in jobs.items():
        if name not in seen:
            out += _new_item(name, sd, dash, col)
    out += lines[last_end:]
    return "".join(out)


def _owned_item(
    lines: list[str], node: yaml.Node, start: int, end: int, job: dict, sd: JobSd
) -> list[str]:
    """The lines of an owned job: its own keys kept, its SD keys replaced by ours."""
    if not isinstance(node, yaml.MappingNode) or node.flow_style:
        raise _Unsupported("owned job shape")
    key_lines = [k.start_mark.line for k, _ in node.value]
    if key_lines != sorted(set(key_lines)) or key_lines[0] != start:
        raise _Unsupported("owned job keys")
    if node.value[0][0].value in SD_KEYS:
        raise _Unsupported("owned job starts with an SD key")
    col = node.value[0][0].start_mark.column
    kept: list[str] = []
    insert_at = None
    for j, (k, _) in enumerate(node.value):
        span_end = key_lines[j + 1] if j + 1 < len(key_lines) else end
        if k.value in SD_KEYS:
            # Ours go where the first SD key was, after the comments that introduced it;
            # comments after a removed key introduce the next one: they stay.
            insert_at = len(kept) if insert_at is None else insert_at
            kept += lines[_content_end(lines, key_lines[j], span_end) : span_end]
        else:
            kept += lines[key_lines[j] : span_end]
    if insert_at is None:
        insert_at = _content_end(kept, 0, len(kept))
    return kept[:insert_at] + _sd_lines(_sd_items(job, sd), col) + kept[insert_at:]


# -- the round trip (fallback) ---------------------------------------------------------------


def _round_trip(text: str, jobs: Mapping[str, JobSd]) -> str:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    try:
        data = rt.load(text)
    except YAMLError as exc:
        raise ConfigFormatError(f"not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    if data is None:
        data = {}
    _check_shape(data)
    if data.get("scrape_configs") is None:
        data["scrape_configs"] = []
    items = data["scrape_configs"]
    seen = set()
    for item in items:
        name = item.get("job_name") if isinstance(item, dict) else None
        if name in jobs:
            seen.add(name)
            sd = _sd_items(dict(item), jobs[name])
            for key in SD_KEYS:
                if key in item:
                    del item[key]
            for key, groups in sd:
                item[key] = copy.deepcopy(groups)
    for name, sd in jobs.items():
        if name not in seen:
            items.append({"job_name": name, **copy.deepcopy(dict(_sd_items(None, sd)))})
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()
