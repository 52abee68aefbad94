"""The pull connection of :class:`~arrowflow.connectors.nats.source.NatsJetStreamSource`: its own
plain NATS socket on which it asks a pull consumer for messages and reads them as raw frames.

nats-py's ``fetch`` builds a ``Msg`` per message in its Python protocol parser and awaits each one
with a timer (``asyncio.wait_for``): ~30 us of CPU per message. Here the bytes of many messages are
received into one buffer and the compiled kernel :mod:`arrowflow._ext.nats_frames` walks the frames
and copies payloads, subjects and ack-subject numbers straight into Arrow arrays.

Protocol (NATS client protocol, JetStream pull requests):

* ``CONNECT`` (headers on, verbose off) and a ``PING``/``PONG`` round trip, then one ``SUB`` of
  ``<inbox>.*``. A pull request is ``PUB $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable> <inbox>.<n>``
  with ``{"batch": k}`` and either ``"no_wait": true`` or ``"expires"`` (ns). Each request has its own
  reply subject, so a status message (404 no messages, 408 expired, 409 ...) names the request it ends.
* At most one request is open at a time: every data message then belongs to it, and it ends when
  ``k`` messages arrived (the server sends no status then) or at its status. A call first drains what
  an earlier request left in the buffer, then asks with ``no_wait`` (what is there now), and only if
  that finds nothing, with ``expires`` (wait up to the call's timeout). Once it holds messages and no
  more bytes are waiting it returns; an open request's later messages stay in the buffer for the next
  call. Nothing received is dropped while the socket lives.
* The server's ``PING`` is answered with ``PONG`` when a call reads it; a connection idle for several
  minutes (no call reading it) may be closed by the server as stale. Any socket error, ``-ERR`` or
  malformed frame raises :class:`PullError`: the caller then discards this connection (and must not
  acknowledge past what it returned: the messages the lost connection carried were never seen).

Only plain connections without credentials are handled here (:func:`supported`): TLS, user/password,
tokens, nkeys and credentials files are what nats-py implements, and the source uses nats-py's fetch
for them.
"""

from __future__ import annotations

import json
import select
import time
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from ..._ext import load
from .._messaging.sockets import open_socket

__all__ = ["PullError", "PullSocket", "Pulled", "supported"]

#: nats-py connect options that only shape nats-py's own connection (reconnects, callbacks, buffers);
#: any other option (TLS, credentials, nkeys, ...) makes the source read through nats-py.
_NEUTRAL_OPTIONS = frozenset(
    {
        "name", "connect_timeout", "reconnect_time_wait", "max_reconnect_attempts", "allow_reconnect",
        "ping_interval", "max_outstanding_pings", "dont_randomize", "flusher_queue_size", "pending_size",
        "flush_timeout", "drain_timeout", "error_cb", "disconnected_cb", "closed_cb", "reconnected_cb",
        "discovered_server_cb", "verbose", "pedantic", "no_echo", "inbox_prefix",
    }
)  # fmt: skip

#: Receive size per ``recv`` call.
_RECV = 1 << 20
#: A pull request with less than this left before the caller's deadline is not sent.
_MIN_EXPIRES_S = 0.005


class PullError(Exception):
    """The pull connection failed (socket error, ``-ERR``, a malformed frame): discard it."""


def supported(options: Mapping[str, Any], url: Any) -> bool:
    """Whether a pull socket can connect like nats-py's connection ``url`` (a parsed URL) with
    ``options``: plain ``nats://`` without credentials."""
    if any(k not in _NEUTRAL_OPTIONS for k in options):
        return False
    return (
        url is not None
        and getattr(url, "scheme", "") == "nats"
        and not getattr(url, "username", None)
        and not getattr(url, "password", None)
    )


class Pulled(NamedTuple):
    """What one :meth:`PullSocket.fetch` returned, one entry per message."""

    payloads: pa.Array
    subjects: pa.Array
    #: The reply (ack) subjects.
    replies: pa.Array
    #: Per message: delivered count, stream sequence, consumer sequence, timestamp ns, pending.
    numbers: np.ndarray


