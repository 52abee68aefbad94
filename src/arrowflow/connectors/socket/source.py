"""Socket source: :class:`SocketSource`.

:class:`SocketSource` connects to ``host:port`` and turns the byte stream into batches with one
string column (``column``, default ``"line"``), one row per ``delimiter``-terminated line.

* Reading never blocks past ``read_batch``'s ``timeout``: connecting and receiving are non-blocking
  (``select``), and a batch is returned as soon as ``max_rows`` lines are ready, or ``linger`` seconds
  after the first line of the batch became ready, whichever comes first.
* Line splitting is vectorized: delimiters are found with numpy over the received bytes, and the
  string array is built from one data buffer (delimiters removed with a boolean mask) plus offsets
  computed with numpy; no Python object is built per line. UTF-8 is validated per batch by Arrow
  (skipped entirely when every byte is ASCII); only when validation fails are the offending lines
  located, one by one, and handed to ``error_policy`` together with lines longer than
  ``max_line_bytes``. A line still growing past ``max_line_bytes`` without a delimiter is handed to
  the policy (its first ``max_line_bytes`` bytes) and the rest of it is discarded as it arrives, so
  memory stays bounded. Dead-letter rows carry the raw line in a binary ``payload`` column.
* ``encoding=None`` yields a binary column and skips validation. With ``format`` set, each line is a
  payload decoded by that :mod:`arrowflow.formats` format (``decode_with_policy``); undecodable lines
  follow ``error_policy``.
* When the peer closes, a trailing line without a delimiter is delivered as a last line. With
  ``bounded=True`` the split then finishes; otherwise the reader reconnects after
  ``reconnect_delay``. Failed connection attempts are retried ``reconnect_retries`` times in a row
  (``reconnect_delay`` apart) before :class:`~arrowflow.errors.ConnectorError` is raised.
* Position: the number of lines delivered (an ``int``). A socket cannot be replayed: reopening from a
  snapshot continues the count but reads whatever the peer sends from then on. Lines received but not
  yet delivered when the reader stops, and lines the peer sent while nobody was connected, are lost:
  the source is *at-most-once* unless the peer itself re-sends (which makes it at-least-once).
"""

from __future__ import annotations

import errno
import select
import socket
import time
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import REQUIRED, resolve_config
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...errors import ArrowflowError, ConnectorError
from ...source import Position, Source, Split, SplitReader
from ._lines import find_delimiters, invalid_utf8_rows, split_lines
from .config import SocketSourceConfig


