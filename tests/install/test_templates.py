"""OpenNebula template syntax, hook files in oned's stored form, and the oned.conf check (pure)."""

from __future__ import annotations

import time

import pytest

from services.install.hookspec import HookTemplateError, hook_spec
from services.install.onedconf import conf_block, missing_lines
from services.install.onetemplate import TemplateSyntaxError, parse_template
from testkit import ROOT

ONED_CONF = (ROOT / "tests" / "fixtures" / "install" / "oned.conf").read_text()
SNIPPET = (ROOT / "deploy" / "one" / "auth" / "oned.conf.biscuit").read_text()
BLOCK = conf_block(SNIPPET)


def test_template_syntax_as_oned_reads_it():
    attrs = parse_template(
        '# comment\nname = "x"  # trailing\nTYPE = state\nQ = "a \\"b\\" c"\n'
        'V = [ k = "1", K2 = two ]\nE = []\nM = "two\nlines"\n'
    )
    assert [(a.name, a.value, a.line) for a in attrs] == [
        ("NAME", "x", 2),
        ("TYPE", "state", 3),
        ("Q", 'a "b" c', 4),
        ("V", {"K": "1", "K2": "two"}, 5),
        ("E", {}, 6),
        ("M", "two\nlines", 7),
    ]


@pytest.mark.parametrize(
    "text, where",
    [
        ("NAME x", "line 1"),
        ('A = "1"\nB = [ C = "x" D = "y" ]', "line 2"),
        ('A = "unterminated', "line 1"),
        ("A = [ C = 1,", "line 1"),
        ("= 3", "line 1"),
    ],
)
def test_template_syntax_errors_name_the_line(text, where):
    with pytest.raises(TemplateSyntaxError, match=where):
        parse_template(text)


def test_template_parsing_is_linear():
    """A hostile 2 MB oned.conf-like text parses in well under a second (no backtracking)."""
    text = 'A = "' + "x" * 1_000_000 + '"\n' + "B = [ C = 1, " * 1 + "D = 2 ]\n" + "#" * 1_000_000
    start = time.process_time()
    assert [a.name for a in parse_template(text)] == ["A", "B"]
    bad = "A = [ " + "K = v, " * 100_000
    with pytest.raises(TemplateSyntaxError):
        parse_template(bad)
    assert time.process_time() - start < 5


VM_HOOK = """
NAME = "one-cognit-test-vm"
TYPE = state
RESOURCE = VM
ON = RUNNING
COMMAND = "one-cognit/test_hook"
ARGUMENTS = "$TEMPLATE"
ARGUMENTS_STDIN = "yes"
TIMEOUT = "15"
"""


def test_vm_hook_in_the_form_oned_stores():
    spec = hook_spec(VM_HOOK, "test.hook")
    assert (spec.name, spec.type, spec.resource) == ("one-cognit-test-vm", "state", "VM")
    assert dict(spec.stored) == {
        "RESOURCE": "VM",
        "STATE": "ACTIVE",
        "LCM_STATE": "RUNNING",
        "COMMAND": "one-cognit/test_hook",
        "ARGUMENTS": "$TEMPLATE",
        "ARGUMENTS_STDIN": "yes",
        "TIMEOUT": "15",
        "REMOTE": "NO",
    }
    assert spec.attributes["ON"] == "RUNNING" and spec.attributes["NAME"] == spec.name
    assert spec.differences("state", spec.stored) == []
    changed = {**spec.stored, "TIMEOUT": "30", "EXTRA": "1"}
    assert spec.differences("STATE", changed) == ["EXTRA", "TIMEOUT"]
    assert spec.differences("api", spec.stored) == ["TYPE"]


def test_host_hook_and_custom_vm_hook():
    host = hook_spec(
        "NAME = h\nTYPE = state\nRESOURCE = host\nSTATE = monitored\nCOMMAND = c\nREMOTE = yes\n",
        "h.hook",
    )
    assert dict(host.stored) == {
        "RESOURCE": "HOST",
        "STATE": "MONITORED",
        "COMMAND": "c",
        "REMOTE": "YES",
    }
    custom = hook_spec(
        "NAME = c\nTYPE = state\nRESOURCE = VM\nON = custom\nSTATE = active\n"
        "LCM_STATE = boot_unknown\nCOMMAND = c\n",
        "c.hook",
    )
    assert (custom.stored["STATE"], custom.stored["LCM_STATE"]) == ("ACTIVE", "BOOT_UNKNOWN")


