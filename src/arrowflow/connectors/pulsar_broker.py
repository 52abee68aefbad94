"""Apache Pulsar (``pulsar-client``): :class:`PulsarSource` (a subscription, acks on checkpoint) and
:class:`PulsarSink` (``send_async`` with callbacks, at-least-once). Needs the ``pulsar`` extra; the
client is imported when a connector is built. The module is called ``pulsar_broker`` so that it never
shadows the ``pulsar`` package.

Source contract:

* Topics: ``topics`` (one name or a list; a partitioned topic is read through its partitions by the
  client) or ``topics_pattern``, a regular expression over full topic names of one namespace
  (``"persistent://public/default/orders-.*"``; a ``non-persistent://`` pattern matches
  non-persistent topics); the client subscribes to every matching topic and picks up new ones,
  from the subscription's initial position, within 60 seconds (pulsar-client's Python wrapper
  ignores ``pattern_auto_discovery_period``, apache/pulsar-client-python#171). Exactly one of
  ``topics`` and ``topics_pattern`` is given.
* Splits: ``consumers`` splits (default 1), ``split_id`` = ``"<subscription>/<i>"``. Each split is one
  ``pulsar.Consumer`` of the subscription over every topic. Several splits only make sense for
  ``shared``, ``key_shared`` and ``failover`` subscriptions: the broker spreads messages (or keys, or
  partitions) over them.
* ``subscription_type``: ``exclusive`` (default), ``shared``, ``key_shared``, ``failover``. For
  ``key_shared`` the consumers must be subscribed before messages are produced (Pulsar's rule), and
  producers that batch must use key-based batching (:class:`PulsarSink` does when it has a key).
* Start cursor (``start``): ``"earliest"`` (default) or ``"latest"`` pick where a *new* subscription
  starts (an existing one resumes from its acknowledged cursor); ``{"message_id": <bytes|base64>}``
  and ``{"publish_time": <ms | datetime>}`` start at that message id (inclusive) or at the first
  message published at or after that time. The two last are applied on the client (messages before
  them are skipped and acknowledged with the next commit) because seeking is not available on every
  broker (pulsar-lite); a subscription created for them starts at the earliest message. A
  ``message_id`` cursor (start or stop) needs a single topic: it applies to its own partition.
* Stop cursor (``stop``, makes the source bounded): ``"latest"`` (the last message of every partition
  of every topic when the reader opened, inclusive; the split finishes once each partition reached
  it; not with ``topics_pattern``), ``{"message_id": ...}`` (exclusive: stop before it) or
  ``{"publish_time": ...}`` (exclusive: stop at the first message published at or after it). Messages
  past the stop are neither returned nor acknowledged. A ``message_id``/``publish_time`` stop
  finishes the split only when a message at or past it arrives (on any partition). With ``"latest"``
  the subscription must still deliver each partition's last message (or the position must hold it):
  a subscription that already acknowledged a partition's end never finishes; use a new subscription
  name for each bounded read.
* Position (JSON): ``{"seq": <batches returned>, "last": {<topic>: <base64 MessageId>}}``, the id of
  the last message returned per topic partition, by full topic name (a partition of a partitioned
  topic is ``<topic>-partition-<i>``). Message ids are only compared within one partition: a broker
  numbers ledgers across all topics. For ``exclusive`` and ``failover`` subscriptions (one ordered
  consumer per partition) a reader opened at a position skips messages at or before those ids, so a
  restart neither re-reads nor skips (replayable). For ``shared``/``key_shared`` the position is not
  a log offset: what was not acknowledged is redelivered by the broker after a restart
  (at-least-once, duplicates possible).
* Redeliveries within a run are dropped: for ``exclusive``/``failover`` any message at or below the
  last id returned on its topic partition (pulsar-lite replays unacknowledged entries on its own),
  for ``shared``/``key_shared`` a second delivery of an id returned and not yet acknowledged.
* Pulsar acknowledges whole entries: when a producer batched messages into one entry and only some
  of them were committed, the broker redelivers the entry whole (duplicates) unless batch-index acks
  are enabled (``consumer_options={"batch_index_ack_enabled": True}`` and broker support).
* Every reader of one source shares one ``pulsar.Client`` (one connection).
* ``read_batch(max_rows, timeout)`` drains the client's receiver queue with ``batch_receive`` (each call
  waits at most ``batch_receive_timeout``), never longer than ``timeout`` plus that. Payloads are
  decoded by ``format`` (default ``Raw`` column ``value``) as one array; failures go to the error
  policy as rows ``payload, topic, message_id``. Metadata columns on request: ``_topic``, ``_key``,
  ``_message_id`` (serialized bytes), ``_publish_time``, ``_event_time``, ``_properties``,
  ``_redelivery_count``.
* ``commit(snapshot)`` acknowledges what the snapshot holds: the individual message ids returned (and
  skipped) up to it for ``shared``/``key_shared``, a cumulative ack of the last id per topic partition for
  ``exclusive``/``failover``. Nothing is acknowledged earlier, so a crash redelivers everything after
  the last durable checkpoint: at-least-once. A failed ack is logged (the broker redelivers; the next
  commit does not retry it).

Sink contract (batching, retries, error policy: :class:`~arrowflow.writer.AsyncBatchWriter`):

* One message per row to ``topic``; payload ``value_column`` as is, or the row (``value_columns`` or
  every column but the key/properties columns) encoded by ``format`` (default JSON, compiled kernel).
  ``key_column`` becomes the message key (Pulsar routes by it; null = no key), ``properties_column``
  (``map<string, string>``) the message properties.
* A request is ``send_async`` per message into the client's batching producer, then ``flush()`` and a
  wait for every send callback. Failed sends are retried when the client calls them transient
  (timeouts, lost connections, a full queue), otherwise the rows go to the error policy. ``flush()``
  (every checkpoint) returns once every row is acknowledged by the broker: at-least-once.
* Fast path: messages are built with the client's native ``MessageBuilder`` and handed to the native
  producer with one shared C-level callback that only records which results occurred (a Python
  callback per message costs a GIL hand-off each and capped the sink near the per-row baseline). The
  native ``flush()`` completes after every earlier message's callback ran. When every result is
  ``Ok`` the request is done; otherwise the whole request is sent again through the per-message
  callback path, which reports each row (so rows that had succeeded are duplicated: at-least-once).
  Rows over 1 MiB always take the per-message path (the client may refuse one alone, e.g. over the
  broker's maximum message size, and that row alone goes to the error policy). Without those native
  objects (another client version) only the per-message path is used.
* With ``max_in_flight=1`` (the default) messages reach the topic in write order (per key order too),
  except that rows over 1 MiB follow the other rows of their request, and a request sent again after
  a failure repeats rows.
"""

