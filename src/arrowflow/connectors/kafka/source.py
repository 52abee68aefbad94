"""Kafka source: one split per topic-partition, read by an *assigned* (never subscribed) consumer.

Contract (see :mod:`arrowflow.source`):

* Splits: ``split_id`` is ``"topic:partition"``; ``params`` hold the topic, the partition and, for a
  bounded read, the exclusive ``stop`` offset, resolved once by :meth:`KafkaSource.plan` (so
  ``stopping_offsets="latest"`` means the high watermark — the last stable offset under
  ``read_committed`` — at planning time, and a split reopened from its JSON form stops at the same
  offset).
* Position: the next offset to read (an ``int``). A reader opened at a position starts exactly there;
  without one it resolves ``starting_offsets`` when it opens. Transaction markers and compacted-away
  offsets are skipped, so a position can jump by more than the rows returned.
* ``read_batch(max_rows, timeout)`` makes one ``Consumer.consume(max_rows, timeout)`` call: it never
  blocks past ``timeout`` (plus librdkafka's scheduling slack) and never returns a message at or past
  the stop offset. A bounded split is finished when its position reaches the stop offset.
* Decoding is batch-wise: the message values are gathered into one ``BinaryArray`` (one C call over
  the client's own message objects) and the format decodes the whole array. Payloads that fail go
  to the error policy as dead-letter rows ``payload, topic, partition, offset, error``.
* ``commit(snapshot)`` commits the group offset synchronously, only then (never auto-commit); the
  checkpoint is the truth, group offsets are for monitoring and ``starting_offsets="committed"``. A
  failed commit is logged, not raised. Without a ``group_id`` a random one is used and nothing is
  committed.
* One librdkafka consumer per open reader (its own fetch threads); ``close()`` closes it. It
  reconnects by itself; a silent broker is noticed after ``socket.timeout.ms`` (set it in
  ``client_options``; default 60 s). ``KafkaSource.metrics()`` sums its consumers' ``retries``,
  ``disconnects``, ``reconnects`` and ``timeouts`` (librdkafka's statistics).
* ``fetch="columnar"`` (opt-in; default ``"client"``, or the ``ARROWFLOW_KAFKA_FETCH`` environment
  variable) reads through the ``arrowflow._ext.kafka_fetch`` kernel instead of
  ``Consumer.consume``: its own librdkafka handle (the library confluent-kafka's wheel ships, opened
  with ``dlopen``) drained by the batch consume API straight into Arrow buffers, no Python object
  per message. Same positions, commits, columns, error policy and metrics; batches are also bounded
  to ``fetch_max_bytes`` of payload. It takes no Python callbacks in ``client_options`` but ``stats_cb``.
* A batch holds at most ``max_poll_records`` messages (default 16,384; Kafka's ``max.poll.records``),
  whatever the pipeline asks for: decoding 64k small JSON messages at once took more memory and more
  CPU than four reads of 16k (peak RSS 475 -> 350 MB, CPU -20% on the peers benchmark's workload 1).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from ...config import NO_OPTIONS, REQUIRED, resolve_config
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format, Raw, decode_with_policy
from ...source import Position, Source, Split, SplitReader, check_int_position, stop_position
from .admin import STATISTICS_INTERVAL_MS, ClientStats, client_config, list_partitions, metadata_client
from .config import KafkaSourceConfig, parse_partition_key, split_config

__all__ = ["KafkaSource"]

log = logging.getLogger("arrowflow.kafka")

_META_TYPES: dict[str, pa.DataType] = {
    "_key": pa.binary(),
    "_topic": pa.string(),
    "_partition": pa.int32(),
    "_offset": pa.int64(),
    "_timestamp": pa.timestamp("ms", tz="UTC"),
    "_headers": pa.map_(pa.string(), pa.binary()),
}
#: Each reader's librdkafka prefetch (``client_options`` overrides it). There is one consumer per partition,
#: and librdkafka's default queue (64 MB of payload per consumer, ~2.5x that in memory with its
#: per-message bookkeeping at small messages) made peak RSS grow with the partition count; 8 MB per
#: partition keeps a reader fed at the rates measured (benchmarks/kafka.py --consume-only), provided
#: a consumer whose queue drained fetches again soon (librdkafka's default backoff is 1 s).
PREFETCH: dict[str, int] = {"queued.max.messages.kbytes": 8192, "fetch.queue.backoff.ms": 20}
_DEAD_LETTER_META = pa.schema([("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64())])
#: Broker answers to an offsets request that mean "not now" (a partition just created or whose leader
#: is moving, a coordinator loading): asked again until the metadata timeout.
_TRANSIENT = (
    "NOT_LEADER_FOR_PARTITION",
    "LEADER_NOT_AVAILABLE",
    "UNKNOWN_TOPIC_OR_PART",
    "NOT_COORDINATOR",
    "COORDINATOR_NOT_AVAILABLE",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "REQUEST_TIMED_OUT",
    "_TRANSPORT",
    "_UNKNOWN_PARTITION",
    "_WAIT_COORD",
)

_T = TypeVar("_T")


def _ask(call: Callable[[], _T], what: str, timeout: float) -> _T:
    """``call()`` (an offsets request of a consumer), asked again while the broker answers with a
    transient error, for up to ``timeout`` seconds; then :class:`ConnectorError` (retryable)."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            transient = err is not None and (err.retriable() or err.name() in _TRANSIENT)
            if not transient or time.monotonic() >= deadline:
                raise ConnectorError(f"kafka: {what} failed: {exc}", retryable=True) from exc
            time.sleep(0.1)


