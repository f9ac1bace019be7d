"""oned adapter: the two pool reads of a refresh over aiohttp, parsed as they stream in.

`services.common.one.OneClient` unmarshals replies with the standard library, one callback per
text fragment: 3 s for a 10,000-VM pool on its own (bench/bench_vm_exporter.py), and pyone adds
its bindings on top and does not enforce its timeout (SPEC section 9). Here the reply is read
in 64 KiB pieces and each piece goes through expat and lxml before the next is awaited, so the
event loop keeps serving scrapes and the whole call has a real deadline.
"""

from __future__ import annotations

import asyncio

import aiohttp

from services.common.errors import OneError

from .pool import Pool, PoolFormatError, host_pool_reader, vm_pool_reader
from .rpc import BodySink, RpcFormatError, RpcRefused, RpcReplyReader, request_body

_READ = 1 << 16


class Oned:
    """Reads oned's VM and host pools; every failure is a OneError with a readable message."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, auth: str, *, timeout: float
    ) -> None:
        self._session = session
        self.url = url
        self._auth = auth
        self.timeout = timeout

    async def vm_pool(self) -> Pool:
        """`one.vmpool.infoextended(-2, -1, -1, -1)`: every VM of every user, any state but DONE."""
        return await self._call("one.vmpool.infoextended", vm_pool_reader(), -2, -1, -1, -1)

    async def host_pool(self) -> Pool:
        """`one.hostpool.info()`: every host."""
        return await self._call("one.hostpool.info", host_pool_reader())

    async def _call(self, method: str, sink: BodySink, *params: object) -> Pool:
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
