"""Tell Prometheus its config changed: POST /-/reload, a command, or nothing (I/O)."""

from __future__ import annotations

import asyncio
import contextlib
import shlex

import aiohttp

RELOAD_TIMEOUT = 30.0


class ReloadError(Exception):
    """Prometheus was not reloaded; the message says why and what to do."""


async def reload_http(session: aiohttp.ClientSession, prometheus_url: str) -> None:
    """POST <prometheus-url>/-/reload; ReloadError unless Prometheus answers 2xx."""
    url = prometheus_url.rstrip("/") + "/-/reload"
    try:
        async with asyncio.timeout(RELOAD_TIMEOUT):
            async with session.post(url) as resp:
                body = (await resp.content.read(2048)).decode(errors="replace").strip()
                status = resp.status
    except TimeoutError:
        raise ReloadError(f"Prometheus did not answer POST {url} in {RELOAD_TIMEOUT:g}s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ReloadError(f"cannot reach Prometheus at {url}: {exc}") from None
    if status == 403:
        raise ReloadError(
            f"Prometheus refused POST {url} (403): it runs without --web.enable-lifecycle; "
            "add that flag, or use --reload command (e.g. 'systemctl reload prometheus')"
        )
    if not 200 <= status < 300:
        raise ReloadError(f"Prometheus answered {status} to POST {url}: {body[:200]}")


async def reload_command(command: str) -> None:
    """Run --reload-command; ReloadError unless it exits 0 within the timeout."""
    argv = shlex.split(command)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise ReloadError(f"cannot run reload command {argv[0]!r}: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(RELOAD_TIMEOUT):
            _, stderr = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise ReloadError(
            f"reload command {command!r} did not finish in {RELOAD_TIMEOUT:g}s"
        ) from None
    if proc.returncode != 0:
        last = stderr.decode(errors="replace").strip().splitlines()
        tail = f": {last[-1][:300]}" if last else ""
        raise ReloadError(f"reload command {command!r} exited {proc.returncode}{tail}")
