"""Redis sink: one command per row (the Bahir ``RedisSink`` command set plus ``XADD``), pipelined.

Commands (``command=``) and the arguments each row supplies::

    hset     HSET    key field value          field from ``field_column``
    set      SET     key value [PX ttl]       ``ttl`` seconds (optional)
    lpush    LPUSH   key value
    rpush    RPUSH   key value
    sadd     SADD    key value
    zadd     ZADD    key score value          score from ``score_column`` (numeric)
    pfadd    PFADD   key value
    publish  PUBLISH key value                key = channel
    xadd     XADD    key [MAXLEN ~ n] * <value_field> value

``key``: a constant (``key="hash-name"``) or ``key_column`` (any type; cast to string) with an
optional ``key_prefix``. ``value``: ``value_column`` taken as is (binary/string, or cast to string),
or the row's ``value_columns`` encoded by ``format`` (default :class:`~arrowflow.formats.Json`, the
compiled kernel).

How it is fast: :meth:`RedisSink.encode` builds every row's command in the Redis wire protocol
(RESP) with ``pyarrow.compute`` (``binary_join_element_wise`` of constant pieces, argument lengths
and arguments): one binary array, no Python object per row. :meth:`RedisSink.submit` sends a
request's commands as ONE contiguous buffer on one connection (a pipeline without ``MULTI``) and
reads one reply per command.

Contract (batching, retries and the error policy are :class:`~arrowflow.writer.AsyncBatchWriter`'s):

* ``write`` may block while ``batching.max_buffered_rows`` rows wait (backpressure). Rows with a
  null key/field/score/value, and rows the format cannot encode, go to the error policy.
* A lost connection, a reply missing after ``socket_timeout`` seconds (a hung server or a
  black-holed network: the connection is dropped, never waited on forever) or a transient error
  reply (``LOADING`` after a restart, ``TRYAGAIN``, ``READONLY``, ``MASTERDOWN``) fails the
  request or entry as *retryable*: it is
  re-sent on a new connection after a backoff, so a server restart is ridden out within
  ``batching.max_retry_time`` / ``max_attempts``. Any other error reply (``WRONGTYPE``, a bad score)
  is fatal for its row, which goes to the error policy; the other rows of the request succeed.
* ``flush`` returns once every command written so far was answered (or its row handed to the
  policy). Guarantee: at-least-once. ``hset``, ``set``, ``sadd``, ``zadd`` and ``pfadd`` are
  idempotent (a replay rewrites the same value), so the sink reports ``idempotent`` for them and can
  run in exactly-once pipelines; ``lpush``/``rpush``/``xadd``/``publish`` may duplicate on replay.
* Ordering: requests complete in any order with ``max_in_flight > 1``; use
  ``BatchingConfig(max_in_flight=1)`` when list/stream order matters.
* Cluster mode is not supported (a pipeline of RESP commands goes to one node); Sentinel is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError
from ...formats import Format, Json
from ...formats.base import as_binary
from ...writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult
from ._client import TRANSIENT_REPLIES, connection_from, is_transient
from .config import COMMANDS, REDIS_BATCHING, RedisSinkConfig

__all__ = ["COMMANDS", "RedisSink", "RedisSinkConfig"]

log = logging.getLogger("arrowflow.redis")


def _as_text(col: pa.Array) -> pa.Array:
    """A column as binary: binary/string as is (zero-copy), numbers etc. through Arrow's cast to string."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if not (
        pa.types.is_binary(t)
        or pa.types.is_string(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_large_string(t)
    ):
        col = col.cast(pa.string())
    out = as_binary(col)
    return out.cast(pa.binary()) if pa.types.is_large_binary(out.type) else out


