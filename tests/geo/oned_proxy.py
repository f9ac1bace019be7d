"""An HTTP relay in front of the simulator, to make oned unreachable or refuse a write.

Everything it forwards is answered by the real simulator. `down = True` answers 502 as a
reverse proxy in front of a dead oned would; `update_session` sends `one.host.update` calls
with another user's session, so the simulator refuses them with oned's own authorization
error (the way a one_auth with too few rights fails).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from testkit import free_port


class OnedProxy:
    """Relays POST /RPC2 to `target`; see the module docstring for the two faults."""

    def __init__(self, target: str, admin: str) -> None:
        self.target = target
        self.admin = admin
        self.down = False
        self.update_session: str | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/RPC2"
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OnedProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/RPC2", self._relay)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _relay(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.down:
            return web.Response(status=502, text="bad gateway: oned is down")
        if self.update_session and b"<methodName>one.host.update</methodName>" in body:
            body = body.replace(self.admin.encode(), self.update_session.encode(), 1)
        assert self._session is not None
        async with self._session.post(
            self.target, data=body, headers={"Content-Type": "text/xml"}
        ) as resp:
            return web.Response(body=await resp.read(), status=resp.status, content_type="text/xml")
