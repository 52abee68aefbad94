"""Socket sink: :class:`SocketSink`.

:class:`SocketSink` writes each batch to ``host:port`` as NDJSON (the compiled
``arrowflow._ext.json_encode`` kernel), CSV (pyarrow; a header at the start of every connection), plain
``lines`` of one column, or with an :mod:`arrowflow.formats` format, one payload per line.
``write`` encodes the batch and sends it (blocking, ``send_timeout``); ``flush`` therefore has
nothing left to wait for once ``write`` returned ("acknowledged" means the kernel accepted every
byte: TCP gives no application-level ack). On a send failure the sink reconnects
(``reconnect_retries`` times, ``reconnect_delay`` apart) and resends the whole batch, so a peer may
see part of a batch twice (at-least-once). A batch that cannot be encoded, or not delivered after the
retries, goes to ``error_policy``.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

import pyarrow as pa

from ...config import REQUIRED, resolve_config
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...errors import ArrowflowError, ConnectorError, SerializationError
from ...sink import Sink
from ._lines import join_lines
from .config import SocketSinkConfig


class SocketSink(Sink):
    """Writes batches to a TCP peer; see the module docstring for the contract."""

    name = "socket"
    idempotent = False

    def __init__(
        self,
        host: str = REQUIRED,
        port: int = REQUIRED,
        *,
        format: Any = "ndjson",
        column: str | None = None,
        delimiter: bytes = b"\n",
        reconnect_retries: int = 3,
        reconnect_delay: float = 0.5,
        connect_timeout: float = 5.0,
        send_timeout: float = 30.0,
        error_policy: ErrorPolicyLike = "fail",
        config: SocketSinkConfig | None = None,
    ) -> None:
        # The options are this constructor's keywords of the same names, or config.
        self.config = resolve_config(SocketSinkConfig, config, locals())
        self.error_policy = ErrorPolicy.resolve(
            self.config.error_policy, name=f"socket sink {self.config.host}:{self.config.port}"
        )
        self._sock: socket.socket | None = None
        self._header_sent = False
        self._lock = threading.Lock()
        self._rows = 0
        self._bytes = 0
        self._reconnects = 0

    # -- encoding ------------------------------------------------------------------------------

    def _encode(self, batch: pa.RecordBatch) -> tuple[bytes, bytes]:
        """``(header, body)``: the header is sent once at the start of each connection (CSV only)."""
        fmt = self.config.format
        if fmt == "ndjson":
            from ..._ext import load

            out = load("json_encode").encode_ndjson(batch)
            return b"", out.to_pybytes() if isinstance(out, pa.Buffer) else bytes(out)
        if fmt == "csv":
            import pyarrow.csv as pacsv

            sink = pa.BufferOutputStream()
            pacsv.write_csv(batch, sink, write_options=pacsv.WriteOptions(include_header=False))
            head = pa.BufferOutputStream()
            pacsv.write_csv(batch.schema.empty_table(), head)
            return head.getvalue().to_pybytes(), sink.getvalue().to_pybytes()
        if fmt == "lines":
            column = self.config.column
            if column is None:
                if batch.num_columns != 1:
                    raise SerializationError(
                        f"format='lines' needs one column or column=...; the batch has {batch.num_columns}"
                    )
                array = batch.column(0)
            else:
                if column not in batch.schema.names:
                    raise SerializationError(f"format='lines': the batch has no column {column!r}")
                array = batch.column(column)
            if not (
                pa.types.is_string(array.type)
                or pa.types.is_large_string(array.type)
                or pa.types.is_binary(array.type)
                or pa.types.is_large_binary(array.type)
            ):
                array = array.cast(pa.string())
            return b"", join_lines(array, self.config.delimiter)
        from ...formats.base import encode_with_policy

        # Rows that fail to encode go to the policy one by one; the others are sent.
        payloads, _ = encode_with_policy(fmt, batch, self.error_policy)
        if isinstance(payloads, pa.ChunkedArray):
            payloads = payloads.combine_chunks()
        return b"", join_lines(payloads, self.config.delimiter)

    # -- sending -------------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(
            (self.config.host, self.config.port), timeout=self.config.connect_timeout
        )
        sock.settimeout(self.config.send_timeout)
        self._header_sent = False
        return sock

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _peer_closed(self) -> bool:
        """True if the peer already closed the connection (a FIN or RST is waiting).

        Sending into a connection the peer has closed "succeeds" once and loses the bytes, so the
        connection is checked before every batch, without blocking.
        """
        assert self._sock is not None
        readable, _, _ = select.select([self._sock], [], [], 0)
        if not readable:
            return False
        try:
            return self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def _send(self, header: bytes, body: bytes) -> None:
        attempt = 0
        while True:
            try:
                if self._sock is not None and self._peer_closed():
                    self._drop()
                    self._reconnects += 1
                if self._sock is None:
                    self._sock = self._connect()
                if header and not self._header_sent:
                    self._sock.sendall(header)
                    self._header_sent = True
                self._sock.sendall(body)
                return
            except OSError as exc:
                self._drop()
                attempt += 1
                if attempt > self.config.reconnect_retries:
                    raise ConnectorError(
                        f"socket sink {self.config.host}:{self.config.port}: send failed after "
                        f"{self.config.reconnect_retries} retries: {exc}",
                        retryable=True,
                    ) from exc
                self._reconnects += 1
                time.sleep(self.config.reconnect_delay)

    # -- the contract --------------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        """Encode and send ``batch``; blocks until the kernel accepted every byte (or the policy ran)."""
        with self._lock:
            if self._closed:
                raise ArrowflowError("SocketSink: write() after close()")
            if batch.num_rows == 0:
                return
            try:
                header, body = self._encode(batch)
            except (ValueError, TypeError, KeyError, pa.ArrowNotImplementedError) as exc:
                # The kernels raise ValueError (NaN, oversize), TypeError (unsupported type) and
                # KeyError; pyarrow's ArrowInvalid/ArrowTypeError derive from those too.
                self.error_policy.handle(
                    batch,
                    f"cannot encode: {exc}",
                    exception=SerializationError(f"socket sink: cannot encode: {exc}"),
                )
                return
            try:
                self._send(header, body)
            except ConnectorError as exc:
                self.error_policy.handle(batch, str(exc), exception=exc)
                return
            self._rows += batch.num_rows
            self._bytes += len(header) + len(body)

    def flush(self) -> None:
        """Nothing is buffered once ``write`` returned; flushes the dead-letter sink, if any."""
        self.error_policy.flush()

    def _close(self) -> None:
        with self._lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            self._drop()

    def metrics(self) -> dict[str, int]:
        return {
            "rows": self._rows,
            "bytes": self._bytes,
            "reconnects": self._reconnects,
            "errors": self.error_policy.handled,
        }
