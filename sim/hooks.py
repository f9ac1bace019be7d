"""The hook execution manager: runs state hooks the way OpenNebula's onehem does.

For each state change a hook waits for, COMMAND runs (relative paths under `--hook-dir`, as
onehem prefixes its hook base path) with ARGUMENTS split on blanks and `$TEMPLATE` replaced by
the base64 of the object's XML; with ARGUMENTS_STDIN=yes the arguments go to stdin instead.
TIMEOUT (seconds, else `--hook-timeout`) kills the command's process group; like
CommandManager the record then says "Timeout executing ..." with code 255. No retries: a
failing hook is only recorded and logged. At most 10 hooks run at once (onehem's concurrency).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shlex
import signal
from pathlib import Path

from .cloud import Cloud
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
    return hook.template.get_str("ARGUMENTS_STDIN").strip().lower() in ("yes", "true")


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
            stdout, stderr, code, timed_out = await self._execute(argv, stdin, self._timeout(hook))
            record = self.cloud.record_execution(
                hook,
                event,
                arguments=params,
                command=" ".join(argv),
                stdout=stdout,
                stderr=stderr,
                code=code,
                timed_out=timed_out,
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

    async def _execute(
        self, argv: list[str], stdin: bytes | None, timeout: float
    ) -> tuple[str, str, int, bool]:
        """Run one command in its own process group; (stdout, stderr, code, timed_out)."""
        command = " ".join(argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return "", f"Internal error {exc.strerror or exc} - {argv[0]}", 255, False

        async def feed() -> None:
            if proc.stdin is None:
                return
            try:
                proc.stdin.write(stdin or b"")
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                pass  # the hook exited without reading its stdin, as onehem tolerates
            finally:
                proc.stdin.close()

        assert proc.stdout is not None and proc.stderr is not None
        run = asyncio.gather(feed(), proc.stdout.read(), proc.stderr.read(), proc.wait())
        try:
            _, out, err, _ = await asyncio.wait_for(run, timeout)
        except TimeoutError:
            self._kill_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except TimeoutError:
                self._kill_group(proc.pid, signal.SIGKILL)
                await proc.wait()
            return "", f"Timeout executing {command}", 255, True
        except asyncio.CancelledError:
            self._kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
        code = proc.returncode if proc.returncode is not None and proc.returncode >= 0 else 255
        return out.decode(errors="replace"), err.decode(errors="replace"), code, False

    @staticmethod
    def _kill_group(pid: int, sig: int) -> None:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass

    async def close(self, grace: float = 3.0) -> None:
        """Let running hooks finish for `grace` seconds, then kill what is left."""
        if not self._tasks:
            return
        _, still = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
