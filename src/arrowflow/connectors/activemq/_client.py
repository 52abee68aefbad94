"""stomp.py plumbing of the ActiveMQ connector: a STOMP 1.2 connection with its listener, and the
vectorized ``SEND`` frames of a request (header escaping and ``content-length`` by pyarrow compute,
every frame in one contiguous buffer, one socket write)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import Secret, reveal
from ...errors import ConnectorError
from .._messaging import Inbox
from .config import StompConnectionOptions

__all__ = ["Connection", "Listener", "blob", "connect", "frames_of", "send_frames"]

log = logging.getLogger("arrowflow.activemq")


class Listener:
    """stomp.py listener (called from its receiver thread): buffers messages, tracks receipts/errors."""

    def __init__(self) -> None:
        self.messages: Inbox[Any] = Inbox()
        self.cond = self.messages.cond  # one condition: messages, receipts, errors, disconnects
        self.receipts: set[str] = set()
        self.errors: list[str] = []
        self.disconnected = False

    @property
    def broken(self) -> bool:
        """An ``ERROR`` frame arrived or the connection dropped (check with ``cond`` held)."""
        return self.disconnected or bool(self.errors)

    def on_message(self, frame: Any) -> None:
        self.messages.put(frame)

    def on_receipt(self, frame: Any) -> None:
        with self.cond:
            self.receipts.add(frame.headers.get("receipt-id", ""))
            self.cond.notify_all()

    def on_error(self, frame: Any) -> None:
        body = frame.body.decode("utf-8", "replace") if isinstance(frame.body, bytes) else str(frame.body)
        with self.cond:
            self.errors.append(f"{frame.headers.get('message', 'ERROR')}: {body[:300]}".strip())
            self.cond.notify_all()

    def on_disconnected(self) -> None:
        with self.cond:
            self.disconnected = True
            self.cond.notify_all()

    def wait_receipt(self, receipt: str, timeout: float) -> str | None:
        """None once ``receipt`` arrived; else why not (an ERROR frame, a disconnect, a timeout)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while receipt not in self.receipts:
                if self.errors:
                    return self.errors[0]
                if self.disconnected:
                    return "disconnected"
                left = deadline - time.monotonic()
                if left <= 0:
                    return f"no receipt within {timeout}s"
                self.cond.wait(left)
            self.receipts.discard(receipt)
            return None


class Connection:
    """One STOMP 1.2 connection (stomp.py ``Connection12``) with its listener."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | Secret | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> None:
        import stomp
        import stomp.exception

        self.listener = Listener()
        self.conn = stomp.Connection12(
            [(host, port)], auto_decode=False, reconnect_attempts_max=1, timeout=timeout
        )
        self.conn.set_listener("arrowflow", self.listener)
        try:
            self.conn.connect(username, reveal(password), wait=True, headers=dict(headers))
        except (stomp.exception.StompException, OSError) as exc:
            self.close()
            raise ConnectorError(
                f"activemq: connecting to {host}:{port} failed: {exc!r}", retryable=True
            ) from exc
        if self.listener.errors:
            err = self.listener.errors[0]
            self.close()
            raise ConnectorError(f"activemq: connection refused: {err}")

    @property
    def alive(self) -> bool:
        return not self.listener.disconnected and not self.listener.errors and self.conn.is_connected()

    def send_raw(self, data: bytes) -> None:
        # Frames built by _frames(); stomp.py's transport writes them under its socket lock.
        self.conn.transport.send(data)

    def close(self) -> None:
        try:
            if self.conn.is_connected():
                self.conn.disconnect()
        except Exception as exc:  # already gone
            log.debug("activemq: disconnect: %r", exc)


def _escape(values: pa.Array) -> pa.Array:
    """STOMP 1.2 header escaping (``\\\\``, ``\\n``, ``\\r``, ``\\c``), vectorized."""
    out = values
    for raw, esc in (("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), (":", "\\c")):
        out = pc.replace_substring(out, raw, esc)
    return out


def send_frames(
    n: int,
    static_headers: str,
    row_headers: Sequence[tuple[str, pa.Array]],
    destinations: pa.Array | None,
    bodies: pa.Array,
) -> pa.Array:
    """One ``SEND`` frame per row as a binary array (all of them in one contiguous data buffer)."""
    parts: list[Any] = [pa.scalar(b"SEND\n" + static_headers.encode(), pa.binary())]
    if destinations is not None:
        parts += [
            pa.scalar(b"destination:", pa.binary()),
            _escape(destinations).cast(pa.binary()),
            pa.scalar(b"\n", pa.binary()),
        ]
    for name, values in row_headers:
        line = pc.binary_join_element_wise(
            pa.scalar(_escape(pa.array([name]))[0].as_py() + ":"),
            _escape(values.cast(pa.string())),
            pa.scalar("\n"),
            pa.scalar(""),
        )
        parts.append(line.fill_null("").cast(pa.binary()))
    lengths = pc.binary_length(bodies).cast(pa.string()).cast(pa.binary())
    parts += [pa.scalar(b"content-length:", pa.binary()), lengths, pa.scalar(b"\n\n", pa.binary()), bodies]
    parts += [pa.scalar(b"\x00", pa.binary()), pa.scalar(b"", pa.binary())]
    frames = pc.binary_join_element_wise(*parts)
    assert len(frames) == n
    return frames


def blob(frames: pa.Array) -> bytes:
    """The bytes of every frame of a binary array, back to back (one copy)."""
    if len(frames) == 0:
        return b""
    bufs = frames.buffers()
    offsets = np.frombuffer(bufs[1], np.int32)[frames.offset : frames.offset + len(frames) + 1]
    return bufs[2].to_pybytes()[int(offsets[0]) : int(offsets[-1])]


def connect(
    options: StompConnectionOptions, timeout: float, extra_headers: Mapping[str, str] | None = None
) -> Connection:
    """A new connection with ``options``' address and login, and ``extra_headers`` on ``CONNECT``."""
    headers = {**(options.connect_headers or {}), **(extra_headers or {})}
    return Connection(options.host, options.port, options.username, options.password, headers, timeout)


def frames_of(entries: pa.StructArray, static_headers: str, header_columns: Sequence[str]) -> pa.Array:
    """The ``SEND`` frames of message entries (``payload``, ``routing`` = destination, ``headers``)."""
    names = {entries.type.field(i).name for i in range(entries.type.num_fields)}
    destinations = entries.field("routing") if "routing" in names else None
    row_headers = [(h, entries.field("headers").field(h)) for h in header_columns]
    return send_frames(len(entries), static_headers, row_headers, destinations, entries.field("payload"))
