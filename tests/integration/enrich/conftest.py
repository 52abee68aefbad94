"""A real aiohttp HTTP service on 127.0.0.1 (ephemeral port), run in a background thread.

Endpoints (all answer JSON):

* ``GET /fast?x=N``            -> ``{"y": 2N}`` immediately
* ``GET /slow?x=N&delay=S``    -> ``{"y": 2N}`` after sleeping ``S`` seconds
* ``GET /error``               -> HTTP 500
* ``GET /flaky?id=K&fails=F``  -> HTTP 500 for the first ``F`` calls with that id, then ``{"y": K}``
* ``POST /batch`` (JSON list)  -> the list with every element doubled

The service counts requests, attempts per flaky id and the peak number of concurrent requests.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web


@dataclass
class ServiceStats:
    requests: int = 0
    current: int = 0
    peak: int = 0
    attempts: Counter = field(default_factory=Counter)

    def reset(self) -> None:
        self.requests = self.current = self.peak = 0
        self.attempts.clear()


@dataclass
class Service:
    url: str
    stats: ServiceStats


def _app(stats: ServiceStats) -> web.Application:
    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        stats.requests += 1
        stats.current += 1
        stats.peak = max(stats.peak, stats.current)
        try:
            return await handler(request)
        finally:
            stats.current -= 1

    async def fast(request: web.Request) -> web.Response:
        return web.json_response({"y": 2 * int(request.query["x"])})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "0.05")))
        return web.json_response({"y": 2 * int(request.query["x"])})

    async def error(request: web.Request) -> web.Response:
        return web.json_response({"error": "boom"}, status=500)

    async def flaky(request: web.Request) -> web.Response:
        key = request.query["id"]
        stats.attempts[key] += 1
        if stats.attempts[key] <= int(request.query["fails"]):
            return web.json_response({"error": "try again"}, status=500)
        return web.json_response({"y": int(key)})

    async def batch(request: web.Request) -> web.Response:
        values = await request.json()
        return web.json_response([2 * v for v in values])

    app = web.Application(middlewares=[count])
    app.router.add_get("/fast", fast)
    app.router.add_get("/slow", slow)
    app.router.add_get("/error", error)
    app.router.add_get("/flaky", flaky)
    app.router.add_post("/batch", batch)
    return app


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    stats = ServiceStats()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        runner = web.AppRunner(_app(stats), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "the test HTTP service did not start"
    try:
        yield Service(url=f"http://127.0.0.1:{holder['port']}", stats=stats)
    finally:
        runner = holder["runner"]
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def svc(service: Service) -> Service:
    service.stats.reset()
    return service