class KafkaSource(Source):
    """Reads Kafka topics into record batches. See the module docstring for the contract.

    ``topics`` (names), ``pattern`` (a regex matched in full against topic names) or ``partitions``
    (``"topic:partition"`` strings) choose what to read. ``format`` decodes values (default: a
    ``Raw`` binary column ``value``); ``key_format`` optionally decodes keys into more columns.
    ``metadata_columns`` adds any of ``_key, _topic, _partition, _offset, _timestamp, _headers``.
    Offsets: see :mod:`arrowflow.connectors.kafka.config`. ``client_options`` passes librdkafka
    consumer options through. Every option is a field of
    :class:`~arrowflow.connectors.kafka.KafkaSourceConfig`; ``config=`` takes a whole one (0.1.0's
    ``config={...}`` of librdkafka options still works, with a ``DeprecationWarning``).
    """

    name = "kafka"
    replayable = True

    def __init__(
        self,
        bootstrap_servers: str = REQUIRED,
        *,
        topics: Sequence[str] | str = (),
        pattern: str | None = None,
        partitions: Sequence[str] = (),
        group_id: str | None = None,
        format: Format | None = None,
        key_format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        starting_offsets: str | Mapping[str, int] = "earliest",
        offset_reset: str = "earliest",
        starting_timestamp_ms: int | None = None,
        stopping_offsets: str | Mapping[str, int] | None = None,
        stopping_timestamp_ms: int | None = None,
        isolation_level: str = "read_committed",
        discovery_interval: float | None = 30.0,
        metadata_timeout: float = 10.0,
        client_options: Mapping[str, Any] = NO_OPTIONS,
        error_policy: ErrorPolicyLike = "fail",
        fetch: str | None = None,
        fetch_max_bytes: int = 64 << 20,
        max_poll_records: int = 16_384,
        config: KafkaSourceConfig | Mapping[str, Any] | None = None,
    ) -> None:
        config, client_options = split_config(type(self).__name__, config, KafkaSourceConfig, client_options)
        self.config = c = resolve_config(KafkaSourceConfig, config, locals())
        self.format: Format = c.format if c.format is not None else Raw(column="value")
        self.key_format = c.key_format
        self.error_policy = ErrorPolicy.resolve(c.error_policy, name="kafka source")
        # A random group when none is given: the consumer needs one, but nothing is committed.
        self._group = c.group_id or f"arrowflow-{uuid.uuid4().hex}"
        self._stats = ClientStats(c.client_options.get("stats_cb"))
        if not self.bounded and not self.config.partitions:
            self.discovery_interval = self.config.discovery_interval
        #: The configuration's ``fetch``, ``fetch_max_bytes`` and ``max_poll_records`` (0.1.0 attributes).
        self.fetch: str = c.fetch or "client"
        self.fetch_max_bytes = c.fetch_max_bytes
        self.max_poll_records = c.max_poll_records

    @property
    def bounded(self) -> bool:
        return self.config.bounded

    def metrics(self) -> dict[str, int]:
        """The network counters of every consumer this source made (its readers' and its offset
        lookups'): ``retries``, ``disconnects``, ``reconnects``, ``timeouts``, ``statistics`` (see
        :class:`~arrowflow.connectors.kafka.admin.ClientStats`; librdkafka reports them every
        ``statistics.interval.ms``, default 1 s, served by the readers' ``read_batch``)."""
        return self._stats.metrics()

    @property
    def schema(self) -> pa.Schema | None:
        fields: list[pa.Field] = []
        for fmt in (self.format, self.key_format):
            if fmt is None:
                continue
            s = getattr(fmt, "schema", None)
            if s is None:
                return None
            fields.extend(s)
        fields.extend(pa.field(m, _META_TYPES[m]) for m in self.config.metadata_columns)
        return pa.schema(fields)

    # -- clients -------------------------------------------------------------------------------

    def _consumer_config(self) -> dict[str, Any]:
        c = self.config
        return client_config(
            c.bootstrap_servers,
            c.client_options,
            **{
                "group.id": self._group,
                "isolation.level": c.isolation_level,
                "auto.offset.reset": c.offset_reset,
                "enable.partition.eof": False,
                "statistics.interval.ms": STATISTICS_INTERVAL_MS,
                **PREFETCH,
            },
        ) | {
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "stats_cb": self._stats.callback(),
        }

    def _new_consumer(self) -> Any:
        from confluent_kafka import Consumer

        return Consumer(self._consumer_config())

    def _topic_partitions(self) -> list[tuple[str, int]]:
        c = self.config
        if c.partitions:
            return [parse_partition_key(p, "partitions") for p in c.partitions]
        admin, errors = metadata_client(c.bootstrap_servers, c.client_options)
        counts = list_partitions(
            admin, topics=c.topics, pattern=c.pattern, timeout=c.metadata_timeout, errors=errors
        )
        return [(t, p) for t in sorted(counts) for p in range(counts[t])]

    # -- planning ------------------------------------------------------------------------------

    def plan(self) -> list[Split]:
        """One split per topic-partition; bounded reads resolve their stop offsets here (blocks on
        metadata and ListOffsets requests, up to ``metadata_timeout`` each)."""
        tps = self._topic_partitions()
        stops = self._stop_offsets(tps)
        return [
            Split(
                split_id=f"{t}:{p}",
                bounded=self.bounded,
                params={"topic": t, "partition": p, "stop": stops.get(f"{t}:{p}")},
            )
            for t, p in tps
        ]

    def _stop_offsets(self, tps: list[tuple[str, int]]) -> dict[str, int]:
        c = self.config
        mode = c.stopping_offsets
        if mode is None:
            return {}
        if isinstance(mode, Mapping):
            # Partitions the mapping leaves out stop where they are now.
            explicit = dict(mode)
            missing = [tp for tp in tps if f"{tp[0]}:{tp[1]}" not in explicit]
            return {**self._watermarks(missing), **explicit}
        if mode == "latest":
            return self._watermarks(tps)
        assert c.stopping_timestamp_ms is not None
        return self._offsets_for_time(tps, c.stopping_timestamp_ms)

    def _watermarks(self, tps: list[tuple[str, int]]) -> dict[str, int]:
        if not tps:
            return {}
        from confluent_kafka import TopicPartition

        consumer = self._new_consumer()
        timeout = self.config.metadata_timeout
        try:
            out = {}
            for t, p in tps:
                watermarks = functools.partial(
                    consumer.get_watermark_offsets, TopicPartition(t, p), timeout=timeout
                )
                _, high = _ask(watermarks, f"listing the offsets of {t}:{p}", timeout)
                out[f"{t}:{p}"] = int(high)
            return out
        finally:
            consumer.close()

    def _offsets_for_time(self, tps: list[tuple[str, int]], ts_ms: int) -> dict[str, int]:
        """First offset with a timestamp >= ``ts_ms`` per partition; the high watermark where none is."""
        from confluent_kafka import TopicPartition

        ends = self._watermarks(tps)
        consumer = self._new_consumer()
        timeout = self.config.metadata_timeout
        try:
            found = _ask(
                lambda: consumer.offsets_for_times(
                    [TopicPartition(t, p, ts_ms) for t, p in tps], timeout=timeout
                ),
                "offsets_for_times",
                timeout,
            )
        finally:
            consumer.close()
        out = {}
        for tp in found:
            key = f"{tp.topic}:{tp.partition}"
            out[key] = int(tp.offset) if tp.offset >= 0 else ends[key]
        return out

    def discover(self, known: Sequence[Split]) -> list[Split]:
        """Partitions (of the named topics, or of topics matching ``pattern``) not in ``known``.

        They start at the earliest offset, so nothing written before discovery is missed. When the
        cluster does not answer the metadata request (a broker restarting, a leader moving) this
        logs a warning and finds nothing: the open readers reconnect by themselves, and the next
        discovery asks again. A transient outage must not end a long-running pipeline.
        """
        if self.bounded or self.config.partitions:
            return []
        ids = {s.split_id for s in known}
        try:
            found = self._topic_partitions()
        except ConnectorError as exc:
            if not exc.retryable:
                raise
            log.warning("kafka: partition discovery failed (retried at the next interval): %s", exc)
            return []
        return [
            Split(
                split_id=f"{t}:{p}",
                bounded=False,
                params={"topic": t, "partition": p, "stop": None, "new": True},
            )
            for t, p in found
            if f"{t}:{p}" not in ids
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        check_int_position(split, position, "an offset >= 0")
        if self.fetch == "columnar":
            return ColumnarReader(split, position, self)
        return _KafkaReader(split, position, self)


class _KafkaReader(SplitReader):
    """One topic-partition read by its own assigned consumer."""

    def __init__(self, split: Split, position: Position, source: KafkaSource) -> None:
        from confluent_kafka import TopicPartition

        super().__init__(split, position)
        self._source = source
        self._topic: str = split.params["topic"]
        self._partition: int = int(split.params["partition"])
        self._stop = stop_position(split)
        self._tp = TopicPartition(self._topic, self._partition)
        self._consumer: Any = None
        self._closed = False
        try:
            self._position: int = self._connect(split, position)
        except BaseException:
            self.close()
            raise
        self._finished = self._stop is not None and self._position >= self._stop

    def _connect(self, split: Split, position: Position) -> int:
        """Make the reader's consumer, assigned at ``position`` (resolved when ``None``); returns it."""
        from confluent_kafka import TopicPartition

        self._consumer = self._source._new_consumer()
        start = position if isinstance(position, int) else self._start_offset(split)
        self._consumer.assign([TopicPartition(self._topic, self._partition, start)])
        return start

    def _start_offset(self, split: Split) -> int:
        from confluent_kafka import TopicPartition

        c = self._source.config
        timeout = c.metadata_timeout
        mode: Any = "earliest" if split.params.get("new") else c.starting_offsets
        if isinstance(mode, Mapping):
            if split.split_id in mode:
                return int(mode[split.split_id])
            mode = c.offset_reset
        sid = split.split_id
        if mode == "committed":
            got = _ask(
                lambda: self._consumer.committed([self._tp], timeout=timeout),
                f"reading {sid}'s group offset",
                timeout,
            )
            if got and got[0].offset >= 0:
                return int(got[0].offset)
            mode = c.offset_reset
        low, high = _ask(
            lambda: self._consumer.get_watermark_offsets(self._tp, timeout=timeout),
            f"listing {sid}'s offsets",
            timeout,
        )
        if mode == "earliest":
            return int(low)
        if mode == "latest":
            return int(high)
        assert c.starting_timestamp_ms is not None
        at = TopicPartition(self._topic, self._partition, c.starting_timestamp_ms)
        found = _ask(
            lambda: self._consumer.offsets_for_times([at], timeout=timeout),
            f"offsets_for_times of {sid}",
            timeout,
        )
        return int(found[0].offset) if found and found[0].offset >= 0 else int(high)

    # -- reading -------------------------------------------------------------------------------

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._finished or self._closed:
            return None
        want = min(max_rows, self._source.max_poll_records)
        if self._stop is not None:
            want = min(want, self._stop - self._position)
        msgs = self._consumer.consume(num_messages=max(want, 1), timeout=max(timeout, 0.0))
        if msgs:
            msgs = self._check_errors(msgs)
        if self._stop is not None and msgs and msgs[-1].offset() >= self._stop:
            msgs = [m for m in msgs if m.offset() < self._stop]
        if not msgs:
            self._advance(None)
            return None
        n = len(msgs)
        values = pa.array([m.value() for m in msgs], pa.binary())
        offsets = pa.array(np.fromiter((m.offset() for m in msgs), np.int64, n))
        batch = self._to_batch(values, offsets, functools.partial(self._msg_column, msgs))
        self._advance(msgs[-1].offset())
        return batch

    def _fetch_position(self) -> int:
        """The consumer's fetch position (negative when it has none)."""
        pos = self._consumer.position([self._tp])
        return int(pos[0].offset) if pos else -1

    def _advance(self, last: int | None) -> None:
        """The position after a batch whose last offset is ``last``; after an empty one, the fetch
        position: transaction markers (and compacted gaps) advance it without a message."""
        if last is not None:
            self._position = last + 1
        else:
            pos = self._fetch_position()
            if pos > self._position:
                self._position = pos
        self._finished = self._stop is not None and self._position >= self._stop

    def _check_errors(self, msgs: list[Any]) -> list[Any]:
        """The messages without error events. librdkafka reports transient trouble (a broker down,
        a connection reset) as error events and recovers by itself: those are logged. Fatal errors
        and authorization failures raise :class:`ConnectorError`."""
        from confluent_kafka import KafkaError

        bad = [m for m in msgs if m.error() is not None]
        if not bad:
            return msgs
        for m in bad:
            err = m.error()
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            if err.fatal() or err.code() in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.GROUP_AUTHORIZATION_FAILED,
                KafkaError._AUTHENTICATION,
            ):
                raise ConnectorError(f"kafka: consuming {self.split.split_id} failed: {err}", retryable=False)
            log.warning("kafka: %s: %s (librdkafka retries)", self.split.split_id, err)
        return [m for m in msgs if m.error() is None]

    def _to_batch(
        self, values: pa.Array, offsets: pa.Array, column: Callable[[str], pa.Array]
    ) -> pa.RecordBatch:
        """The record batch of ``n`` consumed messages: their ``values`` decoded by the format (bad
        payloads to the error policy), keys decoded by the key format, the metadata columns
        (``column(name)`` gives ``_key``, ``_timestamp`` and ``_headers``, computed on demand)."""
        src = self._source
        n = len(values)
        topic = _repeat(self._topic, n)
        partition = pa.array(np.full(n, self._partition, np.int32))
        meta = pa.RecordBatch.from_arrays([topic, partition, offsets], schema=_DEAD_LETTER_META)
        batch, rows = decode_with_policy(src.format, values, src.error_policy, meta)
        keys: pa.Array | None = None
        if src.key_format is not None or "_key" in src.config.metadata_columns:
            keys = column("_key")
        if src.key_format is not None and len(rows):
            assert keys is not None
            take = pa.array(rows, pa.int64())
            kbatch, krows = decode_with_policy(
                src.key_format, keys.take(take), src.error_policy, meta.take(take)
            )
            if len(krows) != len(rows):
                batch = batch.take(pa.array(krows, pa.int64()))
                rows = rows[krows]
            for f, col in zip(kbatch.schema, kbatch.columns, strict=True):
                batch = batch.append_column(f, col)
        if not src.config.metadata_columns:
            return batch
        take = None if len(rows) == n else pa.array(rows, pa.int64())
        for name in src.config.metadata_columns:
            known = {"_key": keys, "_topic": topic, "_partition": partition, "_offset": offsets}
            col = known.get(name)
            if col is None:
                col = column(name)
            batch = batch.append_column(
                pa.field(name, _META_TYPES[name]), col if take is None else col.take(take)
            )
        return batch

    @staticmethod
    def _msg_column(msgs: list[Any], name: str) -> pa.Array:
        """``_key``, ``_timestamp`` or ``_headers`` of the client's messages."""
        if name == "_key":
            return pa.array([m.key() for m in msgs], pa.binary())
        if name == "_timestamp":
            return timestamps(np.fromiter((m.timestamp()[1] for m in msgs), np.int64, len(msgs)))
        return pa.array([m.headers() for m in msgs], _META_TYPES["_headers"])

    # -- state ---------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished

    def snapshot(self) -> Position:
        return self._position

    def commit(self, snapshot: Position) -> None:
        """Commit ``snapshot`` as the group offset (synchronously); failures are logged only."""
        if self._source.config.group_id is None or self._closed or snapshot is None:
            return
        try:
            self._commit_offset(int(snapshot))
        except Exception as exc:  # the checkpoint, not the group offset, is the truth
            log.warning("kafka: committing %s at %s failed: %s", self.split.split_id, snapshot, exc)

    def _commit_offset(self, offset: int) -> None:
        from confluent_kafka import TopicPartition

        self._consumer.commit(
            offsets=[TopicPartition(self._topic, self._partition, offset)], asynchronous=False
        )

    def lag(self) -> int | None:
        """Messages between the position and the (cached) high watermark, or the stop offset."""
        if self._closed:
            return None
        try:
            high = self._high_watermark()
        except Exception:
            return None
        if high < 0:
            return None
        end = high if self._stop is None else min(high, self._stop)
        return max(0, int(end) - self._position)

    def _high_watermark(self) -> int:
        _, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
        return int(high)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._consumer is None:
            return
        try:
            self._consumer.close()
        except Exception as exc:  # closing twice or after a fatal error
            log.debug("kafka: closing consumer: %s", exc)


