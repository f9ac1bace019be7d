"""The one way services talk to oned: streaming XML-RPC over aiohttp, one model per object."""

from .client import ACTION, AUTHENTICATION, AUTHORIZATION, NO_EXISTS, Oned
from .models import (
    HOST_DISABLED,
    HOST_ERROR,
    HOST_MONITORED,
    HOST_OFFLINE,
    VM_ACTIVE,
    Disk,
    Hook,
    Host,
    Nic,
    Pool,
    Vm,
)
from .options import OneOptions, read_one_auth

__all__ = [
    "ACTION",
    "AUTHENTICATION",
    "AUTHORIZATION",
    "HOST_DISABLED",
    "HOST_ERROR",
    "HOST_MONITORED",
    "HOST_OFFLINE",
    "NO_EXISTS",
    "VM_ACTIVE",
    "Disk",
    "Hook",
    "Host",
    "Nic",
    "OneOptions",
    "Oned",
    "Pool",
    "Vm",
    "read_one_auth",
]
