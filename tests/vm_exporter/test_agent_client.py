"""One host's power source over real sockets: hostile agents cost their own host only, and a
large legal reply is parsed in short steps that give the event loop back."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from aiohttp import web

from services.vm_exporter.agent_client import AgentError, Turns, fetch_host
from services.vm_exporter.config import MAX_AGENT_REPLY
from services.vm_exporter.join import Target
from services.vm_exporter.readings import MAX_POWER_UW, VmReading
from services.vm_exporter.scaphandre import MAX_LABEL_VALUE, MAX_LINE, parse_scaphandre
from testkit import free_port
from testkit.agent_replies import (
    agent_json,
    escape_label,
    largest_agent_json,
    largest_scaphandre_page,
    scaphandre_page,
)
from tests.vm_exporter.servers import HttpAgent, send

NET = "127.0.81"
VMS, METRICS = "/api/v1/vms", "/metrics"
POWER_LINE = (
    "scaph_process_power_consumption_microwatts"
    '{{pid="{pid}",exe="qemu",vmname="one-{vm}",cmdline="{cmd}"}} {value}\n'
)


async def _streaming_agent(path: str, head: bytes, item: bytes, total: int):
    """An agent on this loop that answers `path` with `head` then `item` until `total` bytes,
    chunked (no Content-Length): a reply of the right shape that goes on and on."""
    sent = {"bytes": 0}

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = head + item * ((1 << 16) // len(item))
        try:
            while sent["bytes"] < total:
                await resp.write(block)
                sent["bytes"] += len(block)
                block = item * ((1 << 16) // len(item))
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass  # the exporter hung up, as it should
        return resp

    app = web.Application()
    app.router.add_get(path, stream)
    if path == METRICS:

        async def not_found(_: web.Request) -> web.Response:
            return web.Response(status=404)

        app.router.add_get(VMS, not_found)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port, sent


@pytest.mark.parametrize(
    ("path", "head", "item"),
    [
        (VMS, b'{"host": {}, "vms": [', b'{"one_vm_id": 1, "power_uw": 5},'),
        (METRICS, b"", b'scaph_process_power_consumption_microwatts{pid="1",exe="x"} 5\n'),
    ],
)
async def test_a_reply_streamed_past_the_limit_is_cut_off_and_the_host_is_down(path, head, item):
    limit = MAX_AGENT_REPLY // 16  # the rule is the same at any limit; this one is quicker
    runner, port, sent = await _streaming_agent(path, head, item, 64 * limit)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(AgentError) as info:
                await fetch_host(session, Target(1, "127.0.0.1"), port, timeout=60, limit=limit)
    finally:
        await runner.cleanup()
    assert info.value.reason == "too_large"
    # Read up to the limit, not to the end of what the agent would send.
    assert sent["bytes"] < 32 * limit


def _vm_entry(vm: int, power: str, energy: str = "1") -> str:
    return f'{{"one_vm_id": {vm}, "pid": 7, "power_uw": {power}, "energy_uj": {energy}}}'


def _vms_reply(*entries: str) -> bytes:
    return ('{"host": {"power_uw": 1}, "vms": [' + ", ".join(entries) + "]}").encode()


HUGE = "1" + "0" * 308  # 309 digits
HOSTILE = {
    "vms-309-digits": (VMS, _vms_reply(_vm_entry(1, HUGE))),
    "vms-1e308": (VMS, _vms_reply(_vm_entry(1, "1e308"))),
    "vms-nan": (VMS, _vms_reply(_vm_entry(1, "NaN"))),
    "vms-infinity": (VMS, _vms_reply(_vm_entry(1, "1", "Infinity"))),
    "vms-listed-twice-huge": (
        VMS,
        _vms_reply(_vm_entry(1, str(MAX_POWER_UW)), _vm_entry(1, str(MAX_POWER_UW))),
    ),
    "vms-nested": (VMS, b'{"host": {}, "vms": [' + b"[" * 100_000 + b"]}"),
    "scaph-long-escaped-label": (
        METRICS,
        POWER_LINE.format(pid=1, vm=1, cmd='\\"' * 400_000, value=5).encode(),
    ),
    "scaph-309-digits": (METRICS, POWER_LINE.format(pid=1, vm=1, cmd="", value=HUGE).encode()),
    "scaph-1e308": (METRICS, POWER_LINE.format(pid=1, vm=1, cmd="", value="1e308").encode()),
    "scaph-inf": (METRICS, b"scaph_host_power_microwatts +Inf\n"),
    "scaph-listed-twice-huge": (
        METRICS,
        (
            POWER_LINE.format(pid=1, vm=1, cmd="", value=MAX_POWER_UW)
            + POWER_LINE.format(pid=2, vm=1, cmd="", value=MAX_POWER_UW)
        ).encode(),
    ),
}


async def test_every_hostile_agent_is_its_own_hosts_bad_reply_and_the_others_are_read():
    names = list(HOSTILE)
    addresses = [f"{NET}.{i + 1}" for i in range(len(names) + 1)]
    port = free_port(addresses[0])
    agents = [
        HttpAgent(addr, port, {HOSTILE[name][0]: lambda h, b=HOSTILE[name][1]: send(h, b)})
        for addr, name in zip(addresses, names, strict=False)
    ]
    good = addresses[-1]
    agents.append(HttpAgent(good, port, {VMS: lambda h: send(h, agent_json({3: (9, 10)}))}))
    try:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(
                *(
                    fetch_host(session, Target(i, a), port, timeout=20, limit=MAX_AGENT_REPLY)
                    for i, a in enumerate(addresses)
                ),
                return_exceptions=True,
            )
    finally:
        for agent in agents:
            agent.close()
    *hostile, healthy = results
    reasons = {name: getattr(r, "reason", repr(r)) for name, r in zip(names, hostile, strict=True)}
    assert reasons == dict.fromkeys(names, "bad_reply")
    assert healthy.vms[3] == VmReading(9, 10, 10_003)


async def _loop_hold(path: str, body: bytes):
    """(the reading, the most CPU the loop spent between two turns of another task)."""
    address = f"{NET}.200"
    port = free_port(address)
    routes = {path: lambda h: send(h, body)}
    if path == METRICS:
        routes[VMS] = lambda h: h.send_error(404)
    agent = HttpAgent(address, port, routes)  # in its own thread: its CPU is not counted
    turns: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            turns.append(time.thread_time())
            await asyncio.sleep(0)

    try:
        async with aiohttp.ClientSession() as session:
            tick = asyncio.create_task(ticker())
            try:
                reading = await fetch_host(
                    session, Target(1, address), port, timeout=120, limit=MAX_AGENT_REPLY
                )
            finally:
                done = True
                await tick
    finally:
        agent.close()
    return reading, max(b - a for a, b in zip(turns, turns[1:], strict=False))


def _cpu(fn) -> float:
    started = time.thread_time()
    fn()
    return time.thread_time() - started


async def test_a_15_mb_json_reply_is_parsed_in_short_steps():
    body = largest_agent_json(15_000_000)
    reading, hold = await _loop_hold(VMS, body)
    assert len(reading.vms) > 90_000
    # Parsed at once (as json.loads did) the loop is held for the whole parse; in steps of
    # 64 KiB it is held a small fraction of it (CPU time of this thread: load does not count).
    whole = _cpu(lambda: json.loads(body))
    assert hold < whole / 3, (hold, whole)


async def test_a_15_mb_scaphandre_page_is_parsed_in_short_steps():
    vm_ids = list(range(1, 5001))
    page = scaphandre_page(vm_ids, 9 * 10**9, dict.fromkeys(vm_ids, 1_000_000)).encode()
    page += largest_scaphandre_page(15_000_000 - len(page), MAX_LINE, MAX_LABEL_VALUE)
    reading, hold = await _loop_hold(METRICS, page)
    assert len(page) > 14_000_000 and reading.vms[7].power_uw == 1_000_000 + 20_000
    assert _cpu(lambda: parse_scaphandre(page)) > 3 * hold, hold


async def test_a_label_at_the_limit_is_read_and_one_past_it_is_refused():
    address = f"{NET}.201"
    port = free_port(address)
    at_limit = "x" * (MAX_LABEL_VALUE - 2) + '"'
    pages = {
        "/metrics": POWER_LINE.format(pid=4, vm=4, cmd=escape_label(at_limit), value=5).encode()
    }
    agent = HttpAgent(
        address,
        port,
        {VMS: lambda h: h.send_error(404)} | {METRICS: lambda h: send(h, pages["/metrics"])},
    )
    try:
        async with aiohttp.ClientSession() as session:
            reading = await fetch_host(session, Target(1, address), port, timeout=10, limit=10**8)
            assert reading.vms[4].power_uw == 5
            pages["/metrics"] = POWER_LINE.format(
                pid=4, vm=4, cmd="y" * (MAX_LABEL_VALUE + 1), value=5
            ).encode()
            with pytest.raises(AgentError) as info:
                await fetch_host(session, Target(1, address), port, timeout=10, limit=10**8)
    finally:
        agent.close()
    assert info.value.reason == "bad_reply" and "label cmdline" in info.value.message


async def test_hosts_parse_in_turns_one_chunk_per_loop_turn_round_robin():
    loop = asyncio.get_running_loop()
    turn = 0
    running = True

    def count() -> None:  # runs once per loop turn
        nonlocal turn
        turn += 1
        if running:
            loop.call_soon(count)

    loop.call_soon(count)
    turns, steps = Turns(), []

    async def host(name: str, chunks: int) -> None:
        for _ in range(chunks):
            await turns.take()
            steps.append((turn, name))

    async def gives_up() -> None:
        await turns.take()
        steps.append((turn, "late"))

    late = asyncio.create_task(asyncio.wait_for(gives_up(), timeout=0))
    await asyncio.gather(host("a", 4), host("b", 4), host("c", 2), return_exceptions=False)
    running = False
    with pytest.raises(TimeoutError):
        await late
    assert [name for _, name in steps] == ["a", "b", "c"] * 2 + ["a", "b"] * 2
    at = [t for t, _ in steps]
    assert len(set(at)) == len(at)  # never two chunks in one loop turn