class PullSocket:
    """One plain NATS connection that pulls messages of ``stream``/``durable`` (see the module docstring)."""

    def __init__(self, host: str, port: int, stream: str, durable: str, *, timeout: float, name: str) -> None:
        self._kernel = load("nats_frames")
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}".encode()
        self._inbox = f"_AFPULL.{uuid.uuid4().hex}".encode()
        self._buf = bytearray()
        self._requests = 0
        #: The open request: its reply token and how many messages it may still deliver.
        self._open: bytes | None = None
        self._open_left = 0
        self._open_waits = False
        self.closed = False
        self._sock = open_socket(host, port, timeout, PullError)
        try:
            deadline = time.monotonic() + timeout
            info = self._line(deadline)
            if not info.startswith(b"INFO "):
                raise PullError(f"expected INFO from the server, got {info[:80]!r}")
            server = json.loads(info[5:])
            if server.get("tls_required") or server.get("auth_required"):
                raise PullError("the server requires TLS or authentication")
            connect = {
                "verbose": False,
                "pedantic": False,
                "headers": True,
                "no_responders": True,
                "protocol": 1,
                "lang": "python-arrowflow",
                "version": "1",
                "name": name,
            }
            self._send(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
            while True:
                line = self._line(deadline)
                if line == b"PONG":
                    break
                if line.startswith(b"-ERR"):
                    raise PullError(f"server refused the connection: {line.decode(errors='replace')}")
            self._send(b"SUB " + self._inbox + b".* 1\r\n")
        except BaseException:
            self.close()
            raise

    # -- I/O -----------------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise PullError(f"send failed: {exc}") from exc

    def _recv(self, timeout: float) -> bool:
        """Receive what arrives within ``timeout`` into the buffer; ``False`` when nothing did."""
        try:
            ready, _, _ = select.select([self._sock], [], [], max(timeout, 0.0))
            if not ready:
                return False
            data = self._sock.recv(_RECV)
        except OSError as exc:
            raise PullError(f"receive failed: {exc}") from exc
        if not data:
            raise PullError("the server closed the connection")
        self._buf += data
        return True

    def _line(self, deadline: float) -> bytes:
        """The next protocol line (handshake only: nothing else is buffered then)."""
        while b"\r\n" not in self._buf:
            if not self._recv(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise PullError("the server did not answer in time")
        end = self._buf.index(b"\r\n")
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _request(self, batch: int, *, expires: float | None) -> None:
        self._requests += 1
        token = str(self._requests).encode()
        body = {"batch": batch}
        if expires is None:
            body["no_wait"] = True
        else:
            body["expires"] = int(expires * 1e9)
        payload = json.dumps(body).encode()
        self._send(
            b"PUB %s %s.%s %d\r\n%s\r\n" % (self._next_subject, self._inbox, token, len(payload), payload)
        )
        self._open, self._open_left, self._open_waits = token, batch, expires is not None

    # -- fetch ---------------------------------------------------------------------------------------

    def fetch(self, n: int, timeout: float) -> Pulled | None:
        """Up to ``n`` messages within ``timeout`` seconds (``None`` when none came)."""
        if self.closed:
            raise PullError("the pull connection is closed")
        k = self._kernel
        deadline = time.monotonic() + timeout
        frames: list[np.ndarray] = []
        have = 0
        pos = 0
        asked = lingered = False  # this call sent its no_wait / its waiting request
        while True:
            got, pos, stop, ctl_end, status, subject = k.scan(self._buf, pos, len(self._buf), n - have)
            if len(got):
                frames.append(got)
                have += len(got)
                if self._open is not None:
                    self._open_left -= len(got)
                    if self._open_left <= 0:
                        self._open = None  # fulfilled: the server sends no status for it
            if stop == k.STATUS:
                if status == 503:  # no responders: the consumer does not exist (any more)
                    raise PullError("no consumer answers the pull request (503 no responders)")
                if subject.rsplit(b".", 1)[-1] == self._open:
                    self._open = None  # 404 (none now), 408 (expired), 409 (...): this request is over
                pos = ctl_end
                continue
            if stop == k.CONTROL and ctl_end >= 0:
                self._control(bytes(self._buf[pos:ctl_end]))
                pos = ctl_end
                continue
            if stop == k.BAD:
                raise PullError(f"malformed frame from the server: {bytes(self._buf[pos : pos + 80])!r}")
            if have >= n:
                break
            # Everything buffered is used: ask, wait or return.
            remaining = deadline - time.monotonic()
            if self._open is None:
                if have and asked:
                    break  # the server sent what it has now
                if not asked:
                    self._request(n - have, expires=None)
                    asked = True
                elif not lingered and remaining > _MIN_EXPIRES_S:
                    self._request(n - have, expires=remaining - _MIN_EXPIRES_S / 2)
                    lingered = True
                else:
                    break
                continue
            if have and self._open_waits:
                # Messages in hand: return unless more bytes are already waiting (the open request
                # keeps going; what it delivers later is read by the next call).
                if not self._recv(0):
                    break
                continue
            if remaining <= 0:
                break
            self._recv(remaining)
        if not have:
            del self._buf[:pos]
            return None
        pulled = Pulled(*k.gather(self._buf, frames[0] if len(frames) == 1 else np.concatenate(frames)))
        del self._buf[:pos]
        return pulled

    def _control(self, line: bytes) -> None:
        if line.startswith(b"PING"):
            self._send(b"PONG\r\n")
        elif line.startswith(b"-ERR"):
            raise PullError(f"server error: {line.strip().decode(errors='replace')}")
        elif not line.startswith((b"PONG", b"+OK", b"INFO")):
            raise PullError(f"unexpected line from the server: {line[:80]!r}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._sock.close()
        except (OSError, AttributeError):
            pass
