"""OpenNebula access as OpenNebula's CLI does it: ONE_XMLRPC and the ONE_AUTH file.

pyone is synchronous and does not enforce its `timeout=` (SPEC section 9), so calls run in
a thread over an xmlrpc transport whose socket timeout is real.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import xmlrpc.client
from pathlib import Path
from typing import Any

from .config import env_default, option
from .errors import ConfigError, OneError

DEFAULT_XMLRPC = "http://localhost:2633/RPC2"
DEFAULT_ONE_AUTH = "~/.one/one_auth"


@dataclasses.dataclass(frozen=True)
class OneOptions:
    """The two OpenNebula flags; mixed into the configs of services that talk to oned."""

    one_xmlrpc: str = option(
        help="oned XML-RPC endpoint (env ONE_XMLRPC)",
        factory=env_default("ONE_XMLRPC", DEFAULT_XMLRPC),
        metavar="URL",
    )
    one_auth: Path = option(
        help="file holding user:password (env ONE_AUTH)",
        factory=lambda: Path(env_default("ONE_AUTH", DEFAULT_ONE_AUTH)()).expanduser(),
        metavar="PATH",
    )


def read_one_auth(path: Path) -> str:
    """The `user:password` session string of a ONE_AUTH file, or a ConfigError."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read ONE_AUTH file {path}: {exc.strerror or exc} "
            "(set --one-auth or ONE_AUTH to a file holding user:password)"
        ) from None
    session = text.strip().splitlines()[0].strip() if text.strip() else ""
    if ":" not in session:
        raise ConfigError(f"ONE_AUTH file {path} must hold user:password")
    return session


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


class _SafeTimeoutTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


def _transport(url: str, timeout: float) -> xmlrpc.client.Transport:
    if url.startswith("https:"):
        return _SafeTimeoutTransport(timeout)
    return _TimeoutTransport(timeout)


class OneClient:
    """Async access to oned: `call` returns the raw body of a `[ok, body, code]` reply."""

    def __init__(self, url: str, session: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self._session = session
        self.timeout = timeout

    def _call_sync(self, method: str, args: tuple[Any, ...]) -> Any:
        proxy = xmlrpc.client.ServerProxy(
            self.url, transport=_transport(self.url, self.timeout), allow_none=False
        )
        try:
            reply = proxy._ServerProxy__request(method, (self._session, *args))  # type: ignore[attr-defined]
        except xmlrpc.client.Fault as exc:
            raise OneError(f"{method}: XML-RPC fault {exc.faultString}") from None
        except xmlrpc.client.ProtocolError as exc:
            raise OneError(f"{method}: HTTP {exc.errcode} {exc.errmsg} from {self.url}") from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ResponseError) as exc:
            raise OneError(f"{method}: cannot reach oned at {self.url}: {exc}") from None
        finally:
            proxy("close")()
        if not isinstance(reply, list | tuple) or len(reply) < 2:
            raise OneError(f"{method}: unexpected reply shape from oned")
        if not reply[0]:
            code = reply[2] if len(reply) > 2 and isinstance(reply[2], int) else None
            raise OneError(f"{method}: {reply[1]}", code=code)
        return reply[1]

    async def call(self, method: str, *args: Any) -> Any:
        """Run one XML-RPC call in a thread; raise OneError when oned fails or refuses it."""
        return await asyncio.to_thread(self._call_sync, method, args)

    def pyone(self) -> Any:
        """A pyone server for callers that want its bindings (run its calls in a thread)."""
        import pyone

        return pyone.OneServer(self.url, session=self._session, timeout=self.timeout)