class SocketSource(Source):
    """Lines of text from a TCP socket; see the module docstring for the contract."""

    name = "socket"

    def __init__(
        self,
        host: str = REQUIRED,
        port: int = REQUIRED,
        *,
        column: str = "line",
        encoding: str | None = "utf-8",
        delimiter: bytes = b"\n",
        max_rows: int = 65536,
        linger: float = 0.05,
        max_line_bytes: int = 1 << 20,
        bounded: bool = False,
        reconnect_retries: int = 10,
        reconnect_delay: float = 1.0,
        recv_size: int = 1 << 20,
        format: Any = None,
        schema: pa.Schema | None = None,
        error_policy: ErrorPolicyLike = "fail",
        config: SocketSourceConfig | None = None,
    ) -> None:
        # The options are this constructor's keywords of the same names, or config.
        self.config = resolve_config(SocketSourceConfig, config, locals())
        self.error_policy = ErrorPolicy.resolve(
            self.config.error_policy, name=f"socket {self.config.host}:{self.config.port}"
        )

    @property
    def bounded(self) -> bool:
        return self.config.bounded

    @property
    def schema(self) -> pa.Schema | None:
        if self.config.format is not None:
            return self.config.schema or getattr(self.config.format, "schema", None)
        typ = pa.binary() if self.config.encoding is None else pa.string()
        return pa.schema([pa.field(self.config.column, typ)])

    def plan(self) -> list[Split]:
        c = self.config
        return [
            Split(
                split_id=f"socket-{c.host}:{c.port}",
                bounded=c.bounded,
                params={"host": c.host, "port": c.port},
            )
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        if position is not None and (
            isinstance(position, bool) or not isinstance(position, int) or position < 0
        ):
            raise ArrowflowError(f"split {split.split_id!r}: position must be a line count, got {position!r}")
        return _SocketReader(split, position, self)


class _SocketReader(SplitReader):
    """One connection (re-established as needed) to the peer named by the split."""

    def __init__(self, split: Split, position: Position, source: SocketSource) -> None:
        super().__init__(split, position)
        self._cfg = source.config
        self._policy = source.error_policy
        self._address = (str(split.params["host"]), int(split.params["port"]))
        self._delim = self._cfg.delimiter
        self._sock: socket.socket | None = None
        self._connecting = False
        self._failures = 0
        self._next_connect = 0.0
        self._buf = bytearray()
        self._ends = np.empty(0, dtype=np.int64)  # delimiter offsets of complete lines in _buf
        self._scan_pos = 0  # offsets before this were scanned for delimiters
        self._discarding = False  # inside an over-long line: drop bytes until the next delimiter
        self._discard_carry = b""
        self._eof = False
        self._closed = False
        self.delivered = int(position or 0)
        self.rejected = 0

    # -- the contract --------------------------------------------------------------------------

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed:
            raise ArrowflowError("read_batch() on a closed reader")
        limit = max(1, min(max_rows, self._cfg.max_rows))
        start = time.monotonic()
        deadline = start + max(timeout, 0.0)
        first_ready: float | None = start if len(self._ends) else None
        polled = False
        while len(self._ends) < limit and not self._eof:
            now = time.monotonic()
            end = deadline if first_ready is None else min(deadline, first_ready + self._cfg.linger)
            if now >= end and polled:
                break
            self._fill(max(end - now, 0.0))
            polled = True
            if first_ready is None and len(self._ends):
                first_ready = time.monotonic()
        while len(self._ends):
            batch = self._emit(limit)
            if batch is not None:
                return batch
        return None

    @property
    def finished(self) -> bool:
        return self._eof and not len(self._ends)

    def snapshot(self) -> Position:
        return self.delivered

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drop_connection()

    # -- connection handling -----------------------------------------------------------------

    def _drop_connection(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._connecting = False

    def _connect_failed(self, exc: BaseException) -> None:
        self._drop_connection()
        self._failures += 1
        if self._failures > self._cfg.reconnect_retries:
            raise ConnectorError(
                f"socket {self._address[0]}:{self._address[1]}: cannot connect after "
                f"{self._cfg.reconnect_retries} retries: {exc}",
                retryable=True,
            ) from exc
        self._next_connect = time.monotonic() + self._cfg.reconnect_delay

    def _fill(self, wait: float) -> None:
        """Make progress for at most ``wait`` seconds: connect, or receive one chunk."""
        if self._sock is None:
            now = time.monotonic()
            if now < self._next_connect:
                time.sleep(min(wait, self._next_connect - now))
                if time.monotonic() < self._next_connect:
                    return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            self._sock = sock
            code = sock.connect_ex(self._address)
            if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                self._connecting = True
            elif code != 0:
                self._connect_failed(OSError(code, errno.errorcode.get(code, str(code))))
                return
            else:
                self._failures = 0
            wait = max(0.0, wait - (time.monotonic() - now))
        sock = self._sock
        assert sock is not None
        if self._connecting:
            _, writable, _ = select.select([], [sock], [], wait)
            if not writable:
                return
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code != 0:
                self._connect_failed(OSError(code, errno.errorcode.get(code, str(code))))
                return
            self._connecting = False
            self._failures = 0
            return
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            return
        try:
            chunk = sock.recv(self._cfg.recv_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""  # a reset connection ends like a closed one
        if chunk:
            self._append(chunk)
        else:
            self._peer_closed()

    def _peer_closed(self) -> None:
        self._drop_connection()
        if self._discarding:
            self._discarding = False
            self._discard_carry = b""
        elif len(self._buf) > self._line_start():
            # A trailing line ends with the connection: terminate it so it is delivered.
            self._append(self._delim)
        # A fresh connection starts a fresh line.
        del self._buf[self._line_start() :]
        self._scan_pos = len(self._buf)
        if self._cfg.bounded:
            self._eof = True
        else:
            self._next_connect = time.monotonic() + self._cfg.reconnect_delay

    # -- bytes to lines ----------------------------------------------------------------------

    def _line_start(self) -> int:
        """Offset in ``_buf`` where the current incomplete line starts."""
        return int(self._ends[-1]) + len(self._delim) if len(self._ends) else 0

    def _append(self, chunk: bytes) -> None:
        k = len(self._delim)
        if self._discarding:
            data = self._discard_carry + chunk
            idx = data.find(self._delim)
            if idx < 0:
                self._discard_carry = data[-(k - 1) :] if k > 1 else b""
                return
            self._discarding = False
            self._discard_carry = b""
            chunk = data[idx + k :]
            self._scan_pos = len(self._buf)
        self._buf += chunk
        view = np.frombuffer(self._buf, dtype=np.uint8)
        try:
            found = find_delimiters(view, self._delim, max(self._scan_pos, self._line_start()))
        finally:
            del view  # a live numpy view would stop the bytearray from resizing
        if len(found):
            self._ends = np.concatenate([self._ends, found])
        self._scan_pos = max(len(self._buf) - (k - 1), self._line_start())
        tail = self._line_start()
        if len(self._buf) - tail > self._cfg.max_line_bytes:
            head = bytes(self._buf[tail : tail + self._cfg.max_line_bytes])
            rest_tail = bytes(self._buf[-(k - 1) :]) if k > 1 else b""
            del self._buf[tail:]
            self._scan_pos = len(self._buf)
            self._discarding = True
            self._discard_carry = rest_tail
            self._reject(
                pa.array([head], pa.binary()),
                f"line longer than max_line_bytes={self._cfg.max_line_bytes}",
            )

    def _reject(self, payloads: pa.Array, errors: str | list[str]) -> None:
        self.rejected += len(payloads)
        rows = pa.RecordBatch.from_arrays([payloads.cast(pa.binary())], names=["payload"])
        self._policy.handle(rows, errors)

    def _emit(self, limit: int) -> pa.RecordBatch | None:
        """Take up to ``limit`` complete lines off the buffer; ``None`` if all were rejected."""
        n = min(limit, len(self._ends))
        ends = self._ends[:n]
        k = len(self._delim)
        stop = int(ends[-1]) + k
        view = np.frombuffer(self._buf, dtype=np.uint8, count=stop)
        try:
            binary = self._cfg.encoding is None or self._cfg.format is not None
            lines = split_lines(view, ends, k, binary=True)
            ascii_only = (
                not len(lines) or int(np.frombuffer(lines.buffers()[2], np.uint8).max(initial=0)) < 0x80
            )
        finally:
            del view
        del self._buf[:stop]
        self._ends = self._ends[n:] - stop
        self._scan_pos = max(self._scan_pos - stop, 0)

        lengths = np.diff(
            np.frombuffer(lines.buffers()[1], dtype=np.int32 if lines.type == pa.binary() else np.int64)
        )
        bad = np.zeros(n, dtype=bool)
        reasons = np.full(n, "", dtype=object)
        too_long = lengths > self._cfg.max_line_bytes
        if too_long.any():
            bad |= too_long
            reasons[too_long] = f"line longer than max_line_bytes={self._cfg.max_line_bytes}"
        if not binary and not ascii_only:
            try:
                lines.view(pa.large_string() if lines.type == pa.large_binary() else pa.string()).validate(
                    full=True
                )
            except pa.ArrowInvalid:
                invalid = invalid_utf8_rows(lines)
                invalid = invalid[~bad[invalid]]
                bad[invalid] = True
                reasons[invalid] = "invalid UTF-8"
        if bad.any():
            bad_idx = np.flatnonzero(bad)
            self._reject(lines.take(pa.array(bad_idx)), [str(r) for r in reasons[bad_idx]])
            lines = lines.filter(pa.array(~bad))
        if not len(lines):
            return None
        if self._cfg.format is not None:
            batch = self._decode(lines)
            if batch is None or not batch.num_rows:
                return None
        else:
            array = (
                lines
                if self._cfg.encoding is None
                else lines.view(pa.large_string() if lines.type == pa.large_binary() else pa.string())
            )
            batch = pa.RecordBatch.from_arrays([array], names=[self._cfg.column])
        self.delivered += batch.num_rows
        return batch

    def _decode(self, payloads: pa.Array) -> pa.RecordBatch | None:
        from ...formats.base import decode_with_policy

        batch, _ = decode_with_policy(self._cfg.format, payloads, self._policy)
        self.rejected += len(payloads) - batch.num_rows
        if self._cfg.schema is not None and batch.schema != self._cfg.schema:
            batch = batch.select(self._cfg.schema.names).cast(self._cfg.schema)
        return batch


# -- sink ---------------------------------------------------------------------------------------
