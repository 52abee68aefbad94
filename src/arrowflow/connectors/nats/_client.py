"""The nats-py plumbing both NATS JetStream connectors share: a private asyncio loop in a daemon
thread (nats-py is asyncio-only), the connection with its event counters, and the ``url`` check.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from ...config import reveal_secrets
from ...errors import ConfigurationError

log = logging.getLogger("arrowflow.nats")

T = TypeVar("T")


class LoopThread:
    """A private asyncio loop in a daemon thread; :meth:`run` blocks the caller until a coroutine ends."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


async def connect(
    url: str | Sequence[str],
    options: Mapping[str, Any],
    what: str,
    events: dict[str, int] | None = None,
    on_reconnected: Callable[[], None] | None = None,
) -> Any:
    """A connected nats-py client; ``events`` (when given) counts ``disconnects`` and ``reconnects``;
    ``on_reconnected`` runs after each reconnect (before a user's own ``reconnected_cb``)."""
    import nats

    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s", what, exc)

    async def on_disconnect() -> None:
        log.info("nats %s: disconnected (closed, or reconnecting)", what)
        if events is not None:
            events["disconnects"] += 1

    async def on_reconnect() -> None:
        log.info("nats %s: reconnected", what)
        if events is not None:
            events["reconnects"] += 1

    opts: dict[str, Any] = {
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
    }
    opts.update(reveal_secrets(options))
    if on_reconnected is not None:
        user_cb = opts.get("reconnected_cb")

        async def reconnected() -> None:
            on_reconnected()
            if user_cb is not None:
                await user_cb()

        opts["reconnected_cb"] = reconnected
    servers = [url] if isinstance(url, str) else list(url)
    return await nats.connect(servers, **opts)


def check_url(url: str | Sequence[str]) -> None:
    urls = [url] if isinstance(url, str) else list(url)
    if not urls or not all(isinstance(u, str) and "://" in u for u in urls):
        raise ConfigurationError(
            f"url must be nats://host:port (or a list of them), got {url!r}", option="url"
        )