def pack_commands(args: Sequence[bytes | pa.Array], n: int) -> pa.Array:
    """Each row's command ``args`` (constants or binary arrays of length ``n``) in RESP, vectorized.

    A row is null where any of its array arguments is null.
    """
    pieces: list[bytes | pa.Array] = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            pieces.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        else:
            lengths = pc.binary_length(arg).cast(pa.string()).cast(pa.binary())
            pieces.extend((b"$", lengths, b"\r\n", arg, b"\r\n"))
    merged: list[bytes | pa.Array] = []
    for p in pieces:
        if isinstance(p, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] = merged[-1] + p
        else:
            merged.append(p)
    if not any(isinstance(p, pa.Array) for p in merged):
        return pa.array([b"".join(p for p in merged if isinstance(p, bytes))] * n, pa.binary())
    operands = [pa.scalar(p, pa.binary()) if isinstance(p, bytes) else p for p in merged]
    return pc.binary_join_element_wise(*operands, pa.scalar(b"", pa.binary()))


def contiguous_bytes(entries: pa.Array) -> memoryview:
    """The data of a null-free binary array's entries, back to back, without copying."""
    entries = as_binary(entries)
    if len(entries) == 0:
        return memoryview(b"")
    bufs = entries.buffers()
    dtype = np.int64 if pa.types.is_large_binary(entries.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=dtype)[entries.offset : entries.offset + len(entries) + 1]
    return memoryview(bufs[2])[int(offsets[0]) : int(offsets[-1])]


