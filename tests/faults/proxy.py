"""A fault-injecting TCP proxy for tests: put it between a client and a real server, then break the
network on purpose.

    with FaultProxy(("127.0.0.1", redis_port)) as proxy:
        sink = RedisSink(f"redis://127.0.0.1:{proxy.port}/0", ...)
        proxy.set(latency=0.05)               # every chunk waits 50 ms, each direction
        proxy.set(bandwidth=64_000)           # bytes per second, per direction and connection
        proxy.reset_after(4096)               # the next connection's 4097th upstream byte: RST
        proxy.blackhole()                     # forward nothing, close nothing (no FIN, no RST)
        proxy.stall(2.0)                      # forward nothing for 2 s, then resume
        proxy.reset_all()                     # RST every open connection now
        proxy.heal()                          # back to a transparent proxy

Faults apply to open and new connections alike and can change at any time. What a client sees:

* latency / bandwidth: slower replies, never an error unless its own timeouts are shorter.
* ``reset_after(n, direction)``: the connection that forwards its ``n``-th byte in ``direction``
  (``"up"``: client to server, ``"down"``, or ``"both"``) forwards exactly ``n`` bytes, then both
  of its sockets are closed with ``SO_LINGER`` 0: the client gets a RST in the middle of a request
  (or of a reply). ``times`` connections are reset (default 1), the rest pass.
* ``blackhole()``: the proxy stops reading both sockets and keeps them open. The client's writes
  still succeed (the proxy's kernel ACKs them until its buffers fill) and no reply, FIN or RST ever
  comes: only an application timeout notices. This is a hung peer, or a middlebox that keeps
  accepting; a real packet-dropping black hole also stops the ACKs (TCP keepalive and
  ``TCP_USER_TIMEOUT`` notice that one; no userspace proxy can produce it).
* ``stall(s)``: a black hole for ``s`` seconds, then everything buffered flows on.
* ``refuse()``: new connections are accepted and closed at once (a server that is down).

``stats()`` counts connections, bytes each way and resets. The proxy listens on ``127.0.0.1``, on
``listen_port`` (0 = any free port). It speaks no protocol, so it fronts any TCP server: Redis,
PostgreSQL, NATS here; Kafka needs one proxy per broker and the broker's advertised listener set
to the proxy's port (clients reconnect to advertised addresses, which would bypass the proxy);
RabbitMQ (AMQP), OpenSearch (HTTP) and the AWS endpoints (HTTP) plug in as they are.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultProxy"]

_CHUNK = 65536
_POLL = 0.05


@dataclass
class _Faults:
    latency: float = 0.0
    bandwidth: float | None = None
    blackhole: bool = False
    stall_until: float = 0.0
    refuse: bool = False
    reset_after: int | None = None
    reset_direction: str = "up"
    reset_times: int = 0


@dataclass
class _Conn:
    client: socket.socket
    server: socket.socket
    forwarded: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    reset_at: dict[str, int | None] = field(default_factory=lambda: {"up": None, "down": None})
    closed: bool = False
    ended: int = 0  # directions that saw an orderly close


class FaultProxy:
    """A TCP proxy to ``upstream`` whose network faults are switched at run time (see the module
    docstring). Thread-safe; a context manager (``close()`` on exit)."""

    def __init__(self, upstream: tuple[str, int], *, listen_port: int = 0) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()
        self._faults = _Faults()
        self._conns: list[_Conn] = []
        self._stats = {"connections": 0, "refused": 0, "resets": 0, "bytes_up": 0, "bytes_down": 0}
        self._listener = socket.create_server(("127.0.0.1", listen_port), backlog=128)
        self._closing = False
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._thread.start()

    # -- control ----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def set(self, *, latency: float | None = None, bandwidth: float | None = None) -> None:
        """Add ``latency`` seconds to every forwarded chunk; cap each direction of each connection at
        ``bandwidth`` bytes per second (``0``/``None`` leave a value as it is; see :meth:`heal`)."""
        with self._lock:
            if latency is not None:
                self._faults.latency = float(latency)
            if bandwidth is not None:
                self._faults.bandwidth = float(bandwidth) if bandwidth > 0 else None

    def reset_after(self, nbytes: int, *, direction: str = "up", times: int = 1) -> None:
        """Reset (RST) the next ``times`` connections once ``nbytes`` bytes went ``direction``."""
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be up, down or both, got {direction!r}")
        with self._lock:
            self._faults.reset_after = nbytes
            self._faults.reset_direction = direction
            self._faults.reset_times = times
            # Connections already open count their bytes from now.
            for c in self._conns:
                self._arm(c)

    def blackhole(self) -> None:
        """Stop forwarding in both directions, keep every socket open (no FIN, no RST)."""
        with self._lock:
            self._faults.blackhole = True

    def stall(self, seconds: float) -> None:
        """Forward nothing for ``seconds``, then resume."""
        with self._lock:
            self._faults.stall_until = time.monotonic() + seconds

    def refuse(self, on: bool = True) -> None:
        """Close new connections as soon as they are accepted (open ones are left alone)."""
        with self._lock:
            self._faults.refuse = on

    def reset_all(self) -> None:
        """Reset (RST) every open connection now."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            self._reset(c)

    def heal(self) -> None:
        """No fault any more: a transparent proxy (what was buffered during a black hole flows on)."""
        with self._lock:
            self._faults = _Faults()
            for c in self._conns:
                c.reset_at = {"up": None, "down": None}

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._stats)
            out["open"] = len(self._conns)
        return out

    def close(self) -> None:
        """Stop listening and close every connection (with FIN)."""
        self._closing = True
        try:
            # shutdown() wakes the accept() of the other thread; close() alone would leave the port
            # listening until that accept() returned (a fixed listen_port could not be bound again).
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            self._close(c)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- forwarding -------------------------------------------------------------------------------

    def _arm(self, c: _Conn) -> None:
        """Set the reset thresholds of ``c`` from the current fault (lock held)."""
        f = self._faults
        if f.reset_after is None or f.reset_times <= 0:
            return
        f.reset_times -= 1
        dirs = ("up", "down") if f.reset_direction == "both" else (f.reset_direction,)
        for d in dirs:
            c.reset_at[d] = c.forwarded[d] + f.reset_after

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refuse = self._faults.refuse
                if refuse:
                    self._stats["refused"] += 1
            if refuse:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                with self._lock:
                    self._stats["refused"] += 1
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, server)
            with self._lock:
                self._conns.append(conn)
                self._stats["connections"] += 1
                self._arm(conn)
            for direction, src, dst in (("up", client, server), ("down", server, client)):
                threading.Thread(
                    target=self._pump,
                    args=(conn, direction, src, dst),
                    name=f"fault-proxy-{direction}",
                    daemon=True,
                ).start()

    def _blocked(self) -> bool:
        f = self._faults
        return f.blackhole or time.monotonic() < f.stall_until

    def _pump(self, c: _Conn, direction: str, src: socket.socket, dst: socket.socket) -> None:
        # Sockets stay blocking (one socket's timeout would also apply to the other pump's sends,
        # which may wait as long as the receiver is slow): readiness is polled with select().
        try:
            while not c.closed:
                with self._lock:
                    blocked = self._blocked()
                if blocked:
                    # Read nothing: the bytes wait in the kernel (the peer's writes still succeed
                    # until the buffers fill), and nothing is closed.
                    time.sleep(_POLL)
                    continue
                if not select.select([src], [], [], _POLL)[0]:
                    continue
                data = src.recv(_CHUNK)
                # A fault set while this thread waited in recv() holds what it just read.
                while data and not c.closed:
                    with self._lock:
                        blocked = self._blocked()
                    if not blocked:
                        break
                    time.sleep(_POLL)
                if not data:
                    # An orderly close from one side: pass the FIN on, keep the other way open
                    # until it closes too.
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    with self._lock:
                        c.ended += 1
                        both = c.ended == 2
                    if both:
                        self._close(c)
                    return
                self._forward(c, direction, data, dst)
        except OSError:
            self._close(c)

    def _forward(self, c: _Conn, direction: str, data: bytes, dst: socket.socket) -> None:
        with self._lock:
            f = self._faults
            latency, bandwidth = f.latency, f.bandwidth
            limit = c.reset_at[direction]
        if limit is not None and c.forwarded[direction] + len(data) >= limit:
            cut = max(0, limit - c.forwarded[direction])
            if cut:
                dst.sendall(data[:cut])
                self._count(c, direction, cut)
            self._reset(c)
            return
        if latency:
            time.sleep(latency)
        if bandwidth:
            step = max(1, int(bandwidth * _POLL))
            for k in range(0, len(data), step):
                piece = data[k : k + step]
                dst.sendall(piece)
                self._count(c, direction, len(piece))
                time.sleep(len(piece) / bandwidth)
            return
        dst.sendall(data)
        self._count(c, direction, len(data))

    def _count(self, c: _Conn, direction: str, n: int) -> None:
        with self._lock:
            c.forwarded[direction] += n
            self._stats["bytes_" + direction] += n

    def _reset(self, c: _Conn) -> None:
        """Close both sockets with SO_LINGER 0: each peer gets a RST, not a FIN."""
        with self._lock:
            if c.closed:
                return
            c.closed = True
            self._stats["resets"] += 1
            if c in self._conns:
                self._conns.remove(c)
        for s in (c.client, c.server):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            s.close()

    def _close(self, c: _Conn) -> None:
        with self._lock:
            if c.closed:
                return
            c.closed = True
            if c in self._conns:
                self._conns.remove(c)
        for s in (c.client, c.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
