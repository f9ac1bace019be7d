"""Stand-ins for what cannot run here: OpenNebula's migrate driver and virsh.

`migrate_default` behaves like upstream's driver where the shim depends on it: it records its
arguments, stdin, environment and the interfaces present while it runs, loads kvmrc OVER its
environment (load_remote_env), then runs `virsh --connect qemu:///system migrate --live
$MIGRATE_OPTIONS <deploy_id> qemu+ssh://<dest>/system` through the shell as Open3 does, so
PATH decides which virsh runs. Then it writes what it was told to on stderr and exits, dies by
a signal, sleeps or hangs, as STANDIN_MODE says. `virsh` records its arguments.
"""

from __future__ import annotations

MIGRATE_DEFAULT = r"""#!/usr/bin/env python3
import json, os, re, signal, subprocess, sys, time

def links():
    return sorted(n for n in os.listdir("/sys/class/net") if n.startswith("oc"))

record = {"argv": sys.argv[1:], "stdin": sys.stdin.read(), "pid": os.getpid(),
          "env_in": {k: os.environ.get(k) for k in ("MIGRATE_OPTIONS",)}, "links": links()}
# load_remote_env: every variable kvmrc sets overwrites the environment's.
line_re = re.compile(r"(export)?[ \t]*([^=]+)=([ \t]*(['\"]).*?\4|[^#\n]*)")
try:
    with open(os.environ["STANDIN_KVMRC"]) as f:
        for line in f.read().splitlines(keepends=True):
            if not line or line[0] == "#":
                continue
            m = line_re.search(line)
            if m:
                v = m.group(3).strip()
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                    v = v[1:-1]
                os.environ[m.group(2)] = v.replace("\n", "")
except OSError:
    pass
cmd = ("virsh --connect qemu:///system migrate --live %s %s qemu+ssh://%s/system"
       % (os.environ.get("MIGRATE_OPTIONS", ""), sys.argv[1], sys.argv[2]))
record["virsh_rc"] = subprocess.run(["/bin/sh", "-c", cmd]).returncode
record["migrate_options"] = os.environ.get("MIGRATE_OPTIONS")
mode = os.environ.get("STANDIN_MODE", "exit:0")
if mode.startswith("sleep:"):
    time.sleep(float(mode[6:]))
    record["links_at_end"] = links()
with open(os.environ["STANDIN_RECORD"], "w") as f:
    json.dump(record, f)
sys.stderr.write(os.environ.get("STANDIN_STDERR", ""))
sys.stderr.flush()
if mode.startswith("exit:"):
    sys.exit(int(mode[5:]))
if mode.startswith("signal:"):
    os.kill(os.getpid(), int(mode[7:]))
if mode == "hang":
    time.sleep(3600)
sys.exit(0)
"""

VIRSH = r"""#!/usr/bin/env python3
import json, os, sys
with open(os.environ["STANDIN_VIRSH_RECORD"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
"""


def action_xml(vm_id: int, shared: bool) -> bytes:
    """VMM_DRIVER_ACTION_DATA as one_vmm_exec sends it (the parts the driver reads)."""
    return (
        f"<VMM_DRIVER_ACTION_DATA><HOST>kvm-a</HOST><MIGR_HOST>kvm-b</MIGR_HOST>"
        f"<DEPLOY_ID>one-{vm_id}</DEPLOY_ID><DISK_TARGET_PATH>/var/lib/one//datastores/0/"
        f"{vm_id}</DISK_TARGET_PATH><DATASTORE><BASE_PATH>/var/lib/one//datastores/0"
        f"</BASE_PATH><TEMPLATE><SHARED>{'YES' if shared else 'NO'}</SHARED></TEMPLATE>"
        f"</DATASTORE><VM><ID>{vm_id}</ID><TEMPLATE><FEATURES></FEATURES></TEMPLATE></VM>"
        f"</VMM_DRIVER_ACTION_DATA>"
    ).encode()
