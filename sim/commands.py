"""Run a local command like OpenNebula's CommandManager: own process group, stdin, timeout."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    stdout: str
    stderr: str
    code: int
    timed_out: bool = False


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


async def run_command(argv: list[str], stdin: bytes | None, timeout: float) -> CommandResult:
    """Run `argv` in its own session; on timeout TERM (then KILL) its whole process group.

    Like CommandManager: a command that cannot start or is killed reports code 255, a timeout
    says "Timeout executing <command>" on stderr.
    """
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
        return CommandResult("", f"Internal error {exc.strerror or exc} - {argv[0]}", 255)

    async def feed() -> None:
        if proc.stdin is None:
            return
        try:
            proc.stdin.write(stdin or b"")
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            pass  # the command exited without reading its stdin; that is its business
        finally:
            proc.stdin.close()

    assert proc.stdout is not None and proc.stderr is not None
    run = asyncio.gather(feed(), proc.stdout.read(), proc.stderr.read(), proc.wait())
    try:
        _, out, err, _ = await asyncio.wait_for(run, timeout)
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
        except TimeoutError:
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        return CommandResult("", f"Timeout executing {command}", 255, True)
    except asyncio.CancelledError:
        _kill_group(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    code = proc.returncode if proc.returncode is not None and proc.returncode >= 0 else 255
    return CommandResult(out.decode(errors="replace"), err.decode(errors="replace"), code)
