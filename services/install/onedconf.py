"""What oned.conf still needs for the biscuit auth driver, as the lines to add (pure).

The installer never edits oned.conf (oned's own file, where a typo stops the cloud): it says
which lines are missing, in oned.conf's syntax, `#` lines saying where they go.
"""

from __future__ import annotations

import re

from .onetemplate import TemplateSyntaxError, parse_template

DRIVER = "biscuit"
# OpenNebula 7.0's AUTHN list (share/etc/oned.conf), used when oned.conf sets none we can read.
DEFAULT_AUTHN = "ssh,x509,ldap,server_cipher,server_x509,saml"
_CONF_BLOCK = re.compile(r"^AUTH_MAD_CONF\s*=\s*\[.*?\]", re.M | re.S)


def conf_block(snippet: str) -> str:
    """The AUTH_MAD_CONF block of deploy/one/auth/oned.conf.biscuit, verbatim."""
    match = _CONF_BLOCK.search(snippet)
    if match is None:
        raise ValueError("the oned.conf snippet has no AUTH_MAD_CONF block")
    return match.group(0)


def missing_lines(conf: str | None, block: str, path: str) -> list[str]:
    """Lines `path` lacks for the driver ([] when none); `conf` None when it cannot be read."""
    if conf is None:
        return [
            f"# {path} could not be read: it needs {DRIVER} in AUTH_MAD's AUTHN list",
            f'#     AUTHN = "{DEFAULT_AUTHN},{DRIVER}"',
            "# and this block beside the other AUTH_MAD_CONF blocks:",
            *block.splitlines(),
        ]
    try:
        attrs = parse_template(conf)
    except TemplateSyntaxError as exc:
        return [
            f"# {path} could not be parsed ({exc}); check by hand that AUTH_MAD's AUTHN",
            f"# lists {DRIVER} and that this block is there:",
            *block.splitlines(),
        ]
    out: list[str] = []
    mads = [a.value for a in attrs if a.name == "AUTH_MAD" and isinstance(a.value, dict)]
    if not mads:
        out += [
            f"# {path} has no AUTH_MAD section; add:",
            "AUTH_MAD = [",
            '    EXECUTABLE = "one_auth_mad",',
            f'    AUTHN = "{DEFAULT_AUTHN},{DRIVER}"',
            "]",
        ]
    else:
        authn = mads[-1].get("AUTHN")  # oned reads the last one
        drivers = [d.strip() for d in (authn or "").split(",") if d.strip()]
        # No AUTHN at all means every driver is enabled (oned.conf's own comment).
        if authn is not None and DRIVER not in drivers:
            out += [
                f"# in AUTH_MAD of {path}, make the AUTHN list end with {DRIVER}:",
                f'    AUTHN = "{",".join([*drivers, DRIVER])}"',
            ]
    confs = [a.value for a in attrs if a.name == "AUTH_MAD_CONF" and isinstance(a.value, dict)]
    if not any(c.get("NAME", "").strip().lower() == DRIVER for c in confs):
        out += [f"# add beside the other AUTH_MAD_CONF blocks of {path}:", *block.splitlines()]
    return out