from __future__ import annotations

import base64
import logging
import operator
import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import check_choice, check_positive, check_type, hide_secrets, reveal_secrets
from ..error_policy import ErrorPolicy, ErrorPolicyLike
from ..errors import ConfigurationError, ConnectorError
from ..formats import Format, Json, Raw, decode_with_policy
from ..formats.base import as_binary
from ..source import Position, Source, Split, SplitReader
from ..writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult

__all__ = ["PulsarSink", "PulsarSource", "decode_message_id", "encode_message_id"]

log = logging.getLogger("arrowflow.pulsar")

SUBSCRIPTION_TYPES = ("exclusive", "shared", "key_shared", "failover")
_CUMULATIVE = ("exclusive", "failover")
_META: dict[str, pa.DataType] = {
    "_topic": pa.string(),
    "_key": pa.string(),
    "_message_id": pa.binary(),
    "_publish_time": pa.timestamp("ms", tz="UTC"),
    "_event_time": pa.timestamp("ms", tz="UTC"),
    "_properties": pa.map_(pa.string(), pa.string()),
    "_redelivery_count": pa.int32(),
}
#: Send results worth retrying (the connection, the broker or the client queue was the problem).
_RETRYABLE = {
    "Timeout",
    "ConnectError",
    "ReadError",
    "NotConnected",
    "LookupError",
    "ServiceUnitNotReady",
    "TooManyLookupRequestException",
    "BrokerPersistenceError",
    "BrokerMetadataError",
    "ProducerQueueIsFull",
    "MemoryBufferIsFull",
    "ProducerBlockedQuotaExceededError",
    "ProducerBlockedQuotaExceededException",
    "UnknownError",
    "Interrupted",
}
_INF = 1 << 62
_NONE = (-1, -1, -1)  # an order before every message id


def encode_message_id(message_id: Any) -> str:
    """A ``pulsar.MessageId`` as base64 text of its serialized bytes (JSON-safe)."""
    return base64.b64encode(message_id.serialize()).decode("ascii")


def decode_message_id(value: str | bytes) -> Any:
    """The ``pulsar.MessageId`` of base64 text or of serialized bytes."""
    import pulsar

    raw = base64.b64decode(value) if isinstance(value, str) else bytes(value)
    return pulsar.MessageId.deserialize(raw)


def _id_key(mid: Any) -> tuple[int, int, int, int]:
    """``(partition, ledger, entry, batch)``: the order of ids within one partition of one topic."""
    return (mid.partition(), mid.ledger_id(), mid.entry_id(), mid.batch_index())


def _order(mid: Any) -> tuple[int, int, int]:
    """``(ledger, entry, batch)``: the order of ids within one topic partition. Ids of different
    topics (or partitions) must never be compared: a broker numbers ledgers across all topics."""
    return (mid.ledger_id(), mid.entry_id(), mid.batch_index())


def _at_or_past(order: tuple[int, int, int], end: tuple[int, int, int]) -> bool:
    """Whether ``order`` is at or past ``end``, an id whose batch index ``_INF`` stands for "any
    message of that entry" (an entry-level or unbatched id)."""
    if order[:2] != end[:2]:
        return order[:2] > end[:2]
    return end[2] == _INF or order[2] >= end[2]


def _millis(value: Any, option: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(f"{option}: a datetime needs a time zone", option=option)
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"{option}: publish_time must be epoch ms (int) or a datetime", option=option
        )
    return value


