"""The hook execution manager: runs state hooks the way OpenNebula's onehem does.

For each state change a hook waits for, COMMAND runs (relative paths under `--hook-dir`, as
onehem prefixes its hook base path) with ARGUMENTS split on blanks and `$TEMPLATE` replaced by
the base64 of the object's XML (a VM with all its HISTORY records, as one.vm.info shows
it); with ARGUMENTS_STDIN=yes the arguments go to stdin instead.
TIMEOUT (seconds, else `--hook-timeout`) kills the command's process group; like
CommandManager the record then says "Timeout executing ..." with code 255 (`commands.py`).
No retries: a failing hook is only recorded and logged. At most 10 hooks run at once
(onehem's concurrency).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shlex
from pathlib import Path

from .cloud import Cloud
from .commands import CommandResult, run_command
from .model import Hook, StateEvent

log = logging.getLogger(__name__)

CONCURRENCY = 10


def hook_arguments(hook: Hook, event: StateEvent) -> str:
    """HEMHook#arguments: `$TEMPLATE` -> base64 of the object's XML, `$API` -> empty."""
    raw = hook.template.get_str("ARGUMENTS")
    if not raw:
        return ""
    template = base64.b64encode(event.xml.encode()).decode()
    out = []
    for arg in raw.split():
        if arg == "$TEMPLATE":
            out.append(template)
        elif arg == "$API":
            out.append("")
        else:
            out.append(arg)
    return " ".join(out).strip()


def arguments_on_stdin(hook: Hook) -> bool:
    """HEMHook#as_stdin?: only YES (any case) counts; its `casecmp || casecmp` rejects TRUE."""
    return hook.template.get_str("ARGUMENTS_STDIN").strip().lower() == "yes"


class HookRunner:
    """Receives the cloud's state events and runs the matching hooks in the background."""

    def __init__(self, cloud: Cloud, hook_dir: Path, default_timeout: float) -> None:
        self.cloud = cloud
        self.hook_dir = hook_dir
        self.default_timeout = default_timeout
        self._tasks: set[asyncio.Task] = set()
        self._limit = asyncio.Semaphore(CONCURRENCY)
        cloud.subscribe(self.on_event)

    def on_event(self, event: StateEvent, hooks: list[Hook]) -> None:
        """Called synchronously by the cloud; each execution becomes a task."""
        for hook in hooks:
            task = asyncio.get_running_loop().create_task(self._run(hook, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def _command(self, hook: Hook) -> list[str]:
        command = hook.template.get_str("COMMAND")
        argv = shlex.split(command)
        if argv and not argv[0].startswith("/"):
            argv[0] = str(self.hook_dir / argv[0])
        return argv

    def _timeout(self, hook: Hook) -> float:
        text = hook.template.get_str("TIMEOUT").strip()
        return float(text) if text.isdigit() and int(text) > 0 else self.default_timeout

    async def _run(self, hook: Hook, event: StateEvent) -> None:
        async with self._limit:
            params = hook_arguments(hook, event)
            argv = self._command(hook)
            stdin = None
            if arguments_on_stdin(hook):
                stdin = params.encode()
            elif params:
                argv += params.split(" ")
            shown = f"{argv[0]} with {len(params)} bytes of arguments" + (
                " on stdin" if stdin is not None else ""
            )
            try:
                result = await run_command(argv, stdin, self._timeout(hook))
            except Exception as exc:  # recorded, never lost: oned only logs failed hooks
                log.exception("hook %s (%s) could not run", hook.id, hook.name)
                result = CommandResult("", f"Internal error {exc}", 255)
            stdout, stderr, code = result.stdout, result.stderr, result.code
            record = self.cloud.record_execution(
                hook,
                event,
                arguments=params,
                command=" ".join(argv),
                stdout=stdout,
                stderr=stderr,
                code=code,
                timed_out=result.timed_out,
            )
            if code == 0:
                log.info(
                    "hook %s (%s) ran for %s %s: %s",
                    hook.id,
                    hook.name,
                    event.resource,
                    event.id,
                    shown,
                )
            else:
                log.warning(
                    "hook %s (%s) failed for %s %s with code %s: %s",
                    hook.id,
                    hook.name,
                    event.resource,
                    event.id,
                    record.code,
                    stderr.strip().splitlines()[-1] if stderr.strip() else "no stderr",
                )

    async def close(self, grace: float = 3.0) -> None:
        """Let running hooks finish for `grace` seconds, then kill what is left."""
        if not self._tasks:
            return
        _, still = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
