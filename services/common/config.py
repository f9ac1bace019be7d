"""Flags + YAML file into a frozen dataclass: flag > YAML > default, validated once.

A service declares its configuration as a frozen dataclass whose fields are made with
`option(...)`; `load_config` builds the argparse parser from it (so `--help` always lists every
flag with its real default), merges the optional `--config FILE`, converts each value once and
turns every problem into a `ConfigError` that `main()` reports on one line with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class Listen(NamedTuple):
    """A `HOST:PORT` listen address; IPv6 hosts are written `[::]:PORT`."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str) -> Listen:
    """Parse `HOST:PORT` or `[V6]:PORT`; raise ValueError with a readable reason."""
    text = str(text).strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPV6]:PORT, got {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        if ":" in host:
            raise ValueError(f"write IPv6 addresses as [ADDR]:PORT, got {text!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port must be 1-65535, got {port!r}")
    return Listen(host, int(port))


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    parse: Callable[[Any], Any] | None = None,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
) -> Any:
    """A config field that is also a `--flag`; `parse` converts text or YAML values."""
    meta = {"help": help, "parse": parse, "choices": choices, "metavar": metavar}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def env_default(name: str, fallback: str) -> Callable[[], str]:
    """Default taken from an environment variable when set (OpenNebula CLI conventions)."""
    return lambda: os.environ.get(name) or fallback


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_path(value: Any) -> Path:
    return Path(os.path.expanduser(str(value)))


def _parse_optional_path(value: Any) -> Path | None:
    return None if value in (None, "") else _parse_path(value)


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


_CONVERTERS: dict[Any, Callable[[Any], Any]] = {
    int: _parse_int,
    float: _parse_float,
    str: str,
    bool: _parse_bool,
    Path: _parse_path,
    Path | None: _parse_optional_path,
    Listen: parse_listen,
}


def _converter(field: dataclasses.Field, hint: Any) -> Callable[[Any], Any]:
    custom = field.metadata.get("parse")
    if custom is not None:
        return custom
    try:
        return _CONVERTERS[hint]
    except KeyError:
        raise TypeError(f"config field {field.name}: give parse= for type {hint!r}") from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default_of(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every error takes the same one-line path."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    """The argparse parser of a config dataclass; defaults are shown, never applied here."""
    parser = _Parser(prog=prog, description=description)
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file whose keys are flag names with '_' (flags on the command line win)",
    )
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        default = _default_of(field)
        shown = "" if default is None else str(default)
        help_text = field.metadata.get("help", "")
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "default": argparse.SUPPRESS,
            "help": f"{help_text} (default: {shown or 'none'})",
        }
        metavar = field.metadata.get("metavar")
        if hints[field.name] is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif field.metadata.get("choices"):
            kwargs["choices"] = field.metadata["choices"]  # argparse shows them as {a,b}
            if metavar:
                kwargs["metavar"] = metavar
        else:
            default_metavar = "HOST:PORT" if hints[field.name] is Listen else field.name.upper()
            kwargs["metavar"] = metavar or default_metavar
        parser.add_argument(_flag(field.name), **kwargs)
    return parser


def read_yaml_config(path: str) -> dict[str, Any]:
    """Read a `--config` file: a YAML mapping, or a ConfigError naming the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} must be a mapping of flag names to values")
    return data


def load_config(cls: type[T], argv: Sequence[str] | None, *, prog: str, description: str) -> T:
    """Build `cls` from argv and the optional YAML file; raise ConfigError on any problem."""
    parser = build_parser(cls, prog, description)
    args = vars(parser.parse_args(list(sys.argv[1:] if argv is None else argv)))
    config_path = args.pop("config", None)
    file_values = read_yaml_config(config_path) if config_path else {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(file_values) - set(fields))
    if unknown:
        raise ConfigError(f"--config {config_path}: unknown key(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name in args:
            raw, origin = args[name], _flag(name)
        elif name in file_values:
            raw, origin = file_values[name], f"{name} in {config_path}"
        else:
            continue
        choices = field.metadata.get("choices")
        if choices and raw not in choices:
            raise ConfigError(f"{origin}: must be one of {', '.join(choices)}, got {raw!r}")
        try:
            values[name] = _converter(field, hints[name])(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{origin}: {exc}") from None
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def fail(prog: str, message: str, code: int = 2) -> NoReturn:
    """Print one `prog: error: message` line on stderr and exit."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Flags every service has (SPEC section 4); services subclass and override defaults."""

    listen: Listen = option(Listen("127.0.0.1", 8000), "address to listen on, HOST:PORT")
    log_level: str = option("info", "log level", choices=LOG_LEVELS)
    log_format: str = option("text", "log line format", choices=LOG_FORMATS)
