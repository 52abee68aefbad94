"""Apache Pulsar source (``pulsar-client``): a subscription, acknowledged on checkpoint commit.

Contract:


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
"""

from __future__ import annotations

import logging
import operator
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ...config import REQUIRED
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format
from ...source import Position, Split
from .._messaging import MessageReader, MessageSource
from ._client import (
    INF,
    NONE,
    at_or_past,
    decode_message_id,
    encode_message_id,
    id_key,
    make_client,
    partition_order,
)
from .config import DEFAULT_SERVICE_URL, PulsarSourceConfig

__all__ = ["PulsarSource", "PulsarSplitReader"]

log = logging.getLogger("arrowflow.pulsar")


class PulsarSource(MessageSource[PulsarSourceConfig]):
    """Reads a Pulsar subscription into record batches. See the module docstring for the contract."""

    name = "pulsar"

    def __init__(
        self,
        service_url: str = DEFAULT_SERVICE_URL,
        *,
        topics: str | Sequence[str] | None = None,
        topics_pattern: str | None = None,
        subscription: str = REQUIRED,
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
        config: PulsarSourceConfig | None = None,
    ) -> None:
        config = self._init_messages(locals())
        self.topics = config.topic_list
        #: The parsed cursors, ``(kind, value)`` (``stop`` is ``None`` for an unbounded source).
        self.start: tuple[str, Any] = config._start
        self.stop: tuple[str, Any] | None = config._stop
        self._client_lock = threading.Lock()
        self._client: Any = None
        self._client_users = 0

    def _acquire_client(self) -> Any:
        # One client (one connection) for every reader of this source: cheaper, and pulsar-lite
        # times out a second Key_Shared consumer that arrives on another connection.
        with self._client_lock:
            if self._client is None:
                cfg = self.config
                self._client = make_client(cfg.service_url, cfg.client_options or {}, cfg.operation_timeout)
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
        return bool(self.config.cumulative)

    def plan(self) -> list[Split]:
        return self._consumer_splits(self.config.subscription, self.config.consumers)

    def open(self, split: Split, position: Position = None) -> PulsarSplitReader:
        return PulsarSplitReader(self, split, position)


