"""Pure config parsing: listen addresses, converters, precedence, ONE_AUTH."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from services.common.config import Listen, ServiceConfig, load_config, option, parse_listen
from services.common.errors import ConfigError
from services.common.oned import OneOptions, read_one_auth


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.0.0.0:8080", Listen("0.0.0.0", 8080)),
        ("[::]:9925", Listen("::", 9925)),
        ("localhost:1", Listen("localhost", 1)),
    ],
)
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected
    assert parse_listen(str(expected)) == expected


@pytest.mark.parametrize("text", ["8080", ":80", "[::]80", "[zz]:80", "h:0", "h:x", "::1:80"])
def test_parse_listen_rejects(text):
    with pytest.raises(ValueError):
        parse_listen(text)


@dataclasses.dataclass(frozen=True)
class Cfg(ServiceConfig, OneOptions):
    count: int = option(3, "a count")
    enabled: bool = option(True, "a switch")
    path: Path | None = option(None, "a path")


def test_defaults_and_types(monkeypatch):
    monkeypatch.delenv("ONE_XMLRPC", raising=False)
    cfg = load_config(Cfg, [], prog="t", description="")
    assert cfg.count == 3 and cfg.enabled is True and cfg.path is None
    assert cfg.one_xmlrpc == "http://localhost:2633/RPC2"
    assert cfg.listen == Listen("127.0.0.1", 8000)


def test_env_default_and_flag_override(monkeypatch, tmp_path):
    monkeypatch.setenv("ONE_XMLRPC", "http://one:2633/RPC2")
    monkeypatch.setenv("ONE_AUTH", str(tmp_path / "auth"))
    cfg = load_config(Cfg, ["--no-enabled", "--path", "~/x"], prog="t", description="")
    assert cfg.one_xmlrpc == "http://one:2633/RPC2" and cfg.one_auth == tmp_path / "auth"
    assert cfg.enabled is False and cfg.path == Path.home() / "x"
    cfg = load_config(Cfg, ["--one-xmlrpc", "http://x/RPC2"], prog="t", description="")
    assert cfg.one_xmlrpc == "http://x/RPC2"


def test_yaml_bool_and_int_checked(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("count: true\n")
    with pytest.raises(ConfigError, match="count in"):
        load_config(Cfg, ["--config", str(f)], prog="t", description="")
    f.write_text("enabled: 'no'\ncount: 5\n")
    cfg = load_config(Cfg, ["--config", str(f)], prog="t", description="")
    assert cfg.enabled is False and cfg.count == 5


def test_read_one_auth(tmp_path):
    auth = tmp_path / "one_auth"
    auth.write_text("oneadmin:opennebula\n")
    assert read_one_auth(auth) == "oneadmin:opennebula"
    auth.write_text("no-colon\n")
    with pytest.raises(ConfigError, match="must hold user:password"):
        read_one_auth(auth)
    with pytest.raises(ConfigError, match="cannot read ONE_AUTH file"):
        read_one_auth(tmp_path / "missing")