@pytest.mark.parametrize(
    "text, message",
    [
        ("TYPE = state\nRESOURCE = VM\nON = RUNNING\nCOMMAND = c", "no NAME"),
        ("NAME = n\nTYPE = api\nRESOURCE = VM\nCOMMAND = c\nCALL = x", "only state hooks"),
        ("NAME = n\nTYPE = state\nRESOURCE = VM\nON = SOMETIMES\nCOMMAND = c", "ON = SOMETIMES"),
        ("NAME = n\nNAME = m\nTYPE = state\nRESOURCE = VM\nCOMMAND = c", "NAME given twice"),
        ("NAME = n\nTYPE = state\nRESOURCE = VM\nON = RUNNING\nCOMMAND = [ A = 1 ]", "vector"),
        ("NAME = n\nTYPE = state\nON = RUNNING\nCOMMAND = c", "no RESOURCE"),
        ("NAME = n\nTYPE state", "line 2"),
    ],
)
def test_unusable_hook_files_are_refused_naming_the_file(text, message):
    with pytest.raises(HookTemplateError, match=message) as info:
        hook_spec(text, "deploy/one/hooks/x.hook")
    assert str(info.value).startswith("deploy/one/hooks/x.hook: ")


def test_oned_conf_lacking_the_driver_gets_exactly_the_missing_lines():
    lines = missing_lines(ONED_CONF, BLOCK, "/etc/one/oned.conf")
    assert lines == [
        "# in AUTH_MAD of /etc/one/oned.conf, make the AUTHN list end with biscuit:",
        '    AUTHN = "ssh,x509,ldap,server_cipher,server_x509,saml,biscuit"',
        "# add beside the other AUTH_MAD_CONF blocks of /etc/one/oned.conf:",
        *BLOCK.splitlines(),
    ]
    # The lines are oned.conf syntax: added to the file, it is complete.
    fixed = ONED_CONF.replace(
        'AUTHN = "ssh,x509,ldap,server_cipher,server_x509,saml"',
        'AUTHN = "ssh,x509,ldap,server_cipher,server_x509,saml,biscuit"',
    )
    assert missing_lines(fixed + "\n" + "\n".join(lines[3:]), BLOCK, "x") == []


def test_oned_conf_partly_done_or_all_drivers_enabled():
    with_block = ONED_CONF + "\n" + BLOCK + "\n"
    assert missing_lines(with_block, BLOCK, "x")[1] == (
        '    AUTHN = "ssh,x509,ldap,server_cipher,server_x509,saml,biscuit"'
    )
    assert len(missing_lines(with_block, BLOCK, "x")) == 2
    # Lower-case keys (older oned.conf files) and an AUTH_MAD without AUTHN (every driver on).
    old = 'AUTH_MAD = [ executable = "one_auth_mad" ]\nAUTH_MAD_CONF = [ name = "Biscuit" ]\n'
    assert missing_lines(old, BLOCK, "x") == []
    assert missing_lines('AUTH_MAD = [ authn = "ssh, biscuit" ]\n' + BLOCK, BLOCK, "x") == []


def test_oned_conf_unreadable_unparsable_or_without_auth_mad():
    unreadable = missing_lines(None, BLOCK, "/etc/one/oned.conf")
    assert (
        unreadable[0]
        == "# /etc/one/oned.conf could not be read: it needs biscuit in AUTH_MAD's AUTHN list"
    )
    assert unreadable[-len(BLOCK.splitlines()) :] == BLOCK.splitlines()
    broken = missing_lines('AUTH_MAD = [ AUTHN = "ssh"\nPORT = 2633', BLOCK, "f")
    assert broken[0].startswith("# f could not be parsed (line ")
    bare = missing_lines("PORT = 2633\n", BLOCK, "f")
    assert bare[:5] == [
        "# f has no AUTH_MAD section; add:",
        "AUTH_MAD = [",
        '    EXECUTABLE = "one_auth_mad",',
        '    AUTHN = "ssh,x509,ldap,server_cipher,server_x509,saml,biscuit"',
        "]",
    ]