class PulsarSplitReader(MessageReader):
    """One consumer of the subscription. See the module docstring."""

    def __init__(self, source: PulsarSource, split: Split, position: Position = None) -> None:
        super().__init__(source, split, position)
        import pulsar

        cfg: PulsarSourceConfig = source.config
        self._cfg = cfg
        self._finished = False
        self._seq = int(position["seq"]) if position else 0
        self._last: dict[str, str] = dict(position["last"]) if position else {}
        self._cumulative = cfg.cumulative
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
                self._high[topic] = partition_order(self._high_ids[topic])
        self._carry: list[Any] = []  # received, not yet classified
        self._skipped: list[tuple[str, Any]] = []  # (topic, message id) skipped, acked with the next batch
        self._client = source._acquire_client()
        ctype = {
            "exclusive": pulsar.ConsumerType.Exclusive,
            "shared": pulsar.ConsumerType.Shared,
            "key_shared": pulsar.ConsumerType.KeyShared,
            "failover": pulsar.ConsumerType.Failover,
        }[cfg.subscription_type]
        initial = (
            pulsar.InitialPosition.Latest if source.start[0] == "latest" else pulsar.InitialPosition.Earliest
        )
        self._start_id: tuple[int, int, int, int] | None = None
        self._start_time: int | None = None
        if source.start[0] == "message_id":
            self._start_id = id_key(decode_message_id(source.start[1]))
        elif source.start[0] == "publish_time":
            self._start_time = int(source.start[1])
        self._stop_id: tuple[int, int, int, int] | None = None
        self._stop_time: int | None = None
        # stop="latest": the last id of every topic partition when the reader opened (batch index
        # INF: any message of that entry), the partitions whose end was not reached yet, and
        # whether none is left (then the split finishes at the next empty receive).
        self._ends: dict[str, tuple[int, int, int]] | None = None
        self._unreached: set[str] = set()
        self._reached_end = False
        opts: dict[str, Any] = {
            "consumer_type": ctype,
            "initial_position": initial,
            "receiver_queue_size": cfg.receiver_queue_size,
            "batch_receive_policy": pulsar.ConsumerBatchReceivePolicy(
                cfg.receiver_queue_size, -1, max(1, int(cfg.batch_receive_timeout * 1000))
            ),
            **(cfg.consumer_options or {}),
        }
        if (cfg.topics_pattern or "").startswith("non-persistent://"):
            # The client drops the domain from a pattern and takes it from this option instead.
            opts.setdefault("regex_subscription_mode", pulsar.RegexSubscriptionMode.NonPersistentOnly)
        topics = list(source.topics)
        what: Any = (
            re.compile(cfg.topics_pattern)
            if cfg.topics_pattern is not None
            else topics
            if len(topics) > 1
            else topics[0]
        )
        #: The one topic partition every message comes from (one non-partitioned topic), else None.
        self._only_topic: str | None = None
        try:
            self._consumer = self._client.subscribe(what, cfg.subscription, **opts)
            if cfg.topics_pattern is None and len(topics) == 1:
                parts = self._client.get_topic_partitions(topics[0])
                if len(parts) == 1:
                    self._only_topic = parts[0]
            if source.stop is not None:
                kind, arg = source.stop
                if kind == "message_id":
                    self._stop_id = id_key(decode_message_id(arg))
                elif kind == "publish_time":
                    self._stop_time = int(arg)
                else:
                    self._ends = self._last_ids()
                    # Partitions already returned up to their end before a restart count as reached.
                    self._unreached = {
                        t for t, end in self._ends.items() if not at_or_past(self._high.get(t, NONE), end)
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

        timeout_ms = int(self._cfg.operation_timeout * 1000)
        ends: dict[str, tuple[int, int, int]] = {}
        for topic in self._cfg.topic_list:
            for part in self._client.get_topic_partitions(topic):
                reader = self._client.create_reader(
                    part, pulsar.MessageId.latest, start_message_id_inclusive=True
                )
                try:
                    if reader.has_message_available():
                        last = partition_order(reader.read_next(timeout_ms).message_id())
                        # An unbatched message has batch index -1: it is the whole entry.
                        ends[part] = (last[0], last[1], last[2] if last[2] >= 0 else INF)
                finally:
                    reader.close()
        return ends

    # -- reading ----------------------------------------------------------------------------

    def _classify(self, msg: Any, topic: str, mid: Any, order: tuple[int, int, int]) -> int:
        """0 = return it, 1 = skip (ack later), 2 = past the stop (leave unacknowledged), 3 = duplicate.

        ``mid``/``order``: the message's id and :func:`partition_order` of it (computed once by the
        caller)."""
        if self._ends is not None:
            end = self._ends.get(topic)
            if end is None or order > end:  # empty when the reader opened, or past its end
                if not self._unreached:
                    self._finished = True
                return 2
            if topic in self._unreached and at_or_past(order, end):
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
        return self._batch_of(topics if self._only_topic is None else None, msgs, mids)

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
            verdict = self._classify(msg, topic, mid, partition_order(mid))
            if verdict == 0:
                topics.append(topic)
                msgs.append(msg)
                mids.append(mid)
            elif verdict == 1:
                self._skipped.append((topic, mid))

    def _batch_of(self, topics: list[str] | None, msgs: list[Any], mids: list[Any]) -> pa.RecordBatch:
        """The batch of ``msgs`` (with their ``mids``, from ``topics``, or all from ``_only_topic``)."""
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
        self._pending.add(self._seq, acked)
        self._skipped = []
        self._last.update({k: encode_message_id(mid) for k, mid in last.items()})
        self._position = {"seq": self._seq, "last": dict(self._last)}

        def topic_column() -> pa.Array:
            return pa.array(names, pa.string())

        def id_column() -> pa.Array:
            return pa.array([mid.serialize() for mid in mids], pa.binary())

        def context() -> pa.RecordBatch:  # built only when a payload fails (for the error policy)
            return pa.RecordBatch.from_arrays([topic_column(), id_column()], names=["topic", "message_id"])

        return self.decode(
            pa.array([m.data() for m in msgs], pa.binary()),
            context,
            {
                "_topic": topic_column,
                "_message_id": id_column,
                "_key": lambda: [m.partition_key() or None for m in msgs],
                "_publish_time": lambda: [m.publish_timestamp() for m in msgs],
                "_event_time": lambda: [m.event_timestamp() or None for m in msgs],
                "_properties": lambda: [list(m.properties().items()) for m in msgs],
                "_redelivery_count": lambda: [m.redelivery_count() for m in msgs],
            },
        )

    @property
    def finished(self) -> bool:
        return self._finished

    def commit(self, snapshot: Position) -> None:
        """Acknowledge the messages returned (and skipped) up to ``snapshot``."""
        if not snapshot or self._closed:
            return
        upto = int(snapshot["seq"])
        ids: list[tuple[str, Any]] = self._pending.take(upto)
        if not ids:
            return
        try:
            if self._cumulative:
                last: dict[str, Any] = {}  # the highest id per topic partition
                for topic, mid in ids:
                    if topic not in last or partition_order(mid) > partition_order(last[topic]):
                        last[topic] = mid
                for mid in last.values():
                    self._consumer.acknowledge_cumulative(mid)
            else:
                ack = self._consumer.acknowledge
                for topic, mid in ids:
                    ack(mid)
                    self._outstanding.discard((topic, *partition_order(mid)))
        except Exception as exc:  # the broker redelivers what was not acknowledged
            log.warning("pulsar: ack up to %s on %s failed: %s", upto, self.split.split_id, exc)

    def disconnect(self) -> None:
        consumer = getattr(self, "_consumer", None)
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:
                log.debug("pulsar: consumer close: %s", exc)
        self.source._release_client()  # type: ignore[attr-defined]
