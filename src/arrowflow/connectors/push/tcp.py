"""The TCP push source: :class:`TcpPushSource` (see :mod:`arrowflow.connectors.push`)."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time

import numpy as np
import pyarrow as pa

from ...config import resolve_config
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...errors import ArrowflowError, SerializationError
from ...formats import Raw
from ...formats.base import Format, decode_with_policy
from ._server import PushSource
from .config import TcpPushSourceConfig, server_tls_context

_NL = 10


class TcpPushSource(PushSource):
    """Listens for TCP clients that push frames. See the module docstring."""

    name = "tcp-push"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        framing: str = "newline",
        format: Format | None = None,
        max_frame_bytes: int = 1 << 20,
        capacity: int = 100_000,
        error_policy: ErrorPolicyLike = "skip",
        header_timeout: float | None = 300.0,
        body_timeout: float | None = 30.0,
        max_connections: int = 256,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        config: TcpPushSourceConfig | None = None,
    ) -> None:
        self.config = c = resolve_config(TcpPushSourceConfig, config, locals())
        super().__init__(c)
        self.framing = c.framing
        self.format: Format = c.format if c.format is not None else Raw()
        self.max_frame_bytes = c.max_frame_bytes
        # Bad frames of one client must not stop the others: "skip" (counted) by default.
        self.error_policy = ErrorPolicy.resolve(error_policy, name=self.name)
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._stopping = False

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise ArrowflowError("TcpPushSource is not started")
        host, port = self._sock.getsockname()[:2]
        return host, port

    def _listen(self) -> None:
        ctx = server_tls_context(self.tls_cert, self.tls_key)
        sock = socket.create_server((self.host, self.port), backlog=128)
        self._sock = sock
        threading.Thread(target=self._accept_loop, args=(ctx,), name="tcp-push-accept", daemon=True).start()

    def _accept_loop(self, ctx: ssl.SSLContext | None) -> None:
        assert self._sock is not None
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if not self._take_slot():
                conn.close()  # over max_connections: refused at once
                continue
            with self._lock:
                self._conns.add(conn)
                self._counters["connections"] = self._counters.get("connections", 0) + 1
            threading.Thread(target=self._serve, args=(conn, ctx), name="tcp-push-conn", daemon=True).start()

    def _serve(self, raw: socket.socket, ctx: ssl.SSLContext | None) -> None:
        pending = b""
        conn = raw
        try:
            conn = self._handshake(raw, ctx)
            if conn is not raw:
                with self._lock:
                    self._conns.discard(raw)
                    self._conns.add(conn)
            # Deadlines: idle (no partial frame) since `idle_since`, a partial frame since `frame_since`.
            idle_since = frame_since = time.monotonic()
            while not self._stopping:
                limit = self.body_timeout if pending else self.header_timeout
                if limit is not None:
                    left = (frame_since if pending else idle_since) + limit - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    conn.settimeout(left)
                else:
                    conn.settimeout(None)
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                data = pending + chunk
                had_partial = bool(pending)
                frames, pending = (
                    self._split_lines(data) if self.framing == "newline" else self._split_lengths(data)
                )
                delivered = frames is not None and len(frames) > 0
                if delivered:
                    self._deliver(frames)
                if len(pending) > self.max_frame_bytes + 4:
                    self._count("connections_dropped")
                    return
                now = time.monotonic()
                # A partial frame that began in this chunk starts its clock now (after _deliver:
                # time blocked on a full buffer is the source's backpressure, not the client's).
                if pending and (delivered or not had_partial):
                    frame_since = now
                idle_since = now
        except TimeoutError:
            self._count("connections_timed_out")
        except OSError:
            pass
        except ArrowflowError:
            self._count("connections_dropped")  # decoding failed under "fail", or closed
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._conns.discard(raw)
            conn.close()
            self._free_slot()

    def _split_lines(self, data: bytes) -> tuple[pa.Array | None, bytes]:
        """Complete lines of ``data`` as a binary array (newlines removed), vectorized; the rest."""
        arr = np.frombuffer(data, dtype=np.uint8)
        nl = np.flatnonzero(arr == _NL)
        if not len(nl):
            return None, data
        last = int(nl[-1])
        head = arr[: last + 1]
        body = head[head != _NL]
        ends = nl - np.arange(len(nl))  # each newline's position once earlier newlines are gone
        offsets = np.concatenate((np.zeros(1, dtype=np.int64), ends)).astype(np.int32)
        lengths = np.diff(offsets)
        if (lengths > self.max_frame_bytes).any():
            self._count("frames_too_large", int((lengths > self.max_frame_bytes).sum()))
            keep = np.flatnonzero(lengths <= self.max_frame_bytes)
            frames = pa.Array.from_buffers(
                pa.binary(), len(nl), [None, pa.py_buffer(offsets), pa.py_buffer(body.tobytes())]
            ).take(pa.array(keep))
            return frames, data[last + 1 :]
        frames = pa.Array.from_buffers(
            pa.binary(), len(nl), [None, pa.py_buffer(offsets), pa.py_buffer(body.tobytes())]
        )
        return frames, data[last + 1 :]

    def _split_lengths(self, data: bytes) -> tuple[pa.Array | None, bytes]:
        """Complete length-prefixed frames; the loop reads only the 4-byte headers."""
        starts: list[int] = []
        pos = 0
        n = len(data)
        while pos + 4 <= n:
            (size,) = struct.unpack_from(">I", data, pos)
            if size > self.max_frame_bytes:
                self._count("frames_too_large")
                return (self._frames(data, starts) if starts else None), b"\0" * (self.max_frame_bytes + 5)
            if pos + 4 + size > n:
                break
            starts.append(pos)
            pos += 4 + size
        if not starts:
            return None, data
        return self._frames(data, starts), data[pos:]

    @staticmethod
    def _frames(data: bytes, starts: list[int]) -> pa.Array:
        arr = np.frombuffer(data, dtype=np.uint8)
        st = np.asarray(starts, dtype=np.int64)
        sizes = np.array([struct.unpack_from(">I", data, s)[0] for s in starts], dtype=np.int64)
        # Gather the payload bytes (headers skipped) with one fancy index.
        idx = np.repeat(st + 4 - np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes) + np.arange(
            int(sizes.sum())
        )
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int32)
        return pa.Array.from_buffers(
            pa.binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(arr[idx].tobytes())]
        )

    def _deliver(self, frames: pa.Array) -> None:
        try:
            batch, _ = decode_with_policy(self.format, frames, self.error_policy)
        except SerializationError:
            self._count("frames_failed", len(frames))
            raise
        self._count("frames", len(frames))
        if batch.num_rows:
            self.buffer.offer(batch)  # blocks: TCP flow control pushes back on the client

    def close(self) -> None:
        """Stop listening, drop the connections, end the stream (buffered rows are still read)."""
        self._stopping = True
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.buffer.close()