def _parse_cursor(value: Any, option: str, named: tuple[str, ...]) -> tuple[str, Any]:
    """``(kind, value)`` of a cursor: a name in ``named`` or a one-key message_id/publish_time dict."""
    if isinstance(value, str):
        check_choice(option, value, named)
        return value, None
    if isinstance(value, Mapping) and len(value) == 1:
        kind, arg = next(iter(value.items()))
        if kind == "message_id":
            if not isinstance(arg, (str, bytes)):
                raise ConfigurationError(f"{option}: message_id must be bytes or base64 text", option=option)
            try:
                raw = base64.b64decode(arg, validate=True) if isinstance(arg, str) else bytes(arg)
            except ValueError as exc:
                raise ConfigurationError(f"{option}: message_id is not base64: {exc}", option=option) from exc
            return "message_id", base64.b64encode(raw).decode("ascii")
        if kind == "publish_time":
            return "publish_time", _millis(arg, option)
    raise ConfigurationError(
        f"{option}={value!r} is not allowed; use one of {', '.join(map(repr, named))}, "
        "{'message_id': ...} or {'publish_time': ...}",
        option=option,
    )


def _client(service_url: str, options: Mapping[str, Any], timeout: float) -> Any:
    import pulsar

    opts = reveal_secrets(options)
    opts.setdefault("operation_timeout_seconds", max(1, int(timeout)))
    opts.setdefault("logger", pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        return pulsar.Client(service_url, **opts)
    except Exception as exc:
        raise ConnectorError(f"pulsar: client for {service_url!r} failed: {exc}", retryable=True) from exc


# ----------------------------------------------------------------------------------------- source


class PulsarSource(Source):
    """Reads a Pulsar subscription into record batches. See the module docstring for the contract."""

    name = "pulsar"

    def __init__(
        self,
        service_url: str = "pulsar://127.0.0.1:6650",
        *,
        topics: str | Sequence[str] | None = None,
        topics_pattern: str | None = None,
        subscription: str,
        subscription_type: str = "exclusive",
        consumers: int = 1,
        start: Any = "earliest",
        stop: Any = None,
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        error_policy: ErrorPolicyLike = "fail",
        receiver_queue_size: int = 1000,
        batch_receive_timeout: float = 0.02,
        operation_timeout: float = 30.0,
        client_options: Mapping[str, Any] | None = None,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_type("service_url", service_url, str)
        if not service_url.startswith(("pulsar://", "pulsar+ssl://")):
            raise ConfigurationError(
                f"service_url {service_url!r} must start with pulsar://", option="service_url"
            )
        if (topics is None) == (topics_pattern is None):
            raise ConfigurationError("give exactly one of topics and topics_pattern", option="topics")
        topic_list: list[str] = []
        if topics is not None:
            topic_list = [topics] if isinstance(topics, str) else list(topics)
            if not topic_list or not all(isinstance(t, str) and t for t in topic_list):
                raise ConfigurationError("topics must be one or more non-empty topic names", option="topics")
        else:
            check_type("topics_pattern", topics_pattern, str)
            try:
                re.compile(str(topics_pattern))
            except re.error as exc:
                raise ConfigurationError(
                    f"topics_pattern {topics_pattern!r} is not a regular expression: {exc}",
                    option="topics_pattern",
                ) from exc
        check_type("subscription", subscription, str)
        if not subscription:
            raise ConfigurationError("subscription must not be empty", option="subscription")
        check_choice("subscription_type", subscription_type, SUBSCRIPTION_TYPES)
        check_type("consumers", consumers, int)
        check_positive("consumers", consumers)
        if consumers > 1 and subscription_type == "exclusive":
            raise ConfigurationError(
                "an exclusive subscription has one consumer; use consumers=1", option="consumers"
            )
        self.start = _parse_cursor(start, "start", ("earliest", "latest"))
        self.stop = None if stop is None else _parse_cursor(stop, "stop", ("latest",))
        if self.stop is not None and self.stop[0] == "latest" and topics_pattern is not None:
            raise ConfigurationError(
                "stop='latest' needs topics (the topics a pattern matches are not known in advance)",
                option="stop",
            )
        for option, cursor in (("start", self.start), ("stop", self.stop)):
            if cursor is not None and cursor[0] == "message_id" and len(topic_list) != 1:
                raise ConfigurationError(
                    f"{option}={{'message_id': ...}} needs a single topic: a message id belongs to one",
                    option=option,
                )
        check_type("format", format, Format, allow_none=True)
        self.metadata_columns = tuple(metadata_columns)
        for m in self.metadata_columns:
            check_choice("metadata_columns", m, tuple(_META))
        check_type("receiver_queue_size", receiver_queue_size, int)
        check_positive("receiver_queue_size", receiver_queue_size)
        check_positive("batch_receive_timeout", batch_receive_timeout)
        check_positive("operation_timeout", operation_timeout)
        self.service_url = service_url
        self.topics = tuple(topic_list)
        self.topics_pattern = topics_pattern
        self.subscription = subscription
        self.subscription_type = subscription_type
        self.consumers = consumers
        self.format: Format = format if format is not None else Raw()
        self.error_policy = ErrorPolicy.resolve(error_policy, name="pulsar source")
        self.receiver_queue_size = receiver_queue_size
        self.batch_receive_timeout = float(batch_receive_timeout)
        self.operation_timeout = float(operation_timeout)
        self.client_options = hide_secrets(dict(client_options or {}))
        self.consumer_options = dict(consumer_options or {})
        self._client_lock = threading.Lock()
        self._client: Any = None
        self._client_users = 0

    def _acquire_client(self) -> Any:
        # One client (one connection) for every reader of this source: cheaper, and pulsar-lite
        # times out a second Key_Shared consumer that arrives on another connection.
        with self._client_lock:
            if self._client is None:
                self._client = _client(self.service_url, self.client_options, self.operation_timeout)
            self._client_users += 1
            return self._client

    def _release_client(self) -> None:
        with self._client_lock:
            self._client_users -= 1
            if self._client_users == 0 and self._client is not None:
                client, self._client = self._client, None
                try:
                    client.close()
                except Exception as exc:
                    log.debug("pulsar: client close: %s", exc)

    @property
    def bounded(self) -> bool:
        return self.stop is not None

    @property
    def replayable(self) -> bool:  # type: ignore[override]
        """``exclusive``/``failover`` read ordered partitions from a position; ``shared`` does not."""
        return self.subscription_type in _CUMULATIVE

    @property
    def schema(self) -> pa.Schema | None:
        base = self.format.schema
        if base is None:
            return None
        return pa.schema([*base, *(pa.field(m, _META[m]) for m in self.metadata_columns)])

    def plan(self) -> list[Split]:
        return [
            Split(split_id=f"{self.subscription}/{i}", bounded=self.bounded, params={"index": i})
            for i in range(self.consumers)
        ]

    def open(self, split: Split, position: Position = None) -> PulsarSplitReader:
        return PulsarSplitReader(self, split, position)


class PulsarSplitReader(SplitReader):
    """One consumer of the subscription. See the module docstring."""

    def __init__(self, source: PulsarSource, split: Split, position: Position = None) -> None:
        super().__init__(split, position)
        import pulsar

        self._source = source
        self._closed = False
        self._finished = False
        self._seq = int(position["seq"]) if position else 0
        self._last: dict[str, str] = dict(position["last"]) if position else {}
        self._position: Position = position
        self._cumulative = source.subscription_type in _CUMULATIVE
        # Exclusive/failover: the highest id returned per topic partition (by its full topic name);
        # anything at or below it is a redelivery (after a restart from ``position``, or a broker
        # replaying unacknowledged entries, as pulsar-lite does) and is skipped.
        self._high: dict[str, tuple[int, int, int]] = {}
        # The same as message ids, for the fast path (see ``_fast``).
        self._high_ids: dict[str, Any] = {}
        # Shared/key_shared: (topic, ledger, entry, batch) of messages returned and not yet
        # acknowledged; a second delivery is dropped.
        self._outstanding: set[tuple[str, int, int, int]] = set()
        if position and self._cumulative:
            for topic, b64 in self._last.items():
                self._high_ids[topic] = decode_message_id(b64)
                self._high[topic] = _order(self._high_ids[topic])
        self._carry: list[Any] = []  # received, not yet classified
        # (seq, [(topic, message id)]): acknowledged once a snapshot with seq >= this one is committed.
        self._pending: deque[tuple[int, list[tuple[str, Any]]]] = deque()
        self._skipped: list[tuple[str, Any]] = []  # (topic, message id) skipped, acked with the next batch
        self._client = source._acquire_client()
        ctype = {
            "exclusive": pulsar.ConsumerType.Exclusive,
            "shared": pulsar.ConsumerType.Shared,
            "key_shared": pulsar.ConsumerType.KeyShared,
            "failover": pulsar.ConsumerType.Failover,
        }[source.subscription_type]
        initial = (
            pulsar.InitialPosition.Latest if source.start[0] == "latest" else pulsar.InitialPosition.Earliest
        )
        self._start_id: tuple[int, int, int, int] | None = None
        self._start_time: int | None = None
        if source.start[0] == "message_id":
            self._start_id = _id_key(decode_message_id(source.start[1]))
        elif source.start[0] == "publish_time":
            self._start_time = int(source.start[1])
        self._stop_id: tuple[int, int, int, int] | None = None
        self._stop_time: int | None = None
        # stop="latest": the last id of every topic partition when the reader opened (batch index
        # _INF: any message of that entry), the partitions whose end was not reached yet, and
        # whether none is left (then the split finishes at the next empty receive).
        self._ends: dict[str, tuple[int, int, int]] | None = None
        self._unreached: set[str] = set()
        self._reached_end = False
        opts: dict[str, Any] = {
            "consumer_type": ctype,
            "initial_position": initial,
            "receiver_queue_size": source.receiver_queue_size,
            "batch_receive_policy": pulsar.ConsumerBatchReceivePolicy(
                source.receiver_queue_size, -1, max(1, int(source.batch_receive_timeout * 1000))
            ),
            **source.consumer_options,
        }
        if (source.topics_pattern or "").startswith("non-persistent://"):
            # The client drops the domain from a pattern and takes it from this option instead.
            opts.setdefault("regex_subscription_mode", pulsar.RegexSubscriptionMode.NonPersistentOnly)
        topics = list(source.topics)
        what: Any = (
            re.compile(source.topics_pattern)
            if source.topics_pattern is not None
            else topics
            if len(topics) > 1
            else topics[0]
        )
        #: The one topic partition every message comes from (one non-partitioned topic), else None.
        self._only_topic: str | None = None
        try:
            self._consumer = self._client.subscribe(what, source.subscription, **opts)
            if source.topics_pattern is None and len(topics) == 1:
                parts = self._client.get_topic_partitions(topics[0])
                if len(parts) == 1:
                    self._only_topic = parts[0]
            if source.stop is not None:
                kind, arg = source.stop
                if kind == "message_id":
                    self._stop_id = _id_key(decode_message_id(arg))
                elif kind == "publish_time":
                    self._stop_time = int(arg)
                else:
                    self._ends = self._last_ids()
                    # Partitions already returned up to their end before a restart count as reached.
                    self._unreached = {
                        t for t, end in self._ends.items() if not _at_or_past(self._high.get(t, _NONE), end)
                    }
                    if not self._unreached:
                        self._finished = True
        except ConnectorError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise ConnectorError(
                f"pulsar: subscribing {split.split_id!r} failed: {exc}", retryable=True
            ) from exc
        # The client's own batch_receive wraps every message in a Python ``pulsar.Message`` (~1 us per
        # message); its binding returns the ``_pulsar.Message`` objects the wrappers hold, which have
        # every method this reader calls (and which the client's acknowledge methods accept).
        binding = getattr(self._consumer, "_consumer", None)
        self._batch_receive = getattr(binding, "batch_receive", None) or self._consumer.batch_receive
        # Exclusive/failover without start or stop bounds (the common case): a message is returned
        # unless it is not after the last one returned on its topic partition (a redelivery), which
        # one comparison of message ids decides; no per-message id fields are read.
        self._fast = (
            self._cumulative
            and self._ends is None
            and self._stop_id is None
            and self._stop_time is None
            and self._start_id is None
            and self._start_time is None
        )

    def _last_ids(self) -> dict[str, tuple[int, int, int]]:
        """The id of the last message of every partition of the source's topics now, by the
        partition's full topic name (empty partitions are left out). A consumer of several topics or
        partitions cannot tell its last message id, so each partition gets a short non-durable reader
        positioned on its last message."""
        import pulsar

        timeout_ms = int(self._source.operation_timeout * 1000)
        ends: dict[str, tuple[int, int, int]] = {}
        for topic in self._source.topics:
            for part in self._client.get_topic_partitions(topic):
                reader = self._client.create_reader(
                    part, pulsar.MessageId.latest, start_message_id_inclusive=True
                )
                try:
                    if reader.has_message_available():
                        last = _order(reader.read_next(timeout_ms).message_id())
                        # An unbatched message has batch index -1: it is the whole entry.
                        ends[part] = (last[0], last[1], last[2] if last[2] >= 0 else _INF)
                finally:
                    reader.close()
        return ends

    # -- reading ----------------------------------------------------------------------------

    def _classify(self, msg: Any, topic: str, mid: Any, order: tuple[int, int, int]) -> int:
        """0 = return it, 1 = skip (ack later), 2 = past the stop (leave unacknowledged), 3 = duplicate.

        ``mid``/``order``: the message's id and :func:`_order` of it (computed once by the caller)."""
        if self._ends is not None:
            end = self._ends.get(topic)
            if end is None or order > end:  # empty when the reader opened, or past its end
                if not self._unreached:
                    self._finished = True
                return 2
            if topic in self._unreached and _at_or_past(order, end):
                self._unreached.discard(topic)
                self._reached_end = not self._unreached
        if self._cumulative:
            high = self._high.get(topic)
            if high is not None and order <= high:
                return 1
        elif (topic, *order) in self._outstanding:
            return 3
        if self._stop_id is not None:
            key = (mid.partition(), *order)
            if key[0] == self._stop_id[0] and key >= self._stop_id:
                self._finished = True
                return 2
        if self._stop_time is not None and msg.publish_timestamp() >= self._stop_time:
            self._finished = True
            return 2
        verdict = 0
        if self._start_id is not None:
            key = (mid.partition(), *order)
            if key[0] == self._start_id[0] and key < self._start_id:
                verdict = 1
        if self._start_time is not None and msg.publish_timestamp() < self._start_time:
            verdict = 1
        if self._cumulative:
            self._high[topic] = order
        elif verdict == 0:
            self._outstanding.add((topic, *order))
        return verdict

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed or self._finished:
            return None
        deadline = time.monotonic() + max(timeout, 0.0)
        topics: list[str] = []
        msgs: list[Any] = []
        mids: list[Any] = []
        while len(msgs) < max_rows and not self._finished:
            if not self._carry:
                try:
                    got = self._batch_receive()
                except Exception as exc:  # disconnected: the client reconnects by itself
                    log.warning("pulsar: receive on %s failed: %s", self.split.split_id, exc)
                    got = []
                if not got:
                    if self._reached_end and not msgs:
                        self._finished = True
                    if msgs or time.monotonic() >= deadline:
                        break
                    continue
                self._carry = list(got)
            room = max_rows - len(msgs)
            chunk, self._carry = self._carry[:room], self._carry[room:]
            self._take(chunk, topics, msgs, mids)
            if time.monotonic() >= deadline:
                break
        if self._finished:
            self._carry = []
        if not msgs:
            return None
        return self._to_batch(topics if self._only_topic is None else None, msgs, mids)

    def _take(self, chunk: list[Any], topics: list[str], msgs: list[Any], mids: list[Any]) -> None:
        """Classify ``chunk`` (received messages, in order) and append those to return."""
        only = self._only_topic
        if self._fast and only is not None:
            ids = [m.message_id() for m in chunk]
            high = self._high_ids.get(only)
            if (high is None or ids[0] > high) and all(map(operator.gt, ids[1:], ids)):
                # In order and all after the last one returned (no redelivery): take them as they are.
                msgs += chunk
                mids += ids
                self._high_ids[only] = ids[-1]
                return
            for msg, mid in zip(chunk, ids, strict=True):
                if high is not None and not mid > high:
                    self._skipped.append((only, mid))  # a redelivery: acknowledged later
                    continue
                high = mid
                msgs.append(msg)
                mids.append(mid)
            if high is not None:
                self._high_ids[only] = high
            return
        if self._fast:
            highs = self._high_ids
            for msg in chunk:
                topic = msg.topic_name()
                mid = msg.message_id()
                last = highs.get(topic)
                if last is not None and not mid > last:
                    self._skipped.append((topic, mid))
                    continue
                highs[topic] = mid
                topics.append(topic)
                msgs.append(msg)
                mids.append(mid)
            return
        for msg in chunk:
            if self._finished:
                break
            topic = only or msg.topic_name()
            mid = msg.message_id()
            verdict = self._classify(msg, topic, mid, _order(mid))
            if verdict == 0:
                topics.append(topic)
                msgs.append(msg)
                mids.append(mid)
            elif verdict == 1:
                self._skipped.append((topic, mid))

    def _to_batch(self, topics: list[str] | None, msgs: list[Any], mids: list[Any]) -> pa.RecordBatch:
        """The batch of ``msgs`` (with their ``mids``, from ``topics``, or all from ``_only_topic``)."""
        src = self._source
        self._seq += 1
        # What the commit of this batch acknowledges. Cumulative acks need only the highest id per
        # topic partition (returned or skipped; ids of one partition compare as their order);
        # individual acks need every id.
        acked: list[tuple[str, Any]]
        only = self._only_topic
        names: list[str]
        if topics is None:
            assert only is not None
            names = [only] * len(mids)
            last: dict[str, Any] = {only: mids[-1]}
        else:
            names = topics
            last = dict(zip(topics, mids, strict=True))
        if self._cumulative:
            top = dict(last)
            for topic, mid in self._skipped:
                if topic not in top or mid > top[topic]:
                    top[topic] = mid
            acked = list(top.items())
        else:
            acked = [*zip(names, mids, strict=True), *self._skipped]
        self._pending.append((self._seq, acked))
        self._skipped = []
        self._last.update({k: encode_message_id(mid) for k, mid in last.items()})
        self._position = {"seq": self._seq, "last": dict(self._last)}
        values = pa.array([m.data() for m in msgs], pa.binary())

        def topic_column() -> pa.Array:
            return pa.array(names, pa.string())

        def id_column() -> pa.Array:
            return pa.array([mid.serialize() for mid in mids], pa.binary())

        def meta() -> pa.RecordBatch:  # built only when a payload fails (for the error policy)
            return pa.RecordBatch.from_arrays([topic_column(), id_column()], names=["topic", "message_id"])

        batch, rows = decode_with_policy(src.format, values, src.error_policy, meta)
        take = None if len(rows) == len(msgs) else pa.array(rows, pa.int64())
        for name in src.metadata_columns:
            if name == "_topic":
                col = topic_column()
            elif name == "_message_id":
                col = id_column()
            elif name == "_key":
                col = pa.array([m.partition_key() or None for m in msgs], pa.string())
            elif name == "_publish_time":
                col = pa.array([m.publish_timestamp() for m in msgs], pa.int64()).cast(_META[name])
            elif name == "_event_time":
                ev = [m.event_timestamp() for m in msgs]
                col = pa.array([e or None for e in ev], pa.int64()).cast(_META[name])
            elif name == "_properties":
                col = pa.array([list(m.properties().items()) for m in msgs], _META[name])
            else:
                col = pa.array([m.redelivery_count() for m in msgs], pa.int32())
            batch = batch.append_column(pa.field(name, _META[name]), col if take is None else col.take(take))
        return batch

    @property
    def finished(self) -> bool:
        return self._finished

    def snapshot(self) -> Position:
        return self._position

    def commit(self, snapshot: Position) -> None:
        """Acknowledge the messages returned (and skipped) up to ``snapshot``."""
        if not snapshot or self._closed:
            return
        upto = int(snapshot["seq"])
        ids: list[tuple[str, Any]] = []
        while self._pending and self._pending[0][0] <= upto:
            ids.extend(self._pending.popleft()[1])
        if not ids:
            return
        try:
            if self._cumulative:
                last: dict[str, Any] = {}  # the highest id per topic partition
                for topic, mid in ids:
                    if topic not in last or _order(mid) > _order(last[topic]):
                        last[topic] = mid
                for mid in last.values():
                    self._consumer.acknowledge_cumulative(mid)
            else:
                ack = self._consumer.acknowledge
                for topic, mid in ids:
                    ack(mid)
                    self._outstanding.discard((topic, *_order(mid)))
        except Exception as exc:  # the broker redelivers what was not acknowledged
            log.warning("pulsar: ack up to %s on %s failed: %s", upto, self.split.split_id, exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        consumer = getattr(self, "_consumer", None)
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:
                log.debug("pulsar: consumer close: %s", exc)
        self._source._release_client()


# ------------------------------------------------------------------------------------------- sink


#: Rows larger than this skip the native fast path (the client may refuse them one by one).
_NATIVE_MAX_BYTES = 1 << 20


def _native_sender(producer: Any) -> tuple[Any, Any, Any] | None:
    """``(MessageBuilder, native send_async, Result.Ok)`` of the client's extension, if it has them."""
    try:
        import _pulsar

        native = producer._producer
        return _pulsar.MessageBuilder, native.send_async, _pulsar.Result.Ok
    except (ImportError, AttributeError):
        return None


class PulsarSink(AsyncBatchWriter):
    """Publishes one Pulsar message per row with ``send_async``. See the module docstring."""

    name = "pulsar"

    def __init__(
        self,
        service_url: str = "pulsar://127.0.0.1:6650",
        *,
        topic: str,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        key_column: str | None = None,
        properties_column: str | None = None,
        producer_batching: bool = True,
        batching_max_messages: int = 1000,
        batching_max_bytes: int = 128 * 1024,
        batching_max_publish_delay_ms: int = 10,
        key_based_batching: bool | None = None,
        compression: str | None = None,
        send_timeout: float = 30.0,
        operation_timeout: float = 30.0,
        client_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
        batching: BatchingConfig | None = None,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        import pulsar

        check_type("service_url", service_url, str)
        if not service_url.startswith(("pulsar://", "pulsar+ssl://")):
            raise ConfigurationError(
                f"service_url {service_url!r} must start with pulsar://", option="service_url"
            )
        check_type("topic", topic, str)
        if not topic:
            raise ConfigurationError("topic must not be empty", option="topic")
        if value_column is not None and (value_columns is not None or format is not None):
            raise ConfigurationError(
                "value_column is sent as is; it excludes value_columns and format", option="value_column"
            )
        check_type("format", format, Format, allow_none=True)
        check_type("key_column", key_column, str, allow_none=True)
        check_type("properties_column", properties_column, str, allow_none=True)
        for opt, num in (
            ("batching_max_messages", batching_max_messages),
            ("batching_max_bytes", batching_max_bytes),
            ("batching_max_publish_delay_ms", batching_max_publish_delay_ms),
        ):
            check_type(opt, num, int)
            check_positive(opt, num)
        check_positive("send_timeout", send_timeout)
        check_positive("operation_timeout", operation_timeout)
        compressions = {
            None: pulsar.CompressionType.NONE,
            "lz4": pulsar.CompressionType.LZ4,
            "zlib": pulsar.CompressionType.ZLib,
            "zstd": pulsar.CompressionType.ZSTD,
            "snappy": pulsar.CompressionType.SNAPPY,
        }
        check_choice("compression", compression, tuple(compressions))
        self.service_url = service_url
        self.topic = topic
        self.value_column = value_column
        self.value_columns = tuple(value_columns) if value_columns is not None else None
        self.format: Format = format if format is not None else Json()
        self.key_column = key_column
        self.properties_column = properties_column
        self.send_timeout = float(send_timeout)
        self.client_options = hide_secrets(dict(client_options or {}))
        config = batching or BatchingConfig(
            max_request_rows=5000,
            max_request_bytes=None,
            max_in_flight=1,
            max_time_in_buffer=0.5,
            max_buffered_rows=50_000,
        )
        super().__init__(config, error_policy=error_policy, name="pulsar sink")
        if key_based_batching is None:
            key_based_batching = key_column is not None
        popts: dict[str, Any] = {
            "batching_enabled": producer_batching,
            "batching_max_messages": batching_max_messages,
            "batching_max_allowed_size_in_bytes": batching_max_bytes,
            "batching_max_publish_delay_ms": batching_max_publish_delay_ms,
            "batching_type": pulsar.BatchingType.KeyBased
            if key_based_batching
            else pulsar.BatchingType.Default,
            "compression_type": compressions[compression],
            "send_timeout_millis": int(send_timeout * 1000),
            "block_if_queue_full": True,
            "max_pending_messages": max(1000, config.max_request_rows),
            **dict(producer_options or {}),
        }
        self._client = _client(service_url, self.client_options, operation_timeout)
        try:
            self._producer = self._client.create_producer(topic, **popts)
        except Exception as exc:
            self._client.close()
            raise ConnectorError(f"pulsar: producer for {topic!r} failed: {exc}", retryable=True) from exc
        self._native = _native_sender(self._producer)

    def encode(self, batch: pa.RecordBatch) -> pa.Array | Encoded:
        n = batch.num_rows
        used = {self.key_column, self.properties_column} - {None}
        if self.value_column is not None:
            col = batch.column(self.value_column)
            if not (pa.types.is_binary(col.type) or pa.types.is_string(col.type)):
                col = col.cast(pa.string())
            payloads = as_binary(col)
            failed = np.flatnonzero(~np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool))
            errors = ["null value"] * len(failed)
        else:
            if self.value_columns is not None:
                cols = list(self.value_columns)
            else:
                cols = [c for c in batch.schema.names if c not in used]
            enc = self.format.encode(batch.select(cols))
            payloads, failed, errors = (
                as_binary(enc.payloads),
                np.asarray(enc.failed, np.int64),
                list(enc.errors),
            )
        if pa.types.is_large_binary(payloads.type):
            payloads = payloads.cast(pa.binary())
        keys = (
            batch.column(self.key_column).cast(pa.string()) if self.key_column else pa.nulls(n, pa.string())
        )
        fields = [payloads, keys]
        names = ["payload", "key"]
        if self.properties_column is not None:
            props = batch.column(self.properties_column)
            if not pa.types.is_map(props.type):
                raise ConfigurationError(
                    f"properties_column {self.properties_column!r} must be map<string, string>, "
                    f"not {props.type}",
                    option="properties_column",
                )
            fields.append(props.cast(pa.map_(pa.string(), pa.string())))
            names.append("properties")
        entries = pa.StructArray.from_arrays(fields, names=names)
        if len(failed) == 0:
            return entries
        good = np.setdiff1d(np.arange(n, dtype=np.int64), failed, assume_unique=True)
        return Encoded(entries=entries.take(pa.array(good)), failed=failed, errors=errors)

    def entry_sizes(self, entries: pa.Array) -> np.ndarray:
        sizes: np.ndarray = super().entry_sizes(entries.field("payload"))
        return sizes + np.asarray(pc.binary_length(entries.field("key")).fill_null(0).to_numpy(), np.int64)

    def submit(self, entries: pa.Array) -> SubmitResult | None:
        n = len(entries)
        if n == 0:
            return None
        payloads = entries.field("payload")
        bufs = payloads.buffers()
        offsets = np.frombuffer(bufs[1], np.int32)[payloads.offset : payloads.offset + n + 1].tolist()
        data = bufs[2].to_pybytes() if bufs[2] is not None else b""
        keys = entries.field("key").to_pylist() if self.key_column is not None else None
        props = entries.field("properties").to_pylist() if self.properties_column is not None else None
        rows = list(range(n))
        if self._native is not None:
            # Rows the client may refuse on their own (over _NATIVE_MAX_BYTES) take the per-message path,
            # so that one refused row does not make the whole request go again.
            sizes = np.diff(np.asarray(offsets, np.int64))
            small = np.flatnonzero(sizes <= _NATIVE_MAX_BYTES).tolist()
            if small and self._submit_native(small, data, offsets, keys, props):
                rows = np.flatnonzero(sizes > _NATIVE_MAX_BYTES).tolist()
                if not rows:
                    return None
        return self._submit_per_message(rows, data, offsets, keys, props)

    def _submit_native(
        self,
        rows: list[int],
        data: bytes,
        offsets: list[int],
        keys: list[Any] | None,
        props: list[Any] | None,
    ) -> bool:
        """Send ``rows`` through the native producer with one shared C-level callback; True if all
        were Ok (else the caller sends them again, per message)."""
        assert self._native is not None
        builder, send, ok = self._native
        seen: dict[Any, Any] = {}
        record = seen.__setitem__  # (result, message id): a builtin, so no Python frame per callback
        n = len(rows)
        try:
            if keys is None and props is None:
                for i in rows:
                    send(builder().content(data[offsets[i] : offsets[i + 1]]).build(), record)
            else:
                for i in rows:
                    mb = builder().content(data[offsets[i] : offsets[i + 1]])
                    if keys is not None and keys[i] is not None:
                        mb.partition_key(keys[i])
                    if props is not None and props[i]:
                        for k, v in props[i]:
                            mb.property(k, v)
                    send(mb.build(), record)
            self._producer.flush()
        except Exception as exc:  # a refused send or a failed flush: redo with per-row results
            log.info("pulsar sink: %d-message request failed on the fast path (%s); resending", n, exc)
            return False
        if len(seen) == 1 and ok in seen:
            return True
        log.info("pulsar sink: %d-message request had results %s; resending per message", n, list(seen))
        return False

    def _submit_per_message(
        self,
        rows: list[int],
        data: bytes,
        offsets: list[int],
        keys: list[Any] | None,
        props: list[Any] | None,
    ) -> SubmitResult | None:
        """Send ``rows`` with one Python callback each: every row's own result."""
        n = len(rows)
        results: list[Any] = [None] * n
        remaining = [n]
        done = threading.Event()
        lock = threading.Lock()

        def callback_for(i: int) -> Any:
            def cb(res: Any, _msg_id: Any) -> None:
                results[i] = res
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()

            return cb

        send = self._producer.send_async
        for j, i in enumerate(rows):
            kwargs: dict[str, Any] = {}
            if keys is not None and keys[i] is not None:
                kwargs["partition_key"] = keys[i]
            if props is not None and props[i]:
                kwargs["properties"] = dict(props[i])
            try:
                send(data[offsets[i] : offsets[i + 1]], callback_for(j), **kwargs)
            except Exception as exc:  # the producer refused it outright (closed, too big)
                results[j] = exc
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
        try:
            self._producer.flush()
        except Exception as exc:  # the callbacks still report each message
            log.debug("pulsar: flush: %s", exc)
        if not done.wait(self.send_timeout * 2 + 5):
            raise ConnectorError("pulsar: send callbacks did not arrive in time", retryable=True)
        failed, errors, retryable = [], [], []
        for j, res in enumerate(results):
            name = getattr(res, "name", None)
            if name == "Ok":
                continue
            failed.append(rows[j])
            if isinstance(res, Exception):
                errors.append(f"{type(res).__name__}: {res}")
                retryable.append(type(res).__name__ in _RETRYABLE)
            else:
                errors.append(f"send failed: {name}")
                retryable.append(name in _RETRYABLE)
        if not failed:
            return None
        return SubmitResult(
            failed=np.asarray(failed, np.int64), errors=errors, retryable=np.asarray(retryable)
        )

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            try:
                self._producer.close()
            except Exception as exc:
                log.debug("pulsar sink: producer close: %s", exc)
            try:
                self._client.close()
            except Exception as exc:
                log.debug("pulsar sink: client close: %s", exc)
