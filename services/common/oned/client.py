"""oned over aiohttp: every call the services make, parsed as the reply streams in.

The standard library's XML-RPC unmarshaller takes a callback per text fragment (3 s for a
10,000-VM pool on its own, bench/bench_vm_exporter.py), and pyone adds its bindings on top and
does not enforce its timeout (SPEC section 9). Here the reply is read in 64 KiB pieces and each
piece goes through expat and lxml before the next is awaited, so the event loop keeps serving
and every call has a real deadline. Every failure is a OneError with a readable message and,
when oned answered, its error code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from services.common.errors import OneError

from .models import Host, Pool, Vm
from .pools import (
    PoolFormatError,
    PoolReader,
    hook_pool_reader,
    host_pool_reader,
    host_reader,
    vm_pool_reader,
    vm_reader,
)
from .rpc import BodySink, RpcFormatError, RpcRefused, RpcReplyReader, request_body
from .templates import template_xml

_READ = 1 << 16

# oned's error codes (include/Request.h ErrorCode) the services tell apart.
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800


class Oned:
    """Calls of oned's XML-RPC API as the session in the ONE_AUTH file."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, auth: str, *, timeout: float
    ) -> None:
        self._session = session
        self.url = url
        self._auth = auth
        self.timeout = timeout

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, auth: str, *, timeout: float) -> AsyncIterator[Oned]:
        """An Oned with its own HTTP session, closed on exit.

        A fresh connection per call, as OpenNebula's own clients do: a few calls per cycle gain
        nothing from keep-alive, and a kept connection that oned closed would fail a call.
        """
        connector = aiohttp.TCPConnector(limit=4, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            yield cls(session, url, auth, timeout=timeout)

    # Reads ---------------------------------------------------------------------------------

    async def version(self) -> str:
        """`one.system.version`: oned's version string."""
        return str(await self._call("one.system.version"))

    async def vm_pool(self) -> Pool:
        """`one.vmpool.infoextended(-2, -1, -1, -1)`: every VM of every user, any state but DONE."""
        return await self._call("one.vmpool.infoextended", vm_pool_reader(), -2, -1, -1, -1)

    async def host_pool(self) -> Pool:
        """`one.hostpool.info()`: every host."""
        return await self._call("one.hostpool.info", host_pool_reader())

    async def vm(self, vm_id: int) -> Vm:
        """`one.vm.info(id)`: one VM as oned knows it now (OneError code NO_EXISTS when gone)."""
        return self._only(await self._call("one.vm.info", vm_reader(), vm_id, False), "VM")

    async def host(self, host_id: int) -> Host:
        """`one.host.info(id)`: one host as oned knows it now."""
        return self._only(await self._call("one.host.info", host_reader(), host_id, False), "host")

    async def hook_pool(self) -> Pool:
        """`one.hookpool.info(-2, -1, -1)`: every hook."""
        return await self._call("one.hookpool.info", hook_pool_reader(), -2, -1, -1)

    # Writes --------------------------------------------------------------------------------

    async def host_update(self, host_id: int, attrs: Mapping[str, str], *, merge: bool) -> int:
        """`one.host.update`: merge `attrs` into the template (merge=False REPLACES it all)."""
        return await self._write("one.host.update", host_id, template_xml(attrs), int(merge))

    async def hook_allocate(self, attrs: Mapping[str, str]) -> int:
        """`one.hook.allocate`: a new hook from its template; returns its id."""
        return await self._write("one.hook.allocate", template_xml(attrs))

    async def hook_update(self, hook_id: int, attrs: Mapping[str, str], *, merge: bool) -> int:
        """`one.hook.update`: the hook's template replaced (merge=False) or merged."""
        return await self._write("one.hook.update", hook_id, template_xml(attrs), int(merge))

    async def hook_delete(self, hook_id: int) -> int:
        """`one.hook.delete`: removes the hook."""
        return await self._write("one.hook.delete", hook_id)

    # Plumbing ------------------------------------------------------------------------------

    @staticmethod
    def _only(pool: Pool, what: str) -> Any:
        if not pool.items:
            raise OneError(f"oned's {what} has no integer ID")
        return pool.items[0]

    async def _write(self, method: str, *params: object) -> int:
        value = await self._call(method, None, *params)
        if not isinstance(value, int) or isinstance(value, bool):
            raise OneError(f"{method}: oned answered {value!r}, expected an id")
        return value

    async def _call(self, method: str, sink: BodySink | PoolReader | None = None, *params: object):
        body = request_body(method, self._auth, *params)
        reader = RpcReplyReader(method, sink)
        try:
            async with asyncio.timeout(self.timeout):
                async with self._session.post(
                    self.url, data=body, headers={"Content-Type": "text/xml"}
                ) as resp:
                    if resp.status != 200:
                        raise OneError(f"{method}: HTTP {resp.status} from {self.url}")
                    async for chunk in resp.content.iter_chunked(_READ):
                        reader.feed(chunk)
            return reader.close()
        except TimeoutError:
            raise OneError(f"{method}: no answer from {self.url} in {self.timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise OneError(f"{method}: cannot reach oned at {self.url}: {exc}") from None
        except RpcRefused as exc:
            raise OneError(exc.message, exc.code) from None
        except (RpcFormatError, PoolFormatError) as exc:
            raise OneError(f"{method}: unusable reply from oned: {exc}") from None
