"""The install story: oned.conf snippet, compose entry and README agree with the code."""

from __future__ import annotations

import re

import yaml

from services.authd.config import AuthdConfig
from testkit import ROOT

SNIPPET = (ROOT / "deploy" / "one" / "auth" / "oned.conf.biscuit").read_text()
# OpenNebula's default AUTHN list (share/etc/oned.conf): enabling biscuit must keep them.
ONE_DEFAULT_AUTHN = {"ssh", "x509", "ldap", "server_cipher", "server_x509", "saml"}


def vector_attributes(text: str, name: str) -> list[dict[str, str]]:
    """`NAME = [ KEY = "value", ... ]` blocks of an oned.conf text, comments stripped."""
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    blocks = re.findall(rf"^[ \t]*{name}[ \t]*=[ \t]*\[(.*?)\]", code, re.S | re.M)
    return [dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', block)) for block in blocks]


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("<!-- section:authd -->", 1)[1].split("<!-- /section:authd -->", 1)[0]


def test_oned_conf_snippet_enables_the_driver():
    (auth_mad,) = vector_attributes(SNIPPET, "AUTH_MAD")
    assert auth_mad["EXECUTABLE"] == "one_auth_mad"
    drivers = set(auth_mad["AUTHN"].split(","))
    assert "biscuit" in drivers and ONE_DEFAULT_AUTHN <= drivers
    (conf,) = vector_attributes(SNIPPET, "AUTH_MAD_CONF")
    assert conf == {
        "NAME": "biscuit",
        "PASSWORD_CHANGE": "YES",
        "DRIVER_MANAGED_GROUPS": "NO",
        "DRIVER_MANAGED_GROUP_ADMIN": "NO",
        "MAX_TOKEN_TIME": "0",
    }
    assert "/var/lib/one/remotes/auth/biscuit/authenticate" in SNIPPET


def test_readme_shows_the_same_configuration_and_steps():
    section = readme_section()
    assert vector_attributes(section, "AUTH_MAD") == vector_attributes(SNIPPET, "AUTH_MAD")
    assert vector_attributes(section, "AUTH_MAD_CONF") == vector_attributes(
        SNIPPET, "AUTH_MAD_CONF"
    )
    for needle in (
        "/var/lib/one/remotes/auth/biscuit/authenticate",
        "--driver biscuit",
        "systemctl restart opennebula",
        "SESSION_EXPIRATION_TIME",
        str(AuthdConfig().revocation_file),
        "one-authd token --private-key-file",
        "ONE_COGNIT_AUTHD_URL",
    ):
        assert needle in section, needle


def test_compose_mounts_the_revocation_file_directory():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    authd = compose["services"]["authd"]
    command = authd["command"]
    path = command[command.index("--revocation-file") + 1]
    assert path == str(AuthdConfig().revocation_file)
    directory = path.rsplit("/", 1)[0]
    assert f"{directory}:{directory}:ro" in authd["volumes"]