class ColumnarReader(_KafkaReader):
    """One topic-partition read by its own ``arrowflow._ext.kafka_fetch.Fetcher`` (``fetch="columnar"``;
    see :mod:`arrowflow.connectors.kafka.columnar`): the same contract as the client reader."""

    _fetcher: Any

    def __init__(self, split: Split, position: Position, source: KafkaSource) -> None:
        self._fetcher = None
        columns = source.config.metadata_columns
        self._want_keys = source.key_format is not None or "_key" in columns
        self._want_ts = "_timestamp" in columns
        self._want_headers = "_headers" in columns
        super().__init__(split, position, source)

    def _connect(self, split: Split, position: Position) -> int:
        from .columnar import fetcher_config, kernel

        fetch = kernel()
        if isinstance(position, int):
            start = position
        else:
            self._consumer = self._source._new_consumer()
            try:
                start = self._start_offset(split)
            finally:
                consumer, self._consumer = self._consumer, None
                consumer.close()
        config = self._source._consumer_config()
        self._stats_cb = config.pop("stats_cb")
        self._fetcher = fetch.Fetcher(fetcher_config(config), self._topic)
        self._fetcher.assign([(self._partition, start)])
        return start

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._finished or self._closed:
            return None
        want = min(max_rows, self._source.max_poll_records)
        if self._stop is not None:
            want = min(want, self._stop - self._position)
        cols, errors = self._fetcher.read(
            max(want, 1),
            max(timeout, 0.0),
            self._source.fetch_max_bytes,
            keys=self._want_keys,
            timestamps=self._want_ts,
            headers=self._want_headers,
        )
        self._statistics()
        if errors:
            self._raise_or_log(errors)
        offsets: pa.Array = cols["offset"]
        n = len(offsets)
        if self._stop is not None and n and offsets[n - 1].as_py() >= self._stop:
            n = int(np.searchsorted(offsets.to_numpy(), self._stop))
            cols = {k: v.slice(0, n) for k, v in cols.items()}
            offsets = cols["offset"]
        if n == 0:
            self._advance(None)
            return None
        batch = self._to_batch(cols["value"], offsets, lambda name: self._column(cols, name))
        self._advance(offsets[n - 1].as_py())
        return batch

    @staticmethod
    def _column(cols: dict[str, pa.Array], name: str) -> pa.Array:
        if name == "_key":
            return cols["key"]
        if name == "_timestamp":
            return timestamps(cols["timestamp"].to_numpy())
        return cols["headers"]

    def _raise_or_log(self, errors: list[tuple[int, str, str, bool, int, int]]) -> None:
        """As the client path treats error messages: fatal errors and authorization failures raise
        :class:`ConnectorError`, transient trouble is logged (librdkafka recovers by itself)."""
        from .columnar import FATAL_CODES

        for code, name, reason, fatal, _partition, _offset in errors:
            if fatal or code in FATAL_CODES:
                raise ConnectorError(
                    f"kafka: consuming {self.split.split_id} failed: {name}: {reason}", retryable=False
                )
            log.warning("kafka: %s: %s: %s (librdkafka retries)", self.split.split_id, name, reason)

    def _statistics(self) -> None:
        report = self._fetcher.take_stats()
        if report is not None:
            self._stats_cb(report)

    def _fetch_position(self) -> int:
        return int(self._fetcher.position(self._partition))

    def _commit_offset(self, offset: int) -> None:
        self._fetcher.commit(self._partition, offset)

    def _high_watermark(self) -> int:
        return int(self._fetcher.watermarks(self._partition)[1])

    def close(self) -> None:
        super().close()
        if self._fetcher is not None:
            self._fetcher.close()


def timestamps(ms: np.ndarray) -> pa.Array:
    """The ``_timestamp`` column of int64 milliseconds (negative: librdkafka has none -> null)."""
    return pa.array(ms, _META_TYPES["_timestamp"], mask=ms < 0)


def _repeat(text: str, n: int) -> pa.Array:
    """A string array of ``n`` copies of ``text``, built from buffers (no Python object per row)."""
    data = text.encode()
    if len(data) * n > 0x7FFFFFFF:
        return pa.array([text] * n, pa.string())
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(data))
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)])
