"""Kafka sink: a batch becomes one message per row, produced through librdkafka.

Per batch (all vectorized): the value format encodes the value columns into one ``BinaryArray``
(default :class:`~arrowflow.formats.Json`, the compiled kernel); the key is a binary/string column
taken as is, or the key columns encoded by ``key_format``; partitions come from the murmur2 kernel
over the key bytes (Kafka's default partitioner, identical to the Java client's, passed explicitly as
``partition=``), round robin, a ``partition_column``, librdkafka's own partitioner, or a user
function ``fn(batch, num_partitions)``. The produce loop then walks the offsets of the value and key
arrays: in the common case (fixed topic, no nulls, headers or timestamps) the compiled loop
:func:`arrowflow._ext.kafka_produce.produce_rows` cuts one ``bytes`` per value and key straight from
the Arrow buffers (the client accepts only ``bytes``, not memoryviews) and calls ``produce`` with the
explicit partition; otherwise a Python loop handles every option.

Contract:

* ``write`` blocks while librdkafka's local queue is full: ``BufferError`` is handled by polling and
  retrying the same message, never by dropping it. Rows that cannot be encoded, and messages the
  client refuses at once (too large, unknown partition), go to the error policy with their row.
* ``flush`` (``at-least-once``) waits for every message to be acknowledged (``flush_timeout``): a
  message still undelivered then raises :class:`~arrowflow.errors.ConnectorError`; messages whose
  delivery failed go to the error policy as rows ``topic, partition, key, value, error`` (``"fail"``
  raises). A *fatal* producer error (a transactional producer fenced by a newer instance, a broken
  idempotence sequence) is the sink's failure, not the rows': ``write``/``flush`` raise
  :class:`~arrowflow.errors.ConnectorError` and no row goes to the error policy (a pipeline then
  fails and resumes from its checkpoint). With ``guarantee="none"`` ``flush`` only serves delivery
  reports. ``at-least-once`` enables the idempotent producer by default.
* ``exactly-once`` is a different class,
  :class:`~arrowflow.connectors.kafka.transactional.TransactionalKafkaSink` (construct it, or call
  :func:`~arrowflow.connectors.kafka.kafka_sink` with the guarantee): one Kafka transaction per
  checkpoint, committed after the checkpoint is durable; its module states how a crash between the
  two is recovered without loss. ``KafkaSink(..., guarantee="exactly-once")`` is a
  :class:`~arrowflow.errors.ConfigurationError` naming ``guarantee``.
* A silent broker or network: librdkafka times a request out after ``socket.timeout.ms`` (a produce
  request: ``request.timeout.ms``; defaults 60 s and 30 s, set them in ``client_options``), drops the
  connection and sends the messages again (the idempotent producer keeps them once); ``flush``
  raises only after ``flush_timeout``. ``metrics()`` reports librdkafka's statistics as
  ``retries``, ``disconnects``, ``reconnects`` and ``timeouts``
  (:class:`~arrowflow.connectors.kafka.admin.ClientStats`).
* Partition counts come from metadata and are cached per topic for librdkafka's
  ``topic.metadata.refresh.interval.ms`` (default 300000; ``-1`` caches forever), so partitions added
  to a live topic (CreatePartitions) get their share of the keys once the count is that old, as with
  the Java client after ``metadata.max.age.ms``; an unknown partition reported by the client refreshes
  the count at once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..._arrays import is_binary_like
from ...config import NO_OPTIONS, REQUIRED, resolve_config
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...errors import ArrowflowError, ConfigurationError, ConnectorError
from ...formats import Format, Json
from ...formats.base import as_binary
from ...sink import Sink
from .._messaging import check_columns, payload_columns
from .admin import STATISTICS_INTERVAL_MS, ClientErrors, ClientStats, client_config
from .config import KafkaSinkConfig, split_config
from .partitioner import UNASSIGNED, murmur2_partitions, round_robin_partitions

__all__ = ["KafkaSink"]

log = logging.getLogger("arrowflow.kafka")

#: Large batches are encoded and produced in chunks of this many rows (the JSON kernel encodes a
#: chunk this large on two threads).
_CHUNK_ROWS = 65_536

#: Rows per call of the compiled produce loop (about 5-10 ms, like the interpreter's switch interval).
_PRODUCE_WINDOW = 8_192

#: librdkafka's default ``topic.metadata.refresh.interval.ms``: how long a partition count is trusted.
_METADATA_REFRESH_MS = 300_000

#: ``(rows, value payloads, key payloads or None, failed row indices or None, their errors)``.
_EncodedBatch = tuple[pa.RecordBatch, pa.Array, "pa.Array | None", "np.ndarray | None", list[str]]

_FAILED_SCHEMA = pa.schema(
    [("topic", pa.string()), ("partition", pa.int32()), ("key", pa.binary()), ("value", pa.binary())]
)


def _is_fatal(err: Any) -> bool:
    """A ``KafkaError`` after which the producer cannot go on (fenced, idempotence state lost)."""
    from confluent_kafka import KafkaError

    return bool(err.fatal()) or err.code() in (KafkaError._FATAL, KafkaError._FENCED)


def _as_plain_binary(arr: pa.Array) -> pa.Array:
    """``arr`` as ``binary`` (int32 offsets), the layout the produce loops read."""
    arr = as_binary(arr)
    return arr if pa.types.is_binary(arr.type) else arr.cast(pa.binary())


def _bytes_and_offsets(arr: pa.Array) -> tuple[bytes, list[int]]:
    """One ``bytes`` copy of a binary array's data and its offsets (for slicing per message)."""
    arr = _as_plain_binary(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = bufs[2].to_pybytes() if bufs[2] is not None else b""
    return data, offsets.tolist()


class KafkaSink(Sink):
    """Writes each row of each batch as a Kafka message. See the module docstring for the contract.

    ``topic`` or ``topic_column``; ``key_columns`` (one binary/string column is the key itself;
    otherwise, or with ``key_format``, the columns are encoded, by default as JSON); ``format`` for
    the value (default ``Json()``) over ``value_columns`` (default: every column not used as key,
    topic, headers, timestamp or partition; or the format's own ``columns`` when it has them);
    ``headers_column`` (a map<string, binary|string>);
    ``timestamp_column`` (a timestamp, or int64 milliseconds); ``partitioner``: ``"murmur2"``,
    ``"round-robin"``, ``"librdkafka"`` or ``fn(batch, num_partitions)``; or ``partition_column``.
    ``client_options`` passes librdkafka producer options through. Every option is a field of
    :class:`~arrowflow.connectors.kafka.KafkaSinkConfig`; ``config=`` takes a whole one (0.1.0's
    ``config={...}`` of librdkafka options still works, with a ``DeprecationWarning``).

    ``guarantee`` is ``"at-least-once"`` or ``"none"``. Exactly-once is
    :class:`~arrowflow.connectors.kafka.TransactionalKafkaSink` (Kafka transactions, a two-phase
    sink, with the same options), constructed explicitly: ``KafkaSink(..., guarantee="exactly-once")``
    (or a ``config=`` with that guarantee) raises a :class:`~arrowflow.errors.ConfigurationError`
    naming ``guarantee`` rather than build a sink with another guarantee. (In 0.1.0 it returned a
    ``TransactionalKafkaSink``.) :func:`~arrowflow.connectors.kafka.kafka_sink` picks the class from
    the guarantee, for code (and YAML) that takes the guarantee as a value.
    """

    name = "kafka"
    #: The guarantees this class writes with (``config.guarantee`` must be one of them), and the
    #: constructor to use for the others (named in the error).
    guarantees: ClassVar[tuple[str, ...]] = ("at-least-once", "none")
    _other_guarantees = "TransactionalKafkaSink(...) (or kafka_sink(..., guarantee='exactly-once'))"
    #: The parallel subtask this instance writes for (:meth:`for_subtask`); the exactly-once sink's
    #: transactional id ends with it.
    _subtask = 0

    def __init__(
        self,
        bootstrap_servers: str = REQUIRED,
        *,
        topic: str | None = None,
        topic_column: str | None = None,
        key_columns: Sequence[str] | str = (),
        key_format: Format | None = None,
        format: Format | None = None,
        value_columns: Sequence[str] | None = None,
        headers_column: str | None = None,
        timestamp_column: str | None = None,
        partition_column: str | None = None,
        partitioner: str | Callable[[pa.RecordBatch, int], Any] = "murmur2",
        guarantee: str = "at-least-once",
        transactional_id_prefix: str | None = None,
        transaction_timeout_ms: int = 60_000,
        checkpoint_interval: float | None = None,
        flush_timeout: float = 30.0,
        metadata_timeout: float = 10.0,
        client_options: Mapping[str, Any] = NO_OPTIONS,
        error_policy: ErrorPolicyLike = "fail",
        config: KafkaSinkConfig | Mapping[str, Any] | None = None,
    ) -> None:
        config, client_options = split_config(type(self).__name__, config, KafkaSinkConfig, client_options)
        self.config = c = resolve_config(KafkaSinkConfig, config, locals())
        if c.guarantee not in self.guarantees:
            raise ConfigurationError(
                f"guarantee={c.guarantee!r}{' (from config=)' if config is not None else ''}: "
                f"{type(self).__name__} writes "
                f"{' or '.join(map(repr, self.guarantees))}; for {c.guarantee!r} construct "
                f"{self._other_guarantees}",
                option="guarantee",
            )
        self.format: Format = c.format if c.format is not None else Json()
        self.key_format = c.key_format
        self.error_policy = ErrorPolicy.resolve(c.error_policy, name="kafka sink")
        #: topic -> (partition count, time.monotonic() when it was read).
        self._partition_counts: dict[str, tuple[int, float]] = {}
        self._partition_count_ttl = self._metadata_ttl()
        self._rr_next: dict[str, int] = {}
        self._failed: list[tuple[str, int, bytes | None, bytes | None, str]] = []
        #: The first fatal delivery error (the producer is unusable after it), or None.
        self._fatal: str | None = None
        self._failed_lock = threading.Lock()
        self._rows = 0
        self._messages = 0
        self._delivery_failures = 0
        self._queue_full = 0
        self._client_errors = ClientErrors(c.client_options.get("error_cb"))
        self._stats = ClientStats(c.client_options.get("stats_cb"))
        self._producer: Any = self._new_producer()

    def for_subtask(self, index: int, count: int) -> KafkaSink:
        """A sink with the same options and its own producer (parallel subtask ``index``); the error
        policy is shared (it is thread-safe)."""
        twin = type(self).__new__(type(self))
        twin._subtask = index
        type(self).__init__(twin, config=dataclasses.replace(self.config, error_policy=self.error_policy))
        return twin

    # -- producer ------------------------------------------------------------------------------

    def _producer_config(self) -> dict[str, Any]:
        c = self.config
        defaults: dict[str, Any] = {
            "linger.ms": 5,
            "delivery.report.only.error": True,
            "statistics.interval.ms": STATISTICS_INTERVAL_MS,
        }
        if c.guarantee == "at-least-once":
            defaults["enable.idempotence"] = True
        if c.guarantee == "none":
            defaults["acks"] = 1
        return client_config(c.bootstrap_servers, c.client_options, **defaults) | {
            "on_delivery": self._on_delivery,
            "error_cb": self._client_errors,
            "stats_cb": self._stats.callback(),
        }

    def _metadata_ttl(self) -> float:
        """Seconds a partition count is trusted: librdkafka's ``topic.metadata.refresh.interval.ms``."""
        value = self.config.client_options.get("topic.metadata.refresh.interval.ms", _METADATA_REFRESH_MS)
        try:
            ms = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"client_options: topic.metadata.refresh.interval.ms must be a number of ms, got {value!r}",
                option="client_options",
            ) from None
        return ms / 1000 if ms >= 0 else float("inf")

    def _new_producer(self) -> Any:
        from confluent_kafka import Producer

        return Producer(self._producer_config())

    def _on_delivery(self, err: Any, msg: Any) -> None:
        # Called from poll()/flush() in the writing thread; with delivery.report.only.error only for
        # failures, so the common path costs nothing per message.
        if err is None:
            return
        with self._failed_lock:
            if _is_fatal(err):
                self._fatal = self._fatal or str(err)
            self._failed.append((msg.topic(), msg.partition(), msg.key(), msg.value(), str(err)))

    def _poll(self, timeout: float) -> None:
        """Serve delivery reports; a fatal producer error raises :class:`ConnectorError`."""
        try:
            self._producer.poll(timeout)
        except Exception as exc:
            raise self._fatal_error(exc) from exc

    def _fatal_error(self, exc: BaseException) -> ConnectorError:
        return ConnectorError(
            f"kafka sink: the producer failed fatally and cannot go on (a restarted pipeline makes a "
            f"new one): {exc}",
            retryable=False,
        )

    def _num_partitions(self, topic: str, *, refresh: bool = False) -> int:
        cached = self._partition_counts.get(topic)
        if not refresh and cached is not None and time.monotonic() - cached[1] < self._partition_count_ttl:
            return cached[0]
        deadline = time.monotonic() + self.config.metadata_timeout
        last: Any = None
        while True:
            try:
                md = self._producer.list_topics(topic, timeout=max(0.1, deadline - time.monotonic()))
                tmd = md.topics.get(topic)
                if tmd is not None and tmd.error is None and tmd.partitions:
                    self._partition_counts[topic] = (len(tmd.partitions), time.monotonic())
                    return len(tmd.partitions)
                last = tmd.error if tmd is not None else "no metadata"
            except Exception as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise self._client_errors.failure(
                    self._producer, f"kafka: no partition metadata for topic {topic!r}", last
                )
            time.sleep(0.05)

    # -- writing -------------------------------------------------------------------------------

    def _value_columns(self, batch: pa.RecordBatch) -> list[str]:
        c = self.config
        return payload_columns(batch.schema.names, c.value_columns, self.format, self._addressing())

    def _addressing(self) -> tuple[str | None, ...]:
        """The columns that address a record rather than hold its value."""
        c = self.config
        return (c.topic_column, c.headers_column, c.timestamp_column, c.partition_column, *c.key_columns)

    def _encode_keys(self, batch: pa.RecordBatch) -> tuple[pa.Array | None, np.ndarray | None, list[str]]:
        """Key bytes per row (or None without keys), and the rows whose key failed to encode."""
        cols = self.config.key_columns
        if not cols:
            return None, None, []
        if self.key_format is None and len(cols) == 1:
            col = batch.column(cols[0])
            if is_binary_like(col.type):
                return as_binary(col), None, []
        fmt = self.key_format or Json()
        enc = fmt.encode(batch.select(list(cols)))
        return enc.payloads, enc.failed if len(enc.failed) else None, enc.errors

    def write(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise ArrowflowError("kafka sink: write after close")
        self._before_write()
        if batch.num_rows == 0:
            return
        check_columns(batch, self._addressing(), "kafka sink", "key_columns")
        # Large batches go in chunks (bounded memory for the encoded values), encoded and produced
        # in turn on this thread: encoding in a helper thread while producing was measured slower
        # (the produce loop holds the GIL, so the two threads convoy on it).
        for start in range(0, batch.num_rows, _CHUNK_ROWS):
            self._write_encoded(self._encode(batch.slice(start, _CHUNK_ROWS)))
        self._poll(0)

    def _encode(self, batch: pa.RecordBatch) -> _EncodedBatch:
        """Value and key payloads of ``batch`` and the rows that failed to encode (no side effects)."""
        enc = self.format.encode(batch.select(self._value_columns(batch)))
        keys, kfailed, kerrors = self._encode_keys(batch)
        if not len(enc.failed) and kfailed is None:
            return batch, enc.payloads, keys, None, []
        bad = np.zeros(batch.num_rows, dtype=bool)
        errors: dict[int, str] = {}
        for idx, errs in ((enc.failed, enc.errors), (kfailed, kerrors)):
            if idx is not None and len(idx):
                bad[idx] = True
                for i, e in zip(idx.tolist(), errs, strict=True):
                    errors.setdefault(i, e)
        failed = np.flatnonzero(bad)
        return batch, enc.payloads, keys, failed, [errors[i] for i in failed.tolist()]

    def _write_encoded(self, encoded: _EncodedBatch) -> None:
        """Hand encoding failures to the policy, then produce the good rows."""
        batch, values, keys, failed, errors = encoded
        if failed is not None:
            self.error_policy.handle(batch.take(pa.array(failed)), errors)
            mask = np.ones(batch.num_rows, dtype=bool)
            mask[failed] = False
            ok = pa.array(np.flatnonzero(mask))
            batch, values = batch.take(ok), values.take(ok)
            keys = keys.take(ok) if keys is not None else None
            if batch.num_rows == 0:
                return
        self._journal(batch)
        self._produce(batch, values, keys)
        self._rows += batch.num_rows

    def _before_write(self) -> None:
        """Hook: the transactional sink opens its transaction here."""

    def _journal(self, batch: pa.RecordBatch) -> None:
        """Hook: the transactional sink records the rows it is about to produce."""

    def _topics_and_partitions(
        self, batch: pa.RecordBatch, keys: pa.Array | None
    ) -> tuple[list[str] | None, np.ndarray]:
        """Per-row topic names (None for a fixed topic) and int32 partitions (-1: librdkafka picks)."""
        c = self.config
        n = batch.num_rows
        if c.topic is not None:
            groups: list[tuple[str, np.ndarray | None]] = [(c.topic, None)]
            row_topics = None
        else:
            enc = pc.dictionary_encode(batch.column(c.topic_column).cast(pa.string()))
            if enc.null_count:
                raise ConnectorError(f"kafka sink: column {c.topic_column!r} holds a null topic")
            names = enc.dictionary.to_pylist()
            codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False))
            groups = [(name, np.flatnonzero(codes == j)) for j, name in enumerate(names)]
            row_topics = [names[j] for j in codes.tolist()]
        parts = np.full(n, UNASSIGNED, dtype=np.int32)
        for topic, rows in groups:
            sub = batch if rows is None else batch.take(pa.array(rows))
            subkeys = keys if rows is None or keys is None else keys.take(pa.array(rows))
            p = self._partitions_for(topic, sub, subkeys)
            if rows is None:
                parts = p
            else:
                parts[rows] = p
        return row_topics, parts

    def _partitions_for(self, topic: str, batch: pa.RecordBatch, keys: pa.Array | None) -> np.ndarray:
        c = self.config
        n = batch.num_rows
        if c.partition_column is not None:
            col = batch.column(c.partition_column).cast(pa.int32()).fill_null(UNASSIGNED)
            return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int32)
        if c.partitioner == "librdkafka":
            return np.full(n, UNASSIGNED, dtype=np.int32)
        count = self._num_partitions(topic)
        if callable(c.partitioner):
            out = c.partitioner(batch, count)
            arr = np.asarray(
                out.to_numpy(zero_copy_only=False) if isinstance(out, pa.Array) else out, dtype=np.int32
            )
            if len(arr) != n:
                raise ConnectorError(f"kafka sink: partitioner returned {len(arr)} partitions for {n} rows")
            return arr
        if c.partitioner == "round-robin" or keys is None:
            parts, self._rr_next[topic] = round_robin_partitions(n, count, self._rr_next.get(topic, 0))
            return parts
        return murmur2_partitions(keys, count)

    def _produce(self, batch: pa.RecordBatch, values: pa.Array, keys: pa.Array | None) -> None:
        c = self.config
        n = batch.num_rows
        row_topics, parts = self._topics_and_partitions(batch, keys)
        simple = (
            row_topics is None
            and c.headers_column is None
            and c.timestamp_column is None
            and values.null_count == 0
            and (keys is None or keys.null_count == 0)
        )
        failed: dict[int, str] = {}
        if simple:
            self._produce_simple(c.topic or "", values, keys, parts, failed)
        else:
            self._produce_general(batch, values, keys, row_topics, parts.tolist(), failed)
        self._messages += n - len(failed)
        if failed:
            rows = sorted(failed)
            self.error_policy.handle(batch.take(pa.array(rows, pa.int64())), [failed[i] for i in rows])

    def _produce_simple(
        self,
        topic: str,
        values: pa.Array,
        keys: pa.Array | None,
        parts: np.ndarray,
        failed: dict[int, str],
    ) -> None:
        """The common case (fixed topic, no nulls, headers or timestamps): the compiled loop
        ``arrowflow._ext.kafka_produce`` calls ``produce`` per row straight from the Arrow buffers
        and stops at the first row that raises, which is handled here and the loop resumed."""
        from ..._ext import load

        produce_rows = load("kafka_produce").produce_rows
        values = _as_plain_binary(values)
        keys = _as_plain_binary(keys) if keys is not None else None
        produce = self._producer.produce
        n = len(values)
        i = 0
        while i < n:
            # Windows of rows: the compiled loop holds the GIL, other threads run between calls.
            i, exc = produce_rows(produce, topic, values, keys, parts, i, min(n, i + _PRODUCE_WINDOW))
            if exc is None:
                continue
            if isinstance(exc, BufferError):
                # librdkafka's queue is full: serve delivery reports, then retry the same row.
                self._queue_full += 1
                self._poll(0.05)
                continue
            if not self._refused(exc, i, failed):
                raise exc
            i += 1

    def _produce_general(
        self,
        batch: pa.RecordBatch,
        values: pa.Array,
        keys: pa.Array | None,
        row_topics: list[str] | None,
        plist: list[int],
        failed: dict[int, str],
    ) -> None:
        """Every option: per-row topics, null keys/values (tombstones), headers, timestamps."""
        c = self.config
        n = batch.num_rows
        vdata, vo = _bytes_and_offsets(values)
        vvalid = (
            np.asarray(values.is_valid().to_numpy(zero_copy_only=False)).tolist()
            if values.null_count
            else None
        )
        if keys is not None:
            kdata, ko = _bytes_and_offsets(keys)
            kvalid = (
                np.asarray(keys.is_valid().to_numpy(zero_copy_only=False)).tolist()
                if keys.null_count
                else None
            )
        headers = batch.column(c.headers_column).to_pylist() if c.headers_column else None
        stamps: list[int] | None = None
        if c.timestamp_column:
            col = batch.column(c.timestamp_column)
            if pa.types.is_timestamp(col.type):
                col = col.cast(pa.timestamp("ms", tz=col.type.tz)).cast(pa.int64())
            stamps = np.asarray(col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)).tolist()
        produce = self._producer.produce
        for i in range(n):
            kwargs: dict[str, Any] = {
                "value": vdata[vo[i] : vo[i + 1]] if vvalid is None or vvalid[i] else None,
                "partition": plist[i],
            }
            if keys is not None and (kvalid is None or kvalid[i]):
                kwargs["key"] = kdata[ko[i] : ko[i + 1]]
            if headers is not None and headers[i]:
                kwargs["headers"] = headers[i]
            if stamps is not None and stamps[i]:
                kwargs["timestamp"] = stamps[i]
            topic = row_topics[i] if row_topics is not None else c.topic
            while True:
                try:
                    produce(topic, **kwargs)
                    break
                except BufferError:
                    self._queue_full += 1
                    self._poll(0.05)
                except Exception as exc:
                    if not self._refused(exc, i, failed):
                        raise
                    break

    def _refused(self, exc: BaseException, row: int, failed: dict[int, str]) -> bool:
        """A message the client refused at once: record it for the error policy (True), or not ours.
        A fatal producer error refuses every message: it raises instead (no row is to blame)."""
        from confluent_kafka import KafkaError, KafkaException

        if not isinstance(exc, KafkaException):
            return False
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and _is_fatal(err):
            raise self._fatal_error(exc) from exc
        if isinstance(err, KafkaError) and err.code() in (
            KafkaError._UNKNOWN_PARTITION,
            KafkaError._UNKNOWN_TOPIC,
        ):
            # The cached partition count is stale: the next batch re-reads it.
            self._partition_counts.clear()
        failed[row] = f"produce refused: {exc}"
        return True

    # -- flushing ------------------------------------------------------------------------------

    def _wait_delivered(self) -> None:
        """Wait for every in-flight message; raise on a timeout; hand delivery failures to the policy."""
        try:
            remaining = self._producer.flush(self.config.flush_timeout)
        except Exception as exc:
            raise self._fatal_error(exc) from exc
        self._report_failures()
        if remaining:
            raise ConnectorError(
                f"kafka sink: {remaining} message(s) not acknowledged within flush_timeout="
                f"{self.config.flush_timeout}s",
                retryable=True,
            )

    def _report_failures(self) -> None:
        with self._failed_lock:
            failed, self._failed = self._failed, []
            fatal = self._fatal
        if fatal is not None:
            raise self._fatal_error(RuntimeError(fatal))
        if not failed:
            return
        self._delivery_failures += len(failed)
        self._messages -= len(failed)
        topics, parts, keys, values, errors = zip(*failed, strict=True)
        rows = pa.RecordBatch.from_arrays(
            [
                pa.array(topics, pa.string()),
                pa.array(parts, pa.int32()),
                pa.array(keys, pa.binary()),
                pa.array(values, pa.binary()),
            ],
            schema=_FAILED_SCHEMA,
        )
        self.error_policy.handle(
            rows,
            [f"delivery failed: {e}" for e in errors],
            exception=ConnectorError(
                f"kafka sink: {len(failed)} message(s) not delivered: {errors[0]}", retryable=True
            ),
        )

    def flush(self) -> None:
        if self._closed:
            return
        if self.config.guarantee == "none":
            self._poll(0)
            self._report_failures()
        else:
            self._wait_delivered()
        self.error_policy.flush()

    def close(self) -> None:
        if self._closed:
            return
        try:
            # Even with guarantee="none": librdkafka discards what is still queued when destroyed.
            self._wait_delivered()
            self.error_policy.flush()
        finally:
            self._closed = True
            self._close()

    def _close(self) -> None:
        self._producer = None

    def metrics(self) -> dict[str, int]:
        """``rows`` and ``messages`` produced (delivery failures subtracted), ``delivery_failures``,
        ``queue_full`` (waits on librdkafka's full queue), ``skipped``/``dead_lettered`` (the error
        policy), and the producer's network counters ``retries``, ``disconnects``, ``reconnects``,
        ``timeouts``, ``statistics`` (:class:`~arrowflow.connectors.kafka.admin.ClientStats`: from
        librdkafka's statistics, every ``statistics.interval.ms``, default 1 s)."""
        return {
            **self._stats.metrics(),
            "rows": self._rows,
            "messages": self._messages,
            "delivery_failures": self._delivery_failures,
            "queue_full": self._queue_full,
            "skipped": self.error_policy.skipped,
            "dead_lettered": self.error_policy.dead_lettered,
        }
