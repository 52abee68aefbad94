"""What :class:`~.tcp.TcpPushSource` and :class:`~.http.HttpPushSource` share: the listener's buffer,
split, start/close, counters and the limits on clients (:class:`PushSource`).
"""

from __future__ import annotations

import socket
import ssl
import threading

from ...config import check_type
from ...source import Position, Source, Split, SplitReader
from ..queue.buffer import BufferReader, PushBuffer
from .config import PushListenerConfig


class PushSource(Source):
    """Shared parts: the buffer, the split, start/close, counters, the limits on clients (options:
    :class:`~.config.PushListenerConfig`)."""

    def __init__(self, listener: PushListenerConfig) -> None:
        check_type("listener", listener, PushListenerConfig)
        self.listener = listener
        # 0.1.0's attributes, read on the hot paths.
        self.host = listener.host
        self.port = listener.port
        self.header_timeout = listener.header_timeout
        self.body_timeout = listener.body_timeout
        self.max_connections = listener.max_connections
        self.tls_cert = listener.tls_cert
        self.tls_key = listener.tls_key
        self.buffer = PushBuffer(listener.capacity, "block")
        self._lock = threading.Lock()
        self._started = False
        self._counters: dict[str, int] = {}
        self._active = 0

    @property
    def tls(self) -> bool:
        """Whether the endpoint serves TLS."""
        return self.tls_cert is not None

    def _take_slot(self) -> bool:
        """Reserve one of ``max_connections`` (False, counted, when all are taken)."""
        with self._lock:
            if self._active >= self.max_connections:
                self._counters["connections_refused"] = self._counters.get("connections_refused", 0) + 1
                return False
            self._active += 1
            return True

    def _free_slot(self) -> None:
        with self._lock:
            self._active -= 1

    def _handshake(self, sock: socket.socket, ctx: ssl.SSLContext | None) -> socket.socket:
        """``sock`` with TLS set up (server side) when ``ctx`` is given, within ``header_timeout``.

        Runs on the connection's own thread, so a client that stalls the handshake holds only its
        own slot. Raises ``OSError`` (counted in ``tls_handshake_failures``) when it fails.
        """
        if ctx is None:
            return sock
        sock.settimeout(self.header_timeout)
        try:
            tls = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            tls.do_handshake()
        except (OSError, ValueError):
            self._count("tls_handshake_failures")
            sock.close()
            raise OSError("TLS handshake failed") from None
        return tls

    #: A stream: no split ends (a class constant, not a property).
    bounded = False

    def plan(self) -> list[Split]:
        return [Split(split_id="push", bounded=False)]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        self.start()
        return BufferReader(split, self.buffer, position)

    def start(self) -> tuple[str, int]:
        """Start listening (idempotent); returns the bound address."""
        with self._lock:
            if not self._started:
                self._listen()
                self._started = True
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        raise NotImplementedError

    def _listen(self) -> None:
        raise NotImplementedError

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def metrics(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._counters)
        out.update(self.buffer.metrics())
        return out
