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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import REQUIRED, ConfigAttributes, resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError
from ...formats import Format, Json
from ...formats.base import as_binary
from ...writer import BatchingConfig, Encoded, SubmitResult
from .._messaging import ClientSink, check_columns, payload_columns
from ._client import DEFAULT_URL, TRANSIENT_REPLIES, is_transient
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


class RedisSink(ConfigAttributes, ClientSink):
    """Writes one Redis command per row over pipelined connections. See the module docstring."""

    name = "redis"
    #: ``metrics()``: connections dropped after a failed request (lost, reset or timed out), and
    #: requests without a reply within ``socket_timeout``.
    EVENTS = ("reconnects", "timeouts")

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        command: str = REQUIRED,
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
        batching: BatchingConfig = REDIS_BATCHING,
        error_policy: ErrorPolicyLike = "fail",
        socket_timeout: float | None = 10.0,
        connect_timeout: float | None = 5.0,
        config: RedisSinkConfig | None = None,
    ) -> None:
        config = resolve_config(RedisSinkConfig, config, locals())
        super().__init__(config.batching, error_policy=error_policy, name="redis sink")
        self.config = config
        self.format: Format = config.format if config.format is not None else Json()
        self.idempotent = COMMANDS[config.command][2]
        #: The columns that address a row's command rather than hold its value.
        self._addressing = (config.key_column, config.field_column, config.score_column)
        self._client = config.client()
        self._pool = self._client.connection_pool

    @property
    def sink_config(self) -> RedisSinkConfig:
        """0.1.0's name of :attr:`config`."""
        return self.config  # type: ignore[no-any-return]

    # -- encoding ------------------------------------------------------------------------------

    def _value(self, batch: pa.RecordBatch) -> tuple[pa.Array, np.ndarray, list[str]]:
        c = self.config
        if c.value_column is not None:
            return _as_text(batch.column(c.value_column)), np.empty(0, np.int64), []
        cols = payload_columns(batch.schema.names, c.value_columns, self.format, self._addressing)
        enc = self.format.encode(batch.select(cols))
        return as_binary(enc.payloads), np.asarray(enc.failed, np.int64), list(enc.errors)

    def encode(self, batch: pa.RecordBatch) -> pa.Array | Encoded:
        c = self.config
        n = batch.num_rows
        check_columns(
            batch, [*self._addressing, c.value_column, *(c.value_columns or ())], "redis sink", "key_column"
        )
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

        self.count("reconnects")
        if isinstance(exc, (redis.TimeoutError, TimeoutError)):
            self.count("timeouts")  # socket_timeout: a silent server, not a hang

    def classify(self, exc: BaseException) -> bool:
        return is_transient(exc)

    def close_client(self) -> None:
        try:
            self._client.close()
        except Exception as exc:  # closing after a lost connection
            log.debug("redis sink: closing client: %s", exc)
