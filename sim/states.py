"""OpenNebula's VM and host state numbers and names, as oned defines them.

pyone's LCM_STATE enum stops at 68 while oned goes to 71 (SPEC section 9), so the simulator
keeps its own tables and everything compares integers.
"""

from __future__ import annotations

# include/VirtualMachine.h VmState
VM_STATES: dict[str, int] = {
    "INIT": 0,
    "PENDING": 1,
    "HOLD": 2,
    "ACTIVE": 3,
    "STOPPED": 4,
    "SUSPENDED": 5,
    "DONE": 6,
    "POWEROFF": 8,
    "UNDEPLOYED": 9,
    "CLONING": 10,
    "CLONING_FAILURE": 11,
}

# include/VirtualMachine.h LcmState (13, 14, 55 and 58 are retired numbers)
LCM_STATES: dict[str, int] = {
    "LCM_INIT": 0,
    "PROLOG": 1,
    "BOOT": 2,
    "RUNNING": 3,
    "MIGRATE": 4,
    "SAVE_STOP": 5,
    "SAVE_SUSPEND": 6,
    "SAVE_MIGRATE": 7,
    "PROLOG_MIGRATE": 8,
    "PROLOG_RESUME": 9,
    "EPILOG_STOP": 10,
    "EPILOG": 11,
    "SHUTDOWN": 12,
    "CLEANUP_RESUBMIT": 15,
    "UNKNOWN": 16,
    "HOTPLUG": 17,
    "SHUTDOWN_POWEROFF": 18,
    "BOOT_UNKNOWN": 19,
    "BOOT_POWEROFF": 20,
    "BOOT_SUSPENDED": 21,
    "BOOT_STOPPED": 22,
    "CLEANUP_DELETE": 23,
    "HOTPLUG_SNAPSHOT": 24,
    "HOTPLUG_NIC": 25,
    "HOTPLUG_SAVEAS": 26,
    "HOTPLUG_SAVEAS_POWEROFF": 27,
    "HOTPLUG_SAVEAS_SUSPENDED": 28,
    "SHUTDOWN_UNDEPLOY": 29,
    "EPILOG_UNDEPLOY": 30,
    "PROLOG_UNDEPLOY": 31,
    "BOOT_UNDEPLOY": 32,
    "HOTPLUG_PROLOG_POWEROFF": 33,
    "HOTPLUG_EPILOG_POWEROFF": 34,
    "BOOT_MIGRATE": 35,
    "BOOT_FAILURE": 36,
    "BOOT_MIGRATE_FAILURE": 37,
    "PROLOG_MIGRATE_FAILURE": 38,
    "PROLOG_FAILURE": 39,
    "EPILOG_FAILURE": 40,
    "EPILOG_STOP_FAILURE": 41,
    "EPILOG_UNDEPLOY_FAILURE": 42,
    "PROLOG_MIGRATE_POWEROFF": 43,
    "PROLOG_MIGRATE_POWEROFF_FAILURE": 44,
    "PROLOG_MIGRATE_SUSPEND": 45,
    "PROLOG_MIGRATE_SUSPEND_FAILURE": 46,
    "BOOT_UNDEPLOY_FAILURE": 47,
    "BOOT_STOPPED_FAILURE": 48,
    "PROLOG_RESUME_FAILURE": 49,
    "PROLOG_UNDEPLOY_FAILURE": 50,
    "DISK_SNAPSHOT_POWEROFF": 51,
    "DISK_SNAPSHOT_REVERT_POWEROFF": 52,
    "DISK_SNAPSHOT_DELETE_POWEROFF": 53,
    "DISK_SNAPSHOT_SUSPENDED": 54,
    "DISK_SNAPSHOT_DELETE_SUSPENDED": 56,
    "DISK_SNAPSHOT": 57,
    "DISK_SNAPSHOT_DELETE": 59,
    "PROLOG_MIGRATE_UNKNOWN": 60,
    "PROLOG_MIGRATE_UNKNOWN_FAILURE": 61,
    "DISK_RESIZE": 62,
    "DISK_RESIZE_POWEROFF": 63,
    "DISK_RESIZE_UNDEPLOYED": 64,
    "HOTPLUG_NIC_POWEROFF": 65,
    "HOTPLUG_RESIZE": 66,
    "HOTPLUG_SAVEAS_UNDEPLOYED": 67,
    "HOTPLUG_SAVEAS_STOPPED": 68,
    "BACKUP": 69,
    "BACKUP_POWEROFF": 70,
    "RESTORE": 71,
}

# include/Host.h HostState (1, 5, 6 and 7 are retired transitional states)
HOST_STATES: dict[str, int] = {
    "INIT": 0,
    "MONITORING_MONITORED": 1,
    "MONITORED": 2,
    "ERROR": 3,
    "DISABLED": 4,
    "MONITORING_ERROR": 5,
    "MONITORING_INIT": 6,
    "MONITORING_DISABLED": 7,
    "OFFLINE": 8,
}

VM_STATE_NAMES = {v: k for k, v in VM_STATES.items()}
LCM_STATE_NAMES = {v: k for k, v in LCM_STATES.items()}
HOST_STATE_NAMES = {v: k for k, v in HOST_STATES.items()}

ACTIVE = VM_STATES["ACTIVE"]
PENDING = VM_STATES["PENDING"]
HOLD = VM_STATES["HOLD"]
STOPPED = VM_STATES["STOPPED"]
SUSPENDED = VM_STATES["SUSPENDED"]
DONE = VM_STATES["DONE"]
POWEROFF = VM_STATES["POWEROFF"]
UNDEPLOYED = VM_STATES["UNDEPLOYED"]
LCM_INIT = LCM_STATES["LCM_INIT"]
RUNNING = LCM_STATES["RUNNING"]

MONITORED = HOST_STATES["MONITORED"]

# History ACTION numbers (include/VMActions.h Action)
HISTORY_ACTIONS: dict[str, int] = {
    "none": 0,
    "migrate": 1,
    "live-migrate": 2,
    "undeploy": 5,
    "undeploy-hard": 6,
    "stop": 9,
    "suspend": 10,
    "resume": 11,
    "poweroff": 19,
    "poweroff-hard": 20,
    "terminate": 27,
    "terminate-hard": 28,
    "deploy": 30,
}


def vm_state_name(state: int) -> str:
    """oned's name of a VM STATE number."""
    return VM_STATE_NAMES.get(state, str(state))


def lcm_state_name(lcm_state: int) -> str:
    """oned's name of a VM LCM_STATE number."""
    return LCM_STATE_NAMES.get(lcm_state, str(lcm_state))


def host_state_name(state: int) -> str:
    """oned's name of a host STATE number."""
    return HOST_STATE_NAMES.get(state, str(state))


def parse_host_state(value: str | int) -> int:
    """A host state given as a name (any case) or a number; ValueError when unknown."""
    if isinstance(value, bool):
        raise ValueError(f"unknown host state {value!r}")
    if isinstance(value, int):
        if value in HOST_STATE_NAMES:
            return value
        raise ValueError(f"unknown host state {value}")
    text = str(value).strip().upper()
    if text.isdigit() and int(text) in HOST_STATE_NAMES:
        return int(text)
    if text in HOST_STATES:
        return HOST_STATES[text]
    raise ValueError(f"unknown host state {value!r} (one of {', '.join(HOST_STATES)})")
