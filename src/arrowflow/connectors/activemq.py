"""ActiveMQ over STOMP 1.2 (stomp.py): :class:`ActiveMQSource`, :class:`ActiveMQSink` and
:class:`ActiveMQTransactionalSink` (Bahir's AMQSource/AMQSink without the JVM).

Needs the ``activemq`` extra (``stomp.py``); stomp.py is imported when a connector is built.
Destinations are STOMP names: ``/queue/NAME`` or ``/topic/NAME``.

Source contract:

* One split per source, ``split_id`` = the destination. A queue is not replayable: a message leaves
  it when acknowledged; unacknowledged messages are redelivered when the connection ends.
* ``SUBSCRIBE`` with ``ack=client-individual`` (or ``client``, cumulative) and
  ``activemq.prefetchSize=prefetch`` (the broker stops delivering once that many messages are
  unacknowledged, so size it to a checkpoint interval). stomp.py's receiver thread buffers frames;
  ``read_batch`` waits at most ``timeout`` for them.
* The position is ``{"session": <token>, "seq": <messages returned on it>}``. ``commit(snapshot)``
  acknowledges every message returned up to ``seq`` on the same session: one ``ACK`` frame per
  message (``client-individual``; the frames go out in one socket write) or one cumulative ``ACK``
  (``client``). A snapshot of an older session acknowledges nothing: the broker redelivers those.
* Guarantee: **at-least-once** (a crash or reconnect redelivers what the last committed checkpoint
  did not acknowledge). Topics deliver only to live subscriptions unless ``subscription_name`` (with
  ``client_id``) makes the subscription durable.
* Connection loss: ``read_batch`` returns ``None`` and reconnects with backoff on later calls.
* Payloads are decoded by ``format`` (default ``Raw`` column ``value``); failures go to the error
  policy as rows ``payload, message_id``. Metadata columns: ``_destination``, ``_message_id``,
  ``_timestamp`` (ms), ``_redelivered``, ``_headers`` (map of every frame header).

Sink contract (:class:`ActiveMQSink`; batching, retries, error policy by
:class:`~arrowflow.writer.AsyncBatchWriter`):

* One ``SEND`` per row to ``destination`` or the row's ``destination_column``, ``persistent:true``
  unless ``persistent=False``, ``header_columns`` as headers (a null value omits the header). The
  frames of a request are built vectorized (pyarrow compute: header escaping, content-length) and
  written with one socket write; the last frame asks for a ``RECEIPT``. The broker handles frames of
  a connection in order, so the receipt acknowledges the whole request. An ``ERROR`` frame (the broker
  then closes the connection) or a missing receipt within ``receipt_timeout`` fails the whole request
  retryably (a new connection is made): **at-least-once**, duplicates possible.

Two-phase variant (:class:`ActiveMQTransactionalSink`, STOMP transactions per checkpoint):

* The first ``write`` after a checkpoint sends ``BEGIN``; every ``SEND`` carries the transaction;
  ``prepare_commit()`` waits for the receipt of the last ``SEND`` (every frame so far was accepted)
  and returns ``{"transaction": id}``; ``commit`` sends ``COMMIT`` and waits for its receipt; ``abort``
  sends ``ABORT``. Consumers see a checkpoint's rows all at once, or not at all.
* **Guarantee, precisely**: a STOMP transaction lives in its connection; the broker rolls it back
  when the connection ends. A failure before the checkpoint is stored rolls back and the pipeline
  replays from the previous checkpoint (no loss, no duplicates). But if the process dies or the
  connection drops *after* the checkpoint is stored and *before* the ``COMMIT`` receipt, that
  checkpoint's rows are **lost** (the source will not replay them, and ``recover`` cannot commit a
  transaction of a dead connection; it logs them as lost). So: exactly-once except for that window
  (at-most-once for the rows of the checkpoint in flight during a crash).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Secret, check_choice, check_positive, check_type, reveal
from ..error_policy import ErrorPolicy, ErrorPolicyLike
from ..errors import ConfigurationError, ConnectorError
from ..formats import Format, Json, Raw, decode_with_policy
from ..formats.base import as_binary
from ..retry import ExponentialBackoff
from ..sink import Committable, TwoPhaseSink
from ..source import Position, Source, Split, SplitReader
from ..writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult

__all__ = ["ActiveMQSink", "ActiveMQSource", "ActiveMQTransactionalSink"]

log = logging.getLogger("arrowflow.activemq")

_META = {
    "_destination": pa.string(),
    "_message_id": pa.string(),
    "_timestamp": pa.timestamp("ms", tz="UTC"),
    "_redelivered": pa.bool_(),
    "_headers": pa.map_(pa.string(), pa.string()),
}


def _check_destination(option: str, value: str | None, allow_none: bool = False) -> None:
    check_type(option, value, str, allow_none=allow_none)
    if value is not None and not (value.startswith(("/queue/", "/topic/")) and len(value) > 7):
        raise ConfigurationError(f"{option} must be /queue/NAME or /topic/NAME, got {value!r}", option=option)


class _Listener:
    """stomp.py listener (called from its receiver thread): buffers messages, tracks receipts/errors."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.messages: deque[Any] = deque()
        self.receipts: set[str] = set()
        self.errors: list[str] = []
        self.disconnected = False

    def on_message(self, frame: Any) -> None:
        with self.cond:
            self.messages.append(frame)
            self.cond.notify_all()

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


