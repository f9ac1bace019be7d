"""Session checks as oned does them: core passwords in process, other drivers by their script.

A user whose AUTH_DRIVER is not `core` is authenticated by running
`<--auth-driver-dir>/<driver>/authenticate` with no arguments and
`<AUTHN><USERNAME/><PASSWORD/><SECRET/></AUTHN>` on stdin (PASSWORD = what oned stores for the
user, SECRET = the session's secret), as one_auth_mad does; exit 0 accepts, stdout is ignored
for existing users. A success is cached for `--session-expiration` seconds, like oned's
SESSION_EXPIRATION_TIME, so a session does not run the driver on every call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from .cloud import Cloud
from .commands import run_command
from .model import User
from .template import escape

log = logging.getLogger(__name__)

# oned's own drivers, which need no script (server_* are for oned's internal sessions)
INTERNAL_DRIVERS = {"core", "public", "server_cipher", "server_x509"}
DRIVER_TIMEOUT = 30.0


def authn_xml(username: str, password: str, secret: str) -> bytes:
    """The AUTHN document one_auth_mad writes on the driver's stdin."""
    return (
        f"<AUTHN><USERNAME>{escape(username)}</USERNAME><PASSWORD>{escape(password)}</PASSWORD>"
        f"<SECRET>{escape(secret)}</SECRET></AUTHN>"
    ).encode()


class Authenticator:
    """`await authenticator(session)` -> the User, or None when oned would refuse it."""

    def __init__(
        self,
        cloud: Cloud,
        driver_dir: Path,
        session_expiration: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cloud = cloud
        self.driver_dir = driver_dir
        self.session_expiration = session_expiration
        self._clock = clock
        self._valid: dict[tuple[int, str], float] = {}

    async def __call__(self, session: str) -> User | None:
        user = self.cloud.authenticate(session)
        if user is not None:
            return user
        name, _, secret = session.partition(":")
        user = self.cloud.user_by_name(name)
        if user is None or not user.enabled or user.auth_driver in INTERNAL_DRIVERS:
            return None
        key = (user.id, secret)
        expires = self._valid.get(key)
        if expires is not None and expires > self._clock():
            return user
        if await self._run_driver(user, secret):
            self._valid[key] = self._clock() + self.session_expiration
            return user
        self._valid.pop(key, None)
        return None

    async def _run_driver(self, user: User, secret: str) -> bool:
        command = str(self.driver_dir / user.auth_driver / "authenticate")
        stdin = authn_xml(user.name, user.password, secret)
        result = await run_command([command], stdin, DRIVER_TIMEOUT)
        if result.code != 0:
            lines = result.stderr.strip().splitlines()
            log.info(
                "auth driver %s refused user %s: %s",
                user.auth_driver,
                user.name,
                lines[-1] if lines else f"exit {result.code}",
            )
            return False
        return True
