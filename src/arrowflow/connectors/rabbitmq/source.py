"""RabbitMQ source (AMQP 0-9-1 via pika): consume one queue, acknowledge on checkpoint commit.

Contract (Flink's ``RMQSource``):

* One split per source, ``split_id`` = the queue name. A queue is not replayable: a message leaves it
  only when acknowledged, and an unacknowledged message is redelivered when its channel dies.
* ``read_batch`` consumes with a ``basic_qos(prefetch)`` window (pika ``BlockingConnection``; it
  blocks at most ``timeout``; ``prefetch=0`` = unlimited, the broker pushes the whole queue).
  Nothing is acknowledged until ``commit(snapshot)``, which sends one ``basic_ack(multiple=True)``
  up to the snapshot's delivery tag. **The prefetch window bounds throughput**: at most
  ``prefetch`` messages are read between two checkpoints, so size it to the checkpoint interval.
* The position is ``{"channel": <token>, "tag": <last delivery tag>, "ids": [...]}``. Delivery tags
  belong to one channel: ``commit`` of a snapshot taken on a channel that has since died acknowledges
  nothing (the broker already requeued those messages, and they are delivered again).
* Guarantee without ``dedup``: **at-least-once** (a crash or a reconnect redelivers everything since
  the last committed checkpoint). With ``dedup="message_id"`` or ``"correlation_id"`` (every message
  must carry that property; one without it goes to the error policy): **exactly-once** with a
  transactional sink, as in Flink, provided this reader is the queue's **only consumer**. The ids
  of the messages returned and not yet acknowledged are part of the snapshot; a message whose id is
  in that set is not emitted again (it is acknowledged with the next commit). Ids of messages of a
  dead channel (or restored from a checkpoint) are kept until ``stale_id_commits`` commits have
  acknowledged messages on the new channel: requeued messages return to the head of the queue, so
  their redeliveries arrive within the first prefetch window.
* Connection loss: ``read_batch`` returns ``None`` and reconnects (``reconnect_backoff``) on later
  calls; messages buffered but not returned are dropped (the broker redelivers them). A silent
  broker or network (no reset, no close) is noticed by AMQP heartbeats: pika drops a connection
  that received nothing for a check interval (``heartbeat + 5`` seconds; checked every interval,
  so within twice that); ``connect_options={"heartbeat": s}`` sets it (default: the broker's, 60 s).
  ``metrics()`` counts ``reconnects`` (connections made again after a loss) and ``timeouts`` (losses
  by missed heartbeats).
  ``bounded=True`` finishes once the queue has no ready message left and nothing is buffered (a
  drain); since nothing is acknowledged outside a pipeline, ``read_all()`` of a queue longer than
  ``prefetch`` raises :class:`~arrowflow.errors.ConnectorError` instead of hanging (use ``prefetch=0``).
* Payloads are decoded by ``format`` (default ``Raw`` column ``value``); failures go to the error
  policy as rows ``payload, routing_key, message_id``. Metadata columns: ``_exchange``,
  ``_routing_key``, ``_message_id``, ``_correlation_id``, ``_redelivered``, ``_timestamp``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ...config import REQUIRED
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format
from ...retry import ExponentialBackoff
from ...source import Position, Split, SplitReader
from .._messaging import RECONNECT_BACKOFF, MessageReader, MessageSource
from ._client import amqp_errors, connection_params
from .config import DEFAULT_URL, RabbitMQSourceConfig

__all__ = ["RabbitMQSource"]

log = logging.getLogger("arrowflow.rabbitmq")

#: (delivery tag, exchange, routing key, redelivered, properties, body) of a received message.
_Message = tuple[int, str, str, bool, Any, bytes]


class RabbitMQSource(MessageSource[RabbitMQSourceConfig]):
    """Consumes one queue; acknowledges on checkpoint commit. See the module docstring."""

    name = "rabbitmq"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        queue: str = REQUIRED,
        prefetch: int = 10_000,
        dedup: str | None = None,
        bounded: bool = False,
        declare: bool = False,
        queue_arguments: Mapping[str, Any] | None = None,
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        connect_options: Mapping[str, Any] | None = None,
        reconnect_backoff: ExponentialBackoff = RECONNECT_BACKOFF,
        stale_id_commits: int = 2,
        error_policy: ErrorPolicyLike = "fail",
        config: RabbitMQSourceConfig | None = None,
    ) -> None:
        config = self._init_messages(locals())
        #: Summed over the readers (see :meth:`metrics`).
        self._counters = {"reconnects": 0, "timeouts": 0}
        connection_params(config.url, config.connect_options or {})  # validates the option names now

    @property
    def bounded(self) -> bool:
        return bool(self.config.bounded)

    def metrics(self) -> dict[str, int]:
        """Summed over the readers opened: ``reconnects`` (connections made again after one was
        lost) and ``timeouts`` (connections dropped for missed heartbeats: a silent broker)."""
        return dict(self._counters)

    @property
    def replayable(self) -> bool:  # type: ignore[override]
        """Only with ``dedup``: redeliveries of messages already delivered are then dropped by id."""
        return self.config.dedup is not None

    def plan(self) -> list[Split]:
        queue = self.config.queue
        return [Split(split_id=queue, bounded=self.bounded, params={"queue": queue})]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        if position is not None and not (
            isinstance(position, dict) and isinstance(position.get("tag"), int) and "channel" in position
        ):
            raise ConnectorError(f"split {split.split_id!r}: not a rabbitmq position: {position!r}")
        return _RabbitReader(split, position, self)


class _RabbitReader(MessageReader):
    def __init__(self, split: Split, position: Position, source: RabbitMQSource) -> None:
        super().__init__(source, split, position)
        self._cfg: RabbitMQSourceConfig = source.config
        self._queue: str = split.params["queue"]
        self._conn: Any = None
        self._ch: Any = None
        self._channel_token: str | None = None
        self._buffer: deque[_Message] = deque()  # in arrival order
        self._last_tag = 0
        # dedup: id -> delivery tag on the current channel (None: stale, from a dead channel or a
        # restored checkpoint), in insertion order; ``_stale_age`` counts commits since they became stale.
        self._ids: dict[str, int | None] = {}
        self._stale_age = 0
        self._finished = False
        self._source = source
        self._lost_once = False  # a later connect() is a reconnect
        if position is not None and self._cfg.dedup is not None:
            for i in position.get("ids") or ():
                self._ids[str(i)] = None
        try:
            self.connect()
        except ConnectorError:
            self.close()
            raise

    # -- connection -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def connect(self) -> None:
        import pika
        import pika.exceptions

        cfg = self._cfg
        try:
            conn = pika.BlockingConnection(connection_params(cfg.url, cfg.connect_options or {}))
        except amqp_errors() as exc:
            raise ConnectorError(
                f"rabbitmq: connecting for {self._queue!r} failed: {exc!r}", retryable=True
            ) from exc
        try:
            ch = conn.channel()
            if cfg.declare:
                ch.queue_declare(self._queue, durable=True, arguments=cfg.queue_arguments or None)
            ch.basic_qos(prefetch_count=cfg.prefetch)
            ch.basic_consume(self._queue, self._on_message, auto_ack=False)
        except pika.exceptions.ChannelClosedByBroker as exc:
            conn.close()
            raise ConnectorError(f"rabbitmq: consuming {self._queue!r} refused: {exc!r}") from exc
        except amqp_errors() as exc:
            try:
                conn.close()
            except Exception:  # already dead
                pass
            raise ConnectorError(
                f"rabbitmq: consuming {self._queue!r} failed: {exc!r}", retryable=True
            ) from exc
        if self._lost_once:
            self._source._counters["reconnects"] += 1
        self._conn, self._ch = conn, ch
        self._channel_token = uuid.uuid4().hex
        self._last_tag = 0
        self._delivered = 0
        self._acked = 0

    def _on_message(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self._delivered = method.delivery_tag
        self._buffer.append(
            (method.delivery_tag, method.exchange, method.routing_key, bool(method.redelivered), props, body)
        )

    def _lost(self, exc: BaseException) -> None:
        """The channel died: its delivery tags are void and the broker requeues what it delivered."""
        import pika.exceptions

        log.warning("rabbitmq: connection for %s lost: %r", self._queue, exc)
        self._lost_once = True
        if isinstance(exc, pika.exceptions.AMQPHeartbeatTimeout):
            self._source._counters["timeouts"] += 1
        conn, self._conn, self._ch = self._conn, None, None
        self._channel_token = None
        self._buffer.clear()
        if self._ids:
            self._ids = dict.fromkeys(self._ids)
            self._stale_age = 0
        if conn is not None:
            try:
                conn.close()
            except Exception as close_exc:  # already dead
                log.debug("rabbitmq: close after loss: %r", close_exc)
        self._reconnect.lost()

    # -- reading --------------------------------------------------------------------------------

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed or self._finished:
            return None
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self.ensure_connected():
            self._reconnect.wait(deadline - time.monotonic())
            return None
        try:
            while len(self._buffer) < max_rows:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                before = len(self._buffer)
                self._conn.process_data_events(time_limit=remaining if not before else 0)
                if before and len(self._buffer) == before:
                    break  # something is ready and nothing more arrived at once
            if not self._buffer and self._cfg.bounded:
                self._check_drained()
        except amqp_errors() as exc:
            self._lost(exc)
            return None
        if not self._buffer:
            return None
        n = min(max_rows, len(self._buffer))
        msgs = [self._buffer.popleft() for _ in range(n)]
        self._last_tag = msgs[-1][0]
        batch = self._to_batch(msgs)
        self._position = self._current_position()
        return batch

    def _check_drained(self) -> None:
        ok = self._ch.queue_declare(self._queue, passive=True)
        self._conn.process_data_events(time_limit=0)
        if self._buffer:
            return
        prefetch = self._cfg.prefetch
        if ok.method.message_count == 0:
            self._finished = True
        elif prefetch and self._delivered - self._acked >= prefetch:
            # Nothing more will come before a commit: without a pipeline nobody commits.
            raise ConnectorError(
                f"rabbitmq: {self._queue!r} still holds {ok.method.message_count} messages but the "
                f"prefetch window ({prefetch}) is full and only a checkpoint commit frees it; "
                "raise prefetch (0 = unlimited) to read it without a pipeline"
            )

    def _to_batch(self, msgs: list[_Message]) -> pa.RecordBatch:
        if self._cfg.dedup is not None:
            msgs = self._dedup(msgs)
        routing_keys = pa.array([m[2] for m in msgs], pa.string())
        message_ids = pa.array([m[4].message_id for m in msgs], pa.string())
        context = pa.RecordBatch.from_arrays([routing_keys, message_ids], names=["routing_key", "message_id"])
        return self.decode(
            pa.array([m[5] for m in msgs], pa.binary()),
            context,
            {
                "_exchange": lambda: [m[1] for m in msgs],
                "_routing_key": lambda: routing_keys,
                "_message_id": lambda: message_ids,
                "_correlation_id": lambda: [m[4].correlation_id for m in msgs],
                "_redelivered": lambda: [m[3] for m in msgs],
                "_timestamp": lambda: [m[4].timestamp for m in msgs],
            },
        )

    def _dedup(self, msgs: list[_Message]) -> list[_Message]:
        """Drop messages whose id was returned and not yet acknowledged; missing ids -> error policy."""
        attr = self._cfg.dedup
        ids = self._ids
        keep = []
        missing = []
        for m in msgs:
            mid = getattr(m[4], attr)  # type: ignore[arg-type]
            if mid is None:
                missing.append(m)
            elif mid in ids:
                # A redelivery of a message already emitted: acknowledged with the next commit.
                ids[mid] = m[0]
            else:
                ids[mid] = m[0]
                keep.append(m)
        if missing:
            rows = pa.RecordBatch.from_arrays(
                [
                    pa.array([m[5] for m in missing], pa.binary()),
                    pa.array([m[2] for m in missing], pa.string()),
                ],
                names=["payload", "routing_key"],
            )
            self.source.error_policy.handle(rows, f"message without {attr} (needed by dedup={attr!r})")
        return keep

    def _current_position(self) -> dict[str, Any]:
        pos: dict[str, Any] = {"channel": self._channel_token, "tag": self._last_tag}
        if self._cfg.dedup is not None:
            pos["ids"] = list(self._ids)
        return pos

    @property
    def finished(self) -> bool:
        return self._finished

    def commit(self, snapshot: Position) -> None:
        """``basic_ack(multiple=True)`` up to the snapshot's tag, if its channel is still the current one."""
        if self._closed or not isinstance(snapshot, dict) or self._ch is None:
            return
        tag = snapshot.get("tag", 0)
        if snapshot.get("channel") != self._channel_token or not tag:
            return
        try:
            self._ch.basic_ack(delivery_tag=tag, multiple=True)
            self._acked = max(self._acked, tag)
            if self._cfg.dedup is not None:
                # basic_ack has no answer: an ack lost with its connection (reset after it was
                # written) redelivers the messages, and only their ids in ``_ids`` drop them. A
                # synchronous method on the same channel (answered in channel order) proves the
                # broker processed the ack; only then are those ids forgotten (below). If it fails,
                # the ids stay as stale ids of the dead channel.
                self._ch.basic_qos(prefetch_count=self._cfg.prefetch)
            else:
                # basic_ack is asynchronous; a round trip makes a failure show up here, not later.
                self._conn.process_data_events(time_limit=0)
        except amqp_errors() as exc:
            self._lost(exc)
            return
        if self._cfg.dedup is not None and self._ids:
            stale = False
            for mid, t in list(self._ids.items()):
                if t is None:
                    stale = True
                elif t <= tag:
                    del self._ids[mid]
            if stale:
                self._stale_age += 1
                if self._stale_age >= self._cfg.stale_id_commits:
                    self._ids = {k: v for k, v in self._ids.items() if v is not None}

    def disconnect(self) -> None:
        conn, self._conn, self._ch = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # already dead: the broker requeues unacked messages anyway
                log.debug("rabbitmq: close: %r", exc)