class _Connection:
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

        self.listener = _Listener()
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


def _frames(
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


def _blob(frames: pa.Array) -> bytes:
    """The bytes of every frame of a binary array, back to back (one copy)."""
    if len(frames) == 0:
        return b""
    bufs = frames.buffers()
    offsets = np.frombuffer(bufs[1], np.int32)[frames.offset : frames.offset + len(frames) + 1]
    return bufs[2].to_pybytes()[int(offsets[0]) : int(offsets[-1])]


class _StompOptions:
    """Connection settings shared by the source and the sinks."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | Secret | None,
        connect_headers: Mapping[str, str] | None,
        timeout: float,
    ) -> None:
        check_type("host", host, str)
        check_type("port", port, int)
        if not 0 < port < 65536:
            raise ConfigurationError(f"port must be in 1..65535, got {port!r}", option="port")
        check_type("username", username, str, allow_none=True)
        check_type("password", password, (str, Secret), allow_none=True)
        check_positive("timeout", timeout)
        self.host, self.port = host, port
        self.username = username
        self.password: Secret | None = Secret(password) if isinstance(password, str) else password
        self.connect_headers = dict(connect_headers or {})
        self.timeout = float(timeout)

    def connect(self, extra_headers: Mapping[str, str] | None = None) -> _Connection:
        headers = {**self.connect_headers, **(extra_headers or {})}
        return _Connection(self.host, self.port, self.username, self.password, headers, self.timeout)


# ----------------------------------------------------------------------------------------- source


class ActiveMQSource(Source):
    """Subscribes to a queue or topic; acknowledges on checkpoint commit. See the module docstring."""

    name = "activemq"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 61613,
        *,
        destination: str,
        ack: str = "client-individual",
        prefetch: int = 10_000,
        client_id: str | None = None,
        subscription_name: str | None = None,
        selector: str | None = None,
        username: str | None = None,
        password: str | Secret | None = None,
        connect_headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        reconnect_backoff: tuple[float, float] = (0.2, 5.0),
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        self.options = _StompOptions(host, port, username, password, connect_headers, timeout)
        _check_destination("destination", destination)
        check_choice("ack", ack, ("client-individual", "client"))
        check_type("prefetch", prefetch, int)
        check_positive("prefetch", prefetch)
        check_type("client_id", client_id, str, allow_none=True)
        check_type("subscription_name", subscription_name, str, allow_none=True)
        check_type("selector", selector, str, allow_none=True)
        if subscription_name is not None and (client_id is None or not destination.startswith("/topic/")):
            raise ConfigurationError(
                "subscription_name (a durable topic subscription) needs client_id and a /topic/ destination",
                option="subscription_name",
            )
        check_type("format", format, Format, allow_none=True)
        self.metadata_columns = tuple(metadata_columns)
        for m in self.metadata_columns:
            check_choice("metadata_columns", m, tuple(_META))
        if len(reconnect_backoff) != 2 or not 0 < reconnect_backoff[0] <= reconnect_backoff[1]:
            raise ConfigurationError(
                "reconnect_backoff must be (initial, max) with 0 < initial <= max, "
                f"got {reconnect_backoff!r}",
                option="reconnect_backoff",
            )
        self.destination = destination
        self.ack = ack
        self.prefetch = prefetch
        self.client_id = client_id
        self.subscription_name = subscription_name
        self.selector = selector
        self.format: Format = format if format is not None else Raw(column="value")
        self.reconnect_backoff = (float(reconnect_backoff[0]), float(reconnect_backoff[1]))
        self.error_policy = ErrorPolicy.resolve(error_policy, name="activemq source")

    @property
    def bounded(self) -> bool:
        return False

    @property
    def schema(self) -> pa.Schema | None:
        s = getattr(self.format, "schema", None)
        if s is None:
            return None
        return pa.schema([*s, *(pa.field(m, _META[m]) for m in self.metadata_columns)])

    def plan(self) -> list[Split]:
        return [Split(split_id=self.destination, bounded=False, params={"destination": self.destination})]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        if position is not None and not (isinstance(position, dict) and isinstance(position.get("seq"), int)):
            raise ConnectorError(f"split {split.split_id!r}: not an activemq position: {position!r}")
        return _StompReader(split, position, self)


class _StompReader(SplitReader):
    def __init__(self, split: Split, position: Position, source: ActiveMQSource) -> None:
        super().__init__(split, position)
        self._src = source
        self._dest: str = split.params["destination"]
        self._conn: _Connection | None = None
        self._session: str | None = None
        self._seq = 0
        self._unacked: deque[tuple[int, str]] = deque()  # (seq, ack id) returned, not acknowledged
        self._snap: Position = position
        self._closed = False
        self._failures = 0
        self._next_connect = 0.0
        self._backoff = ExponentialBackoff(
            initial_delay=source.reconnect_backoff[0], max_delay=source.reconnect_backoff[1], multiplier=2.0
        )
        self._connect()

    def _connect(self) -> None:
        src = self._src
        extra = {"client-id": src.client_id} if src.client_id else {}
        conn = src.options.connect(extra)
        headers = {"activemq.prefetchSize": str(src.prefetch)}
        if src.subscription_name:
            headers["activemq.subscriptionName"] = src.subscription_name
        if src.selector:
            headers["selector"] = src.selector
        try:
            conn.conn.subscribe(self._dest, id="arrowflow", ack=src.ack, headers=headers)
        except Exception as exc:
            conn.close()
            raise ConnectorError(
                f"activemq: subscribing to {self._dest} failed: {exc!r}", retryable=True
            ) from exc
        self._conn = conn
        self._session = uuid.uuid4().hex
        self._seq = 0
        self._unacked.clear()
        self._failures = 0

    def _lost(self, why: str) -> None:
        log.warning("activemq: connection for %s lost: %s", self._dest, why)
        conn, self._conn, self._session = self._conn, None, None
        self._unacked.clear()
        if conn is not None:
            conn.close()

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed:
            return None
        if self._conn is None:
            if time.monotonic() < self._next_connect:
                time.sleep(max(0.0, min(timeout, self._next_connect - time.monotonic())))
                return None
            try:
                self._connect()
            except ConnectorError as exc:
                self._failures += 1
                self._next_connect = time.monotonic() + self._backoff.delay(self._failures)
                log.warning("activemq: reconnect to %s failed: %s", self._dest, exc)
                return None
        assert self._conn is not None
        lst = self._conn.listener
        deadline = time.monotonic() + max(timeout, 0.0)
        with lst.cond:
            while not lst.messages and not lst.disconnected and not lst.errors:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                lst.cond.wait(left)
            frames = [lst.messages.popleft() for _ in range(min(max_rows, len(lst.messages)))]
            broken = lst.disconnected or bool(lst.errors)
        if broken and not frames:
            self._lost(lst.errors[0] if lst.errors else "disconnected")
            return None
        if not frames:
            return None
        return self._to_batch(frames)

    def _to_batch(self, frames: list[Any]) -> pa.RecordBatch:
        src = self._src
        for f in frames:
            self._seq += 1
            self._unacked.append((self._seq, f.headers.get("ack") or f.headers.get("message-id", "")))
        self._snap = {"session": self._session, "seq": self._seq}
        heads = [f.headers for f in frames]
        values = pa.array(
            [f.body if isinstance(f.body, bytes) else str(f.body).encode() for f in frames], pa.binary()
        )
        mids = pa.array([h.get("message-id") for h in heads], pa.string())
        meta = pa.RecordBatch.from_arrays([mids], names=["message_id"])
        batch, rows = decode_with_policy(src.format, values, src.error_policy, meta)
        if not src.metadata_columns:
            return batch
        kept = [heads[i] for i in rows.tolist()] if len(rows) != len(heads) else heads
        for name in src.metadata_columns:
            if name == "_destination":
                col = pa.array([h.get("destination") for h in kept], pa.string())
            elif name == "_message_id":
                col = pa.array([h.get("message-id") for h in kept], pa.string())
            elif name == "_timestamp":
                col = pa.array(
                    [int(h["timestamp"]) if h.get("timestamp") else None for h in kept], pa.int64()
                ).cast(_META[name])
            elif name == "_redelivered":
                col = pa.array([h.get("redelivered") == "true" for h in kept], pa.bool_())
            else:
                col = pa.array([list(h.items()) for h in kept], _META[name])
            batch = batch.append_column(pa.field(name, _META[name]), col)
        return batch

    @property
    def finished(self) -> bool:
        return False

    def snapshot(self) -> Position:
        return self._snap

    def commit(self, snapshot: Position) -> None:
        """ACK every message returned up to ``snapshot["seq"]`` (same session only)."""
        if self._closed or self._conn is None or not isinstance(snapshot, dict):
            return
        if snapshot.get("session") != self._session:
            return
        upto = snapshot.get("seq", 0)
        ids = []
        while self._unacked and self._unacked[0][0] <= upto:
            ids.append(self._unacked.popleft()[1])
        if not ids:
            return
        if self._src.ack == "client":
            ids = ids[-1:]  # cumulative
        data = "".join(f"ACK\nid:{i}\n\n\x00" for i in ids).encode()
        try:
            self._conn.send_raw(data)
        except Exception as exc:  # the broker redelivers them on the next connection
            self._lost(repr(exc))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ------------------------------------------------------------------------------------------- sinks


class _Encoder:
    """Row -> SEND frame encoding shared by both sinks."""

    def __init__(
        self,
        destination: str | None,
        destination_column: str | None,
        format: Format | None,
        value_column: str | None,
        value_columns: Sequence[str] | None,
        header_columns: Sequence[str],
        persistent: bool,
        content_type: str | None,
    ) -> None:
        if (destination is None) == (destination_column is None):
            raise ConfigurationError(
                "give exactly one of destination or destination_column", option="destination"
            )
        _check_destination("destination", destination, allow_none=True)
        check_type("destination_column", destination_column, str, allow_none=True)
        if value_column is not None and (value_columns is not None or format is not None):
            raise ConfigurationError(
                "value_column is sent as is; it excludes value_columns and format", option="value_column"
            )
        check_type("persistent", persistent, bool)
        check_type("format", format, Format, allow_none=True)
        self.destination = destination
        self.destination_column = destination_column
        self.value_column = value_column
        self.value_columns = tuple(value_columns) if value_columns is not None else None
        self.format: Format = format if format is not None else Json()
        self.header_columns = tuple(header_columns)
        for h in self.header_columns:
            if h in ("destination", "content-length", "transaction", "receipt"):
                raise ConfigurationError(
                    f"header column {h!r} clashes with a STOMP header", option="header_columns"
                )
        static = {}
        if destination is not None:
            static["destination"] = destination
        if persistent:
            static["persistent"] = "true"
        if content_type is None and value_column is None and isinstance(self.format, Json):
            content_type = "application/json"
        if content_type:
            static["content-type"] = content_type
        self.static = static

    def static_headers(self, extra: Mapping[str, str] | None = None) -> str:
        items = {**self.static, **(extra or {})}
        return "".join(f"{k}:{v}\n" for k, v in items.items())

    def bodies(self, batch: pa.RecordBatch) -> tuple[pa.Array, np.ndarray, list[str]]:
        """(payloads of the good rows, failed row indices, errors)."""
        if self.value_column is not None:
            col = batch.column(self.value_column)
            if not (pa.types.is_binary(col.type) or pa.types.is_string(col.type)):
                col = col.cast(pa.string())
            payloads = as_binary(col)
            failed = np.flatnonzero(~np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool))
            return payloads, failed, ["null value"] * len(failed)
        if self.value_columns is not None:
            cols = list(self.value_columns)
        elif getattr(self.format, "columns", None) is not None:
            cols = batch.schema.names
        else:
            cols = [c for c in batch.schema.names if c != self.destination_column]
        enc = self.format.encode(batch.select(cols))
        errors = list(enc.errors) if not isinstance(enc.errors, str) else [enc.errors] * len(enc.failed)
        return as_binary(enc.payloads), np.asarray(enc.failed, np.int64), errors

    def entries(self, batch: pa.RecordBatch) -> pa.Array | Encoded:
        """Entries: a struct of (body, destination, headers...) per good row."""
        n = batch.num_rows
        payloads, failed, errors = self.bodies(batch)
        if pa.types.is_large_binary(payloads.type):
            payloads = payloads.cast(pa.binary())
        arrays = [payloads]
        names = ["body"]
        if self.destination_column is not None:
            dest = batch.column(self.destination_column).cast(pa.string())
            valid = pc.and_(
                dest.is_valid(), pc.or_(pc.starts_with(dest, "/queue/"), pc.starts_with(dest, "/topic/"))
            )
            bad = np.flatnonzero(~np.asarray(valid.fill_null(False).to_numpy(zero_copy_only=False), bool))
            extra = np.setdiff1d(bad, failed)
            if len(extra):
                failed = np.concatenate([failed, extra]).astype(np.int64)
                errors = errors + ["destination must be /queue/NAME or /topic/NAME"] * len(extra)
                order = np.argsort(failed, kind="stable")
                failed, errors = failed[order], [errors[i] for i in order]
            arrays.append(dest)
            names.append("destination")
        for h in self.header_columns:
            arrays.append(batch.column(h).cast(pa.string()))
            names.append("h:" + h)
        entries = pa.StructArray.from_arrays(arrays, names=names)
        if len(failed) == 0:
            return entries
        good = np.setdiff1d(np.arange(n, dtype=np.int64), failed, assume_unique=True)
        return Encoded(entries=entries.take(pa.array(good)), failed=failed, errors=errors)

    def frames(self, entries: pa.Array, extra: Mapping[str, str] | None = None) -> pa.Array:
        dest = entries.field("destination") if self.destination_column is not None else None
        row_headers = [(h, entries.field("h:" + h)) for h in self.header_columns]
        return _frames(len(entries), self.static_headers(extra), row_headers, dest, entries.field("body"))


class ActiveMQSink(AsyncBatchWriter):
    """One persistent ``SEND`` per row, a receipt per request. See the module docstring."""

    name = "activemq"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 61613,
        *,
        destination: str | None = None,
        destination_column: str | None = None,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        header_columns: Sequence[str] = (),
        persistent: bool = True,
        content_type: str | None = None,
        username: str | None = None,
        password: str | Secret | None = None,
        connect_headers: Mapping[str, str] | None = None,
        receipt_timeout: float = 30.0,
        batching: BatchingConfig | None = None,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        self.options = _StompOptions(host, port, username, password, connect_headers, 10.0)
        self.encoder = _Encoder(
            destination,
            destination_column,
            format,
            value_column,
            value_columns,
            header_columns,
            persistent,
            content_type,
        )
        check_positive("receipt_timeout", receipt_timeout)
        self.receipt_timeout = float(receipt_timeout)
        config = batching or BatchingConfig(max_request_rows=5000, max_in_flight=1, max_time_in_buffer=1.0)
        super().__init__(config, error_policy=error_policy, name="activemq sink")
        self._lock = threading.Lock()
        self._conn: _Connection | None = self.options.connect()

    def encode(self, batch: pa.RecordBatch) -> pa.Array | Encoded:
        return self.encoder.entries(batch)

    def entry_sizes(self, entries: pa.Array) -> np.ndarray:
        sizes: np.ndarray = super().entry_sizes(entries.field("body"))
        return sizes

    def submit(self, entries: pa.Array) -> SubmitResult | None:
        n = len(entries)
        if n == 0:
            return None
        receipt = uuid.uuid4().hex
        head = self.encoder.frames(entries.slice(0, n - 1)) if n > 1 else None
        last = self.encoder.frames(entries.slice(n - 1, 1), {"receipt": receipt})
        data = (_blob(head) if head is not None else b"") + _blob(last)
        with self._lock:
            if self._conn is None or not self._conn.alive:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                self._conn = self.options.connect()
            conn = self._conn
            try:
                conn.send_raw(data)
            except Exception as exc:
                self._conn = None
                conn.close()
                raise ConnectorError(f"activemq: send failed: {exc!r}", retryable=True) from exc
            why = conn.listener.wait_receipt(receipt, self.receipt_timeout)
            if why is not None:
                self._conn = None
                conn.close()
                raise ConnectorError(
                    f"activemq: request of {n} messages not confirmed: {why}", retryable=True
                )
        return None

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None


class ActiveMQTransactionalSink(TwoPhaseSink):
    """``SEND`` s inside one STOMP transaction per checkpoint. See the module docstring for the guarantee."""

    name = "activemq-tx"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 61613,
        *,
        destination: str | None = None,
        destination_column: str | None = None,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        header_columns: Sequence[str] = (),
        persistent: bool = True,
        content_type: str | None = None,
        username: str | None = None,
        password: str | Secret | None = None,
        connect_headers: Mapping[str, str] | None = None,
        receipt_timeout: float = 30.0,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        self.options = _StompOptions(host, port, username, password, connect_headers, 10.0)
        self.encoder = _Encoder(
            destination,
            destination_column,
            format,
            value_column,
            value_columns,
            header_columns,
            persistent,
            content_type,
        )
        check_positive("receipt_timeout", receipt_timeout)
        self.receipt_timeout = float(receipt_timeout)
        self.error_policy = ErrorPolicy.resolve(error_policy, name="activemq-tx sink")
        self._conn: _Connection = self.options.connect()
        self._tx: str | None = None
        self._last_receipt: str | None = None
        self._pending: str | None = None
        self._rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise ConnectorError("activemq-tx sink is closed")
        if batch.num_rows == 0:
            return
        entries = self.encoder.entries(batch)
        if isinstance(entries, Encoded):
            failed = np.asarray(entries.failed, np.int64)
            errors = entries.errors
            self.error_policy.handle(
                batch.take(pa.array(failed)), errors if isinstance(errors, str) else list(errors)
            )
            entries = entries.entries
        n = len(entries)
        if n == 0:
            return
        if not self._conn.alive:
            raise ConnectorError(
                f"activemq: connection lost inside transaction {self._tx}; it was rolled back", retryable=True
            )
        if self._tx is None:
            self._tx = f"arrowflow-{uuid.uuid4().hex}"
            self._conn.conn.begin(transaction=self._tx)
        receipt = uuid.uuid4().hex
        tx = {"transaction": self._tx}
        head = self.encoder.frames(entries.slice(0, n - 1), tx) if n > 1 else None
        last = self.encoder.frames(entries.slice(n - 1, 1), {**tx, "receipt": receipt})
        try:
            self._conn.send_raw((_blob(head) if head is not None else b"") + _blob(last))
        except Exception as exc:
            raise ConnectorError(
                f"activemq: send in transaction {self._tx} failed: {exc!r}", retryable=True
            ) from exc
        self._last_receipt = receipt
        self._rows += n

    def flush(self) -> None:
        """Without a pipeline (which calls ``prepare_commit`` instead): commit everything written so far."""
        if not self._closed:
            self.commit(self.prepare_commit())

    def _sync(self) -> None:
        """Wait until the broker accepted every ``SEND`` so far (they stay invisible until COMMIT)."""
        if self._last_receipt is None:
            return
        why = self._conn.listener.wait_receipt(self._last_receipt, self.receipt_timeout)
        if why is not None:
            raise ConnectorError(f"activemq: transaction {self._tx} failed: {why}", retryable=True)
        self._last_receipt = None
        self.error_policy.flush()

    def prepare_commit(self) -> list[Committable]:
        self._sync()
        if self._tx is None:
            return []
        tx, self._tx = self._tx, None
        self._pending = tx
        return [{"transaction": tx, "rows": self._rows}]

    def commit(self, committables: Sequence[Committable]) -> None:
        for c in committables:
            tx = c["transaction"]
            if self._pending != tx:
                # Not ours: a transaction of a connection that ended (crash); the broker rolled it back.
                log.error(
                    "activemq: transaction %s (%s rows) cannot be committed after a restart; the broker "
                    "rolled it back with its connection: those rows are lost",
                    tx,
                    c.get("rows"),
                )
                continue
            receipt = uuid.uuid4().hex
            self._conn.conn.commit(transaction=tx, headers={"receipt": receipt})
            why = self._conn.listener.wait_receipt(receipt, self.receipt_timeout)
            self._pending = None
            self._rows = 0
            if why is not None:
                raise ConnectorError(f"activemq: COMMIT of {tx} not confirmed: {why}")

    def abort(self) -> None:
        tx, self._tx = self._tx, None
        self._last_receipt = None
        self._rows = 0
        if tx is not None and self._conn.alive:
            try:
                self._conn.conn.abort(transaction=tx)
            except Exception as exc:  # the broker rolls back on disconnect anyway
                log.debug("activemq: abort: %r", exc)

    def _close(self) -> None:
        self._conn.close()
