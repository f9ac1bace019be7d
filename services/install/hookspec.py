"""A hook template file as oned will store it, and whether a registered hook still matches (pure).

oned does not store a hook template as given: `Hook::insert` takes NAME and TYPE out of the
template, rewrites REMOTE as YES or NO, upper-cases RESOURCE, and a VM hook's `ON = RUNNING`
becomes `STATE = ACTIVE` + `LCM_STATE = RUNNING` (HookStateVM::parse_template), while
`one.hook.update` reads STATE/LCM_STATE and never ON again. So a file is compared with a
registered hook, and sent to `one.hook.update`, in that stored form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .onetemplate import TemplateSyntaxError, parse_template

# HookStateVM: the ON shortcuts and the STATE / LCM_STATE pair each stands for.
VM_ON = {
    "PROLOG": ("ACTIVE", "PROLOG"),
    "RUNNING": ("ACTIVE", "RUNNING"),
    "SHUTDOWN": ("ACTIVE", "EPILOG"),
    "STOP": ("STOPPED", "LCM_INIT"),
    "DONE": ("DONE", "LCM_INIT"),
    "UNKNOWN": ("ACTIVE", "UNKNOWN"),
}


class HookTemplateError(ValueError):
    """A hook file the installer will not send to oned; the message names the file."""


@dataclasses.dataclass(frozen=True)
class HookSpec:
    """One hook to register: what is sent to `one.hook.allocate` and what oned will keep."""

    name: str
    type: str
    attributes: Mapping[str, str]  # the file's attributes, NAME and TYPE included
    stored: Mapping[str, str]  # the TEMPLATE oned keeps (and `one.hook.update` is sent)

    def differences(self, hook_type: str, template: Mapping[str, str]) -> list[str]:
        """Names of what differs from a registered hook's type and template, [] when equal."""
        out = ["TYPE"] if hook_type.lower() != self.type else []
        keys = sorted(set(self.stored) | set(template))
        return out + [k for k in keys if self.stored.get(k) != template.get(k)]

    @property
    def resource(self) -> str:
        return self.stored.get("RESOURCE", "")


def stored_form(attrs: Mapping[str, str]) -> dict[str, str]:
    """The TEMPLATE oned keeps for a state hook given `attrs` (NAME and TYPE taken out)."""
    out = {k: v for k, v in attrs.items() if k not in ("NAME", "TYPE")}
    out["REMOTE"] = "YES" if out.get("REMOTE", "").strip().upper() == "YES" else "NO"
    resource = out.get("RESOURCE", "").strip().upper()
    out["RESOURCE"] = resource
    if resource == "VM":
        on = out.pop("ON", "").strip().upper()
        if on != "CUSTOM":
            if on not in VM_ON:
                raise HookTemplateError(f"ON = {on or '(none)'} is not one of {', '.join(VM_ON)}")
            out["STATE"], out["LCM_STATE"] = VM_ON[on]
        out["STATE"] = out.get("STATE", "").upper()
        out["LCM_STATE"] = out.get("LCM_STATE", "").upper()
    elif resource == "HOST":
        out["STATE"] = out.get("STATE", "").strip().upper()
    return out


def hook_spec(text: str, source: str) -> HookSpec:
    """The hook a template file describes; HookTemplateError naming `source` when unusable."""
    try:
        attributes = parse_template(text)
    except TemplateSyntaxError as exc:
        raise HookTemplateError(f"{source}: {exc}") from None
    attrs: dict[str, str] = {}
    for attr in attributes:
        if isinstance(attr.value, dict):
            raise HookTemplateError(f"{source}: line {attr.line}: {attr.name} is a vector")
        if attr.name in attrs:
            raise HookTemplateError(f"{source}: line {attr.line}: {attr.name} given twice")
        attrs[attr.name] = attr.value
    for required in ("NAME", "TYPE", "COMMAND", "RESOURCE"):
        if not attrs.get(required, "").strip():
            raise HookTemplateError(f"{source}: no {required}")
    hook_type = attrs["TYPE"].strip().lower()
    if hook_type != "state":
        raise HookTemplateError(f"{source}: TYPE = {hook_type}: only state hooks are installed")
    try:
        stored = stored_form(attrs)
    except HookTemplateError as exc:
        raise HookTemplateError(f"{source}: {exc}") from None
    return HookSpec(attrs["NAME"].strip(), hook_type, attrs, stored)