class RedisSink(AsyncBatchWriter):
    """Writes one Redis command per row over pipelined connections. See the module docstring."""

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        command: str,
        key: str | None = None,
        key_column: str | None = None,
        key_prefix: str = "",
        field_column: str | None = None,
        score_column: str | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        format: Format | None = None,
        ttl: float | None = None,
        value_field: str = "data",
        stream_maxlen: int | None = None,
        sentinels: Sequence[tuple[str, int]] = (),
        service_name: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        batching: BatchingConfig | None = None,
        error_policy: ErrorPolicyLike = "fail",
        socket_timeout: float | None = 10.0,
        connect_timeout: float | None = 5.0,
    ) -> None:
        self.sink_config = RedisSinkConfig(
            connection=connection_from(
                url, sentinels, service_name, client_options, socket_timeout, connect_timeout
            ),
            command=command,
            key=key,
            key_column=key_column,
            key_prefix=key_prefix,
            field_column=field_column,
            score_column=score_column,
            value_column=value_column,
            value_columns=tuple(value_columns) if value_columns is not None else None,
            format=format,
            ttl=ttl,
            value_field=value_field,
            stream_maxlen=stream_maxlen,
            batching=batching or REDIS_BATCHING,
        )
        super().__init__(self.sink_config.batching, error_policy=error_policy, name="redis sink")
        self.format: Format = format if format is not None else Json()
        self.idempotent = COMMANDS[self.sink_config.command][2]
        self._client = self.sink_config.connection.client()
        self._pool = self._client.connection_pool
        self._drops = {"reconnects": 0, "timeouts": 0}
        self._drops_lock = threading.Lock()

    # -- encoding ------------------------------------------------------------------------------

    def _value(self, batch: pa.RecordBatch) -> tuple[pa.Array, np.ndarray, list[str]]:
        c = self.sink_config
        if c.value_column is not None:
            return _as_text(batch.column(c.value_column)), np.empty(0, np.int64), []
        if c.value_columns is not None:
            cols = list(c.value_columns)
        elif getattr(self.format, "columns", None) is not None:
            cols = batch.schema.names
        else:
            used = {c.key_column, c.field_column, c.score_column}
            cols = [n for n in batch.schema.names if n not in used]
        enc = self.format.encode(batch.select(cols))
        return as_binary(enc.payloads), np.asarray(enc.failed, np.int64), list(enc.errors)

    def encode(self, batch: pa.RecordBatch) -> pa.Array | Encoded:
        c = self.sink_config
        n = batch.num_rows
        missing = [
            col
            for col in (
                c.key_column,
                c.field_column,
                c.score_column,
                c.value_column,
                *(c.value_columns or ()),
            )
            if col is not None and col not in batch.schema.names
        ]
        if missing:
            raise ConfigurationError(f"redis sink: columns {missing} not in the batch", option="key_column")
        if c.key is not None:
            key: bytes | pa.Array = c.key.encode()
        else:
            assert c.key_column is not None
            key = _as_text(batch.column(c.key_column))
            if c.key_prefix:
                key = pc.binary_join_element_wise(
                    pa.scalar(c.key_prefix.encode(), pa.binary()), key, pa.scalar(b"", pa.binary())
                )
        value, failed, errors = self._value(batch)
        args: list[bytes | pa.Array]
        cmd = c.command
        if cmd == "hset":
            assert c.field_column is not None
            args = [b"HSET", key, _as_text(batch.column(c.field_column)), value]
        elif cmd == "set":
            args = [b"SET", key, value]
            if c.ttl is not None:
                args += [b"PX", str(max(1, round(c.ttl * 1000))).encode()]
        elif cmd == "zadd":
            assert c.score_column is not None
            score = batch.column(c.score_column)
            if not (pa.types.is_integer(score.type) or pa.types.is_floating(score.type)):
                raise ConfigurationError(
                    f"score_column {c.score_column!r} must be numeric, got {score.type}",
                    option="score_column",
                )
            args = [b"ZADD", key, _as_text(score), value]
        elif cmd == "xadd":
            trim = [b"MAXLEN", b"~", str(c.stream_maxlen).encode()] if c.stream_maxlen else []
            args = [b"XADD", key, *trim, b"*", c.value_field.encode(), value]
        else:
            args = [cmd.upper().encode(), key, value]
        packed = pack_commands(args, n)
        if packed.null_count == 0:
            return packed
        null_rows = np.flatnonzero(~np.asarray(packed.is_valid().to_numpy(zero_copy_only=False), bool))
        # The format's failures come with their own messages (same order as ``failed``).
        known = dict(zip(failed.tolist(), errors, strict=False))
        bad_errors = [known.get(int(i), "null key, field, score or value") for i in null_rows]
        good = np.setdiff1d(np.arange(n, dtype=np.int64), null_rows, assume_unique=True)
        return Encoded(
            entries=packed.take(pa.array(good)), failed=null_rows.astype(np.int64), errors=bad_errors
        )

    # -- sending -------------------------------------------------------------------------------

    def _get_connection(self) -> Any:
        try:
            return self._pool.get_connection()
        except TypeError:  # redis-py 5.x requires a command name
            return self._pool.get_connection("_")

    def submit(self, entries: pa.Array) -> SubmitResult | None:
        import redis

        n = len(entries)
        if n == 0:
            return None
        data = contiguous_bytes(entries)
        try:
            conn = self._get_connection()  # connects (and handshakes) when the pool has none
        except BaseException as exc:
            self._dropped(exc)
            raise
        failed: list[int] = []
        errors: list[str] = []
        retryable: list[bool] = []
        try:
            conn.send_packed_command([data], check_health=False)
            read = conn.read_response
            for i in range(n):
                try:
                    read()
                except redis.ResponseError as exc:  # the reply was consumed: the stream stays in sync
                    text = str(exc)
                    failed.append(i)
                    errors.append(text)
                    retryable.append(text.startswith(TRANSIENT_REPLIES))
        except BaseException as exc:
            # A half-read reply stream cannot be reused: drop the socket, the retry reconnects.
            conn.disconnect()
            self._dropped(exc)
            raise
        finally:
            self._pool.release(conn)
        if not failed:
            return None
        return SubmitResult(
            failed=np.asarray(failed, np.int64), errors=errors, retryable=np.asarray(retryable)
        )

    def _dropped(self, exc: BaseException) -> None:
        """Count a request that failed on its connection (the retry opens a new one)."""
        import redis

        with self._drops_lock:
            self._drops["reconnects"] += 1
            if isinstance(exc, (redis.TimeoutError, TimeoutError)):
                self._drops["timeouts"] += 1  # socket_timeout: a silent server, not a hang

    def classify(self, exc: BaseException) -> bool:
        return is_transient(exc)

    def metrics(self) -> dict[str, int]:
        """:meth:`AsyncBatchWriter.metrics` plus ``reconnects`` (connections dropped after a failed
        request: lost, reset or timed out) and ``timeouts`` (requests without a reply within
        ``socket_timeout``)."""
        out = super().metrics()
        with self._drops_lock:
            out.update(self._drops)
        return out

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            try:
                self._client.close()
            except Exception as exc:  # closing after a lost connection
                log.debug("redis sink: closing client: %s", exc)
