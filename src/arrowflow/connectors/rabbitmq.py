"""RabbitMQ (AMQP 0-9-1 via pika): :class:`RabbitMQSource` and :class:`RabbitMQSink`.

Needs the ``rabbitmq`` extra (``pika``); pika is imported when a connector is built.

Source contract (Flink's ``RMQSource``):

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
* Connection loss: ``read_batch`` returns ``None`` and reconnects (with backoff) on later calls;
  messages buffered but not returned are dropped (the broker redelivers them). ``bounded=True``
  finishes once the queue has no ready message left and nothing is buffered (a drain); since
  nothing is acknowledged outside a pipeline, ``read_all()`` of a queue longer than ``prefetch``
  raises :class:`~arrowflow.errors.ConnectorError` instead of hanging (use ``prefetch=0``).
* Payloads are decoded by ``format`` (default ``Raw`` column ``value``); failures go to the error
  policy as rows ``payload, routing_key, message_id``. Metadata columns: ``_exchange``,
  ``_routing_key``, ``_message_id``, ``_correlation_id``, ``_redelivered``, ``_timestamp``.

Sink contract (batching, retries, error policy: :class:`~arrowflow.writer.AsyncBatchWriter`):

* One message per row to ``exchange`` (``""`` = the default exchange, where the routing key is a
  queue name) with ``routing_key`` or the row's ``routing_key_column``; body = ``value_column`` as
  is, or the row encoded by ``format`` (default JSON of every column but the routing key column).
  ``delivery_mode=2`` (persistent) unless ``persistent=False``; ``message_id`` = the row's
  ``message_id_column`` or a generated ``"<run>-<row number>"`` (so a :class:`RabbitMQSource` with
  ``dedup="message_id"`` can read the output exactly once); ``header_columns`` become AMQP headers.
* Publisher confirms, pipelined: a ``SelectConnection`` in an I/O thread publishes a whole request
  and waits for the broker's (multiple) acks within ``confirm_timeout``. A nack, a timeout or a
  lost connection fails the entries retryably (the next request reconnects); with ``mandatory``
  (default) a message the broker returns as unroutable goes to the error policy (not retried), as
  does every entry of a request whose channel the broker closed (e.g. a missing exchange).
* Guarantee: **at-least-once** (a retry or a replay publishes again; the message id lets a
  deduplicating consumer drop the copies).
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

from ..config import check_choice, check_positive, check_type, hide_secrets, reveal_secrets
from ..error_policy import ErrorPolicy, ErrorPolicyLike
from ..errors import ConfigurationError, ConnectorError
from ..formats import Format, Json, Raw, decode_with_policy
from ..formats.base import as_binary
from ..retry import ExponentialBackoff
from ..source import Position, Source, Split, SplitReader
from ..writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult

__all__ = ["RabbitMQSink", "RabbitMQSource"]

log = logging.getLogger("arrowflow.rabbitmq")

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"

_META = {
    "_exchange": pa.string(),
    "_routing_key": pa.string(),
    "_message_id": pa.string(),
    "_correlation_id": pa.string(),
    "_redelivered": pa.bool_(),
    "_timestamp": pa.timestamp("s", tz="UTC"),
}


def _params(url: str, options: Mapping[str, Any]) -> Any:
    import pika

    params = pika.URLParameters(url)
    for key, value in reveal_secrets(options).items():
        if not hasattr(params, key):
            raise ConfigurationError(f"connect_options: pika has no connection parameter {key!r}", option=key)
        setattr(params, key, value)
    return params


def _check_url(url: str) -> None:
    if not isinstance(url, str) or not url.startswith(("amqp://", "amqps://")):
        raise ConfigurationError(f"url must be amqp://user:pass@host:port/vhost, got {url!r}", option="url")


def _amqp_errors() -> tuple[type[BaseException], ...]:
    import pika.exceptions

    return (pika.exceptions.AMQPError, OSError)


# ----------------------------------------------------------------------------------------- source


class RabbitMQSource(Source):
    """Consumes one queue; acknowledges on checkpoint commit. See the module docstring."""

    name = "rabbitmq"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        queue: str,
        prefetch: int = 10_000,
        dedup: str | None = None,
        bounded: bool = False,
        declare: bool = False,
        queue_arguments: Mapping[str, Any] | None = None,
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        connect_options: Mapping[str, Any] | None = None,
        reconnect_backoff: tuple[float, float] = (0.2, 5.0),
        stale_id_commits: int = 2,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        _check_url(url)
        check_type("queue", queue, str)
        if not queue:
            raise ConfigurationError("queue must not be empty", option="queue")
        check_type("prefetch", prefetch, int)
        if not 0 <= prefetch <= 65535:
            raise ConfigurationError(
                f"prefetch must be in 0..65535 (0 = unlimited), got {prefetch!r}", option="prefetch"
            )
        if dedup is not None:
            check_choice("dedup", dedup, ("message_id", "correlation_id"))
        check_type("bounded", bounded, bool)
        check_type("declare", declare, bool)
        check_type("stale_id_commits", stale_id_commits, int)
        check_positive("stale_id_commits", stale_id_commits)
        if len(reconnect_backoff) != 2 or not 0 < reconnect_backoff[0] <= reconnect_backoff[1]:
            raise ConfigurationError(
                "reconnect_backoff must be (initial, max) with 0 < initial <= max, "
                f"got {reconnect_backoff!r}",
                option="reconnect_backoff",
            )
        check_type("format", format, Format, allow_none=True)
        self.metadata_columns = tuple(metadata_columns)
        for m in self.metadata_columns:
            check_choice("metadata_columns", m, tuple(_META))
        self.url = url
        self.queue = queue
        self.prefetch = prefetch
        self.dedup = dedup
        self._bounded = bounded
        self.declare = declare
        self.queue_arguments = dict(queue_arguments or {})
        self.format: Format = format if format is not None else Raw(column="value")
        self.connect_options = hide_secrets(dict(connect_options or {}))
        _params(url, self.connect_options)  # validates the option names now
        self.reconnect_backoff = (float(reconnect_backoff[0]), float(reconnect_backoff[1]))
        self.stale_id_commits = stale_id_commits
        self.error_policy = ErrorPolicy.resolve(error_policy, name="rabbitmq source")

    @property
    def bounded(self) -> bool:
        return self._bounded

    @property
    def replayable(self) -> bool:  # type: ignore[override]
        """Only with ``dedup``: redeliveries of messages already delivered are then dropped by id."""
        return self.dedup is not None

    @property
    def schema(self) -> pa.Schema | None:
        s = getattr(self.format, "schema", None)
        if s is None:
            return None
        return pa.schema([*s, *(pa.field(m, _META[m]) for m in self.metadata_columns)])

    def plan(self) -> list[Split]:
        return [Split(split_id=self.queue, bounded=self._bounded, params={"queue": self.queue})]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        if position is not None and not (
            isinstance(position, dict) and isinstance(position.get("tag"), int) and "channel" in position
        ):
            raise ConnectorError(f"split {split.split_id!r}: not a rabbitmq position: {position!r}")
        return _RabbitReader(split, position, self)


class _RabbitReader(SplitReader):
    def __init__(self, split: Split, position: Position, source: RabbitMQSource) -> None:
        super().__init__(split, position)
        self._src = source
        self._queue: str = split.params["queue"]
        self._conn: Any = None
        self._ch: Any = None
        self._channel_token: str | None = None
        # (delivery_tag, exchange, routing_key, redelivered, properties, body) in arrival order.
        self._buffer: deque[tuple[int, str, str, bool, Any, bytes]] = deque()
        self._last_tag = 0
        # dedup: id -> delivery tag on the current channel (None: stale, from a dead channel or a
        # restored checkpoint), in insertion order; ``_stale_age`` counts commits since they became stale.
        self._ids: dict[str, int | None] = {}
        self._stale_age = 0
        self._snap: Position = position
        self._finished = False
        self._closed = False
        self._backoff = ExponentialBackoff(
            initial_delay=source.reconnect_backoff[0], max_delay=source.reconnect_backoff[1], multiplier=2.0
        )
        self._failures = 0
        self._next_connect = 0.0
        if position is not None and source.dedup is not None:
            for i in position.get("ids") or ():
                self._ids[str(i)] = None
        try:
            self._connect()
        except ConnectorError:
            self.close()
            raise

    # -- connection -----------------------------------------------------------------------------

    def _connect(self) -> None:
        import pika
        import pika.exceptions

        src = self._src
        try:
            conn = pika.BlockingConnection(_params(src.url, src.connect_options))
        except _amqp_errors() as exc:
            raise ConnectorError(
                f"rabbitmq: connecting for {self._queue!r} failed: {exc!r}", retryable=True
            ) from exc
        try:
            ch = conn.channel()
            if src.declare:
                ch.queue_declare(self._queue, durable=True, arguments=src.queue_arguments or None)
            ch.basic_qos(prefetch_count=src.prefetch)
            ch.basic_consume(self._queue, self._on_message, auto_ack=False)
        except pika.exceptions.ChannelClosedByBroker as exc:
            conn.close()
            raise ConnectorError(f"rabbitmq: consuming {self._queue!r} refused: {exc!r}") from exc
        except _amqp_errors() as exc:
            try:
                conn.close()
            except Exception:  # already dead
                pass
            raise ConnectorError(
                f"rabbitmq: consuming {self._queue!r} failed: {exc!r}", retryable=True
            ) from exc
        self._conn, self._ch = conn, ch
        self._channel_token = uuid.uuid4().hex
        self._last_tag = 0
        self._delivered = 0
        self._acked = 0
        self._failures = 0

    def _on_message(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self._delivered = method.delivery_tag
        self._buffer.append(
            (method.delivery_tag, method.exchange, method.routing_key, bool(method.redelivered), props, body)
        )

    def _lost(self, exc: BaseException) -> None:
        """The channel died: its delivery tags are void and the broker requeues what it delivered."""
        log.warning("rabbitmq: connection for %s lost: %r", self._queue, exc)
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
        self._next_connect = time.monotonic()

    def _ensure_connected(self) -> bool:
        if self._conn is not None:
            return True
        if time.monotonic() < self._next_connect:
            return False
        try:
            self._connect()
            return True
        except ConnectorError as exc:
            if not exc.retryable:
                raise
            self._failures += 1
            delay = self._backoff.delay(self._failures)
            log.warning("rabbitmq: reconnect to %s failed (%s); next try in %.1fs", self._queue, exc, delay)
            self._next_connect = time.monotonic() + delay
            return False

    # -- reading --------------------------------------------------------------------------------

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed or self._finished:
            return None
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self._ensure_connected():
            time.sleep(max(0.0, min(deadline - time.monotonic(), self._next_connect - time.monotonic())))
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
            if not self._buffer and self._src.bounded:
                self._check_drained()
        except _amqp_errors() as exc:
            self._lost(exc)
            return None
        if not self._buffer:
            return None
        n = min(max_rows, len(self._buffer))
        msgs = [self._buffer.popleft() for _ in range(n)]
        self._last_tag = msgs[-1][0]
        batch = self._to_batch(msgs)
        self._snap = self._position()
        return batch

    def _check_drained(self) -> None:
        ok = self._ch.queue_declare(self._queue, passive=True)
        self._conn.process_data_events(time_limit=0)
        if self._buffer:
            return
        if ok.method.message_count == 0:
            self._finished = True
        elif self._src.prefetch and self._delivered - self._acked >= self._src.prefetch:
            # Nothing more will come before a commit: without a pipeline nobody commits.
            raise ConnectorError(
                f"rabbitmq: {self._queue!r} still holds {ok.method.message_count} messages but the "
                f"prefetch window ({self._src.prefetch}) is full and only a checkpoint commit frees it; "
                "raise prefetch (0 = unlimited) to read it without a pipeline"
            )

    def _to_batch(self, msgs: list[tuple[int, str, str, bool, Any, bytes]]) -> pa.RecordBatch | None:
        src = self._src
        if src.dedup is not None:
            msgs = self._dedup(msgs)
        values = pa.array([m[5] for m in msgs], pa.binary())
        rks = pa.array([m[2] for m in msgs], pa.string())
        mids = pa.array([m[4].message_id for m in msgs], pa.string())
        meta = pa.RecordBatch.from_arrays([rks, mids], names=["routing_key", "message_id"])
        batch, rows = decode_with_policy(src.format, values, src.error_policy, meta)
        if not src.metadata_columns:
            return batch
        kept = [msgs[i] for i in rows.tolist()] if len(rows) != len(msgs) else msgs
        for name in src.metadata_columns:
            if name == "_exchange":
                col = pa.array([m[1] for m in kept], pa.string())
            elif name == "_routing_key":
                col = pa.array([m[2] for m in kept], pa.string())
            elif name == "_message_id":
                col = pa.array([m[4].message_id for m in kept], pa.string())
            elif name == "_correlation_id":
                col = pa.array([m[4].correlation_id for m in kept], pa.string())
            elif name == "_redelivered":
                col = pa.array([m[3] for m in kept], pa.bool_())
            else:
                col = pa.array([m[4].timestamp for m in kept], pa.int64()).cast(_META[name])
            batch = batch.append_column(pa.field(name, _META[name]), col)
        return batch

    def _dedup(
        self, msgs: list[tuple[int, str, str, bool, Any, bytes]]
    ) -> list[tuple[int, str, str, bool, Any, bytes]]:
        """Drop messages whose id was returned and not yet acknowledged; missing ids -> error policy."""
        attr = self._src.dedup
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
            self._src.error_policy.handle(rows, f"message without {attr} (needed by dedup={attr!r})")
        return keep

    def _position(self) -> dict[str, Any]:
        pos: dict[str, Any] = {"channel": self._channel_token, "tag": self._last_tag}
        if self._src.dedup is not None:
            pos["ids"] = list(self._ids)
        return pos

    @property
    def finished(self) -> bool:
        return self._finished

    def snapshot(self) -> Position:
        return self._snap

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
            # basic_ack is asynchronous; a round trip makes a failure show up here, not later.
            self._conn.process_data_events(time_limit=0)
        except _amqp_errors() as exc:
            self._lost(exc)
            return
        if self._src.dedup is not None and self._ids:
            stale = False
            for mid, t in list(self._ids.items()):
                if t is None:
                    stale = True
                elif t <= tag:
                    del self._ids[mid]
            if stale:
                self._stale_age += 1
                if self._stale_age >= self._src.stale_id_commits:
                    self._ids = {k: v for k, v in self._ids.items() if v is not None}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn, self._conn, self._ch = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # already dead: the broker requeues unacked messages anyway
                log.debug("rabbitmq: close: %r", exc)


# ------------------------------------------------------------------------------------------- sink


class _Request:
    """One submitted request as the I/O thread tracks it: state per entry, by delivery tag."""

    PENDING, OK, NACKED, RETURNED, FAILED = 0, 1, 2, 3, 4

    def __init__(self, n: int) -> None:
        self.n = n
        self.first = 0
        self.low = 0  # every entry below this index is resolved
        self.state = np.zeros(n, np.int8)
        self.errors: dict[int, tuple[str, bool]] = {}
        self.remaining = n
        self.done = threading.Event()

    def resolve(self, lo: int, hi: int, value: int) -> None:
        sl = self.state[lo:hi]
        pending = sl == self.PENDING
        count = int(np.count_nonzero(pending))
        if count:
            sl[pending] = value
            self.remaining -= count
        if lo <= self.low < hi:
            self.low = hi
        if self.remaining <= 0:
            self.done.set()


class _Publisher:
    """A ``SelectConnection`` with one confirm-mode channel, run by its own I/O thread."""

    def __init__(self, params: Any, timeout: float) -> None:
        import pika

        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.dead = False
        self.open_error: str | None = None
        self.ch: Any = None
        self.tag = 0
        self.inflight: list[_Request] = []
        self.by_id: dict[str, list[tuple[_Request, int]]] = {}
        self.conn = pika.SelectConnection(
            params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_close,
        )
        self.thread = threading.Thread(target=self._run, name="arrowflow-rabbitmq-io", daemon=True)
        self.thread.start()
        if not self.ready.wait(timeout) or self.ch is None:
            self.close()
            raise ConnectorError(
                f"rabbitmq: opening a confirm channel failed: {self.open_error or 'timeout'}", retryable=True
            )

    def _run(self) -> None:
        try:
            self.conn.ioloop.start()
        except Exception as exc:  # the loop must never take the process down
            log.warning("rabbitmq: I/O loop ended: %r", exc)
        finally:
            self._fail_all("connection lost", True)
            self.dead = True
            self.ready.set()

    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, conn: Any, err: Any) -> None:
        self.open_error = repr(err)
        self.dead = True
        self.ready.set()
        conn.ioloop.stop()

    def _on_channel(self, ch: Any) -> None:
        ch.add_on_close_callback(self._on_channel_close)
        ch.add_on_return_callback(self._on_return)

        def confirmed(_frame: Any) -> None:
            self.ch = ch
            self.ready.set()

        ch.confirm_delivery(ack_nack_callback=self._on_confirm, callback=confirmed)

    def _on_close(self, conn: Any, reason: Any) -> None:
        self.dead = True
        self._fail_all(f"connection closed: {reason!r}", True)
        conn.ioloop.stop()

    def _on_channel_close(self, ch: Any, reason: Any) -> None:
        import pika.exceptions

        # A channel the broker closed (404 no such exchange, 406 ...) fails its requests for good;
        # the connection is dropped so that the next request starts afresh.
        by_broker = isinstance(reason, pika.exceptions.ChannelClosedByBroker)
        self.dead = True
        self.open_error = repr(reason)
        self._fail_all(f"channel closed: {reason!r}", not by_broker)
        if not self.conn.is_closed and not self.conn.is_closing:
            self.conn.close()

    def _fail_all(self, error: str, retryable: bool) -> None:
        with self.lock:
            for req in self.inflight:
                self._fail_pending(req, error, retryable)
            self.inflight.clear()
            self.by_id.clear()

    @staticmethod
    def _fail_pending(req: _Request, error: str, retryable: bool) -> None:
        for i in np.flatnonzero(req.state == _Request.PENDING).tolist():
            req.errors[i] = (error, retryable)
        req.resolve(0, req.n, _Request.FAILED)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        value = _Request.OK if method.NAME == "Basic.Ack" else _Request.NACKED
        tag, multiple = method.delivery_tag, method.multiple
        with self.lock:
            finished = False
            for req in self.inflight:
                if req.first > tag:
                    break
                if multiple:
                    hi = min(tag - req.first + 1, req.n)
                    if hi > req.low:
                        if value == _Request.NACKED:
                            for i in np.flatnonzero(req.state[req.low : hi] == 0).tolist():
                                req.errors[req.low + i] = ("nacked by the broker", True)
                        req.resolve(req.low, hi, value)
                elif tag < req.first + req.n:
                    i = tag - req.first
                    if value == _Request.NACKED and req.state[i] == 0:
                        req.errors[i] = ("nacked by the broker", True)
                    req.resolve(i, i + 1, value)
                finished = finished or req.done.is_set()
            if finished:
                self.inflight = [r for r in self.inflight if not r.done.is_set()]

    def _on_return(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        # With mandatory, an unroutable message comes back before its (positive) confirm.
        with self.lock:
            hits = self.by_id.get(props.message_id or "")
            if not hits:
                log.warning("rabbitmq: returned message %r not matched to a request", props.message_id)
                return
            req, i = hits.pop(0)
            if not hits:
                del self.by_id[props.message_id]
            if req.state[i] == _Request.PENDING:
                req.errors[i] = (
                    f"unroutable: {method.reply_code} {method.reply_text} "
                    f"(exchange {method.exchange!r}, routing key {method.routing_key!r})",
                    False,
                )
                req.resolve(i, i + 1, _Request.RETURNED)

    def publish(
        self,
        req: _Request,
        exchange: str,
        keys: list[str] | str,
        data: bytes,
        offsets: list[int],
        ids: list[str],
        headers: list[dict[str, Any]] | None,
        props: dict[str, Any],
        mandatory: bool,
    ) -> None:
        """Runs in the I/O thread: publishes every entry of ``req`` back to back (confirms pipelined)."""
        import pika

        if self.dead or self.ch is None or not self.ch.is_open:
            self._fail_pending(req, "channel not open", True)
            return
        with self.lock:
            req.first = self.tag + 1
            self.inflight.append(req)
            if mandatory:
                for i, mid in enumerate(ids):
                    self.by_id.setdefault(mid, []).append((req, i))
        basic_publish, properties = self.ch.basic_publish, pika.BasicProperties
        const_key = keys if isinstance(keys, str) else None
        try:
            for i in range(req.n):
                basic_publish(
                    exchange,
                    const_key if const_key is not None else keys[i],  # type: ignore[index]
                    data[offsets[i] : offsets[i + 1]],
                    properties(message_id=ids[i], headers=headers[i] if headers else None, **props),
                    mandatory,
                )
                self.tag += 1
        except Exception as exc:  # the channel/connection died mid-request
            with self.lock:
                self._fail_pending(req, f"publish failed: {exc!r}", True)

    def close(self) -> None:
        def stop() -> None:
            if not self.conn.is_closed and not self.conn.is_closing:
                self.conn.close()
            else:
                self.conn.ioloop.stop()

        if self.thread.is_alive():
            try:
                self.conn.ioloop.add_callback_threadsafe(stop)
            except Exception as exc:  # the loop already stopped
                log.debug("rabbitmq: close: %r", exc)
            self.thread.join(10)


class RabbitMQSink(AsyncBatchWriter):
    """Publishes one persistent message per row with publisher confirms. See the module docstring."""

    name = "rabbitmq"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        exchange: str = "",
        routing_key: str | None = None,
        routing_key_column: str | None = None,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        message_id_column: str | None = None,
        header_columns: Sequence[str] = (),
        persistent: bool = True,
        mandatory: bool = True,
        content_type: str | None = None,
        declare_queue: str | None = None,
        confirm_timeout: float = 30.0,
        connect_options: Mapping[str, Any] | None = None,
        batching: BatchingConfig | None = None,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        _check_url(url)
        check_type("exchange", exchange, str)
        if (routing_key is None) == (routing_key_column is None):
            raise ConfigurationError(
                "give exactly one of routing_key or routing_key_column", option="routing_key"
            )
        check_type("routing_key", routing_key, str, allow_none=True)
        check_type("routing_key_column", routing_key_column, str, allow_none=True)
        if value_column is not None and (value_columns is not None or format is not None):
            raise ConfigurationError(
                "value_column is sent as is; it excludes value_columns and format", option="value_column"
            )
        check_type("message_id_column", message_id_column, str, allow_none=True)
        check_type("persistent", persistent, bool)
        check_type("mandatory", mandatory, bool)
        check_type("declare_queue", declare_queue, str, allow_none=True)
        check_positive("confirm_timeout", confirm_timeout)
        check_type("format", format, Format, allow_none=True)
        self.url = url
        self.exchange = exchange
        self.routing_key = routing_key
        self.routing_key_column = routing_key_column
        self.value_column = value_column
        self.value_columns = tuple(value_columns) if value_columns is not None else None
        self.format: Format = format if format is not None else Json()
        self.message_id_column = message_id_column
        self.header_columns = tuple(header_columns)
        self.persistent = persistent
        self.mandatory = mandatory
        self.confirm_timeout = float(confirm_timeout)
        self.connect_options = hide_secrets(dict(connect_options or {}))
        if content_type is None:
            content_type = (
                "application/json" if value_column is None and isinstance(self.format, Json) else None
            )
        self._props: dict[str, Any] = {"delivery_mode": 2 if persistent else 1}
        if content_type:
            self._props["content_type"] = content_type
        self._params = _params(url, self.connect_options)
        config = batching or BatchingConfig(max_request_rows=5000, max_in_flight=2, max_time_in_buffer=1.0)
        super().__init__(config, error_policy=error_policy, name="rabbitmq sink")
        self._run_id = uuid.uuid4().hex[:16]
        self._next_row = 0
        self._pub_lock = threading.Lock()
        self._pub: _Publisher | None = None
        if declare_queue is not None:
            self._declare(declare_queue)
        self._publisher()  # fail fast on a wrong url or credentials

    def _declare(self, queue: str) -> None:
        import pika

        try:
            conn = pika.BlockingConnection(self._params)
            try:
                conn.channel().queue_declare(queue, durable=True)
            finally:
                conn.close()
        except _amqp_errors() as exc:
            raise ConnectorError(
                f"rabbitmq: declaring queue {queue!r} failed: {exc!r}", retryable=True
            ) from exc

    def _publisher(self) -> _Publisher:
        with self._pub_lock:
            if self._pub is None or self._pub.dead:
                if self._pub is not None:
                    self._pub.close()
                self._pub = None
                self._pub = _Publisher(self._params, self.confirm_timeout)
            return self._pub

    # -- AsyncBatchWriter hooks -----------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> pa.Array | Encoded:
        n = batch.num_rows
        if self.value_column is not None:
            col = batch.column(self.value_column)
            if not (pa.types.is_binary(col.type) or pa.types.is_string(col.type)):
                col = col.cast(pa.string())
            payloads = as_binary(col)
            failed = np.flatnonzero(~np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool))
            errors: list[str] = ["null value"] * len(failed)
        else:
            if self.value_columns is not None:
                cols = list(self.value_columns)
            elif getattr(self.format, "columns", None) is not None:
                cols = batch.schema.names
            else:
                cols = [c for c in batch.schema.names if c != self.routing_key_column]
            enc = self.format.encode(batch.select(cols))
            payloads = as_binary(enc.payloads)
            failed = np.asarray(enc.failed, np.int64)
            errors = list(enc.errors) if not isinstance(enc.errors, str) else [enc.errors] * len(failed)
        if pa.types.is_large_binary(payloads.type):
            payloads = payloads.cast(pa.binary())
        if self.message_id_column is not None:
            ids = batch.column(self.message_id_column).cast(pa.string())
        else:
            # "<run>-<row number>": unique per row of this sink and the same on every retry of the row.
            numbers = pa.array(np.arange(self._next_row, self._next_row + n, dtype=np.int64)).cast(
                pa.string()
            )
            ids = pc.binary_join_element_wise(pa.scalar(self._run_id + "-"), numbers, pa.scalar(""))
        self._next_row += n
        keys = (
            batch.column(self.routing_key_column).cast(pa.string())
            if self.routing_key_column is not None
            else pa.nulls(n, pa.string())
        )
        bad = ids.is_null()
        if self.routing_key_column is not None:
            bad = pc.or_(bad, keys.is_null())
        bad_rows = np.flatnonzero(np.asarray(bad.to_numpy(zero_copy_only=False), bool))
        if len(bad_rows):
            extra = np.setdiff1d(bad_rows, failed)
            failed = np.concatenate([failed, extra]).astype(np.int64)
            errors = errors + ["null message id or routing key"] * len(extra)
            order = np.argsort(failed, kind="stable")
            failed, errors = failed[order], [errors[i] for i in order]
        arrays = [payloads, keys, ids]
        names = ["payload", "key", "id"]
        if self.header_columns:
            arrays.append(
                pa.StructArray.from_arrays(
                    [batch.column(c) for c in self.header_columns], self.header_columns
                )
            )
            names.append("headers")
        entries = pa.StructArray.from_arrays(arrays, names=names)
        if len(failed) == 0:
            return entries
        good = np.setdiff1d(np.arange(n, dtype=np.int64), failed, assume_unique=True)
        return Encoded(entries=entries.take(pa.array(good)), failed=failed, errors=errors)

    def entry_sizes(self, entries: pa.Array) -> np.ndarray:
        sizes: np.ndarray = super().entry_sizes(entries.field("payload"))
        return sizes

    def submit(self, entries: pa.Array) -> SubmitResult | None:
        n = len(entries)
        if n == 0:
            return None
        payloads = entries.field("payload")
        bufs = payloads.buffers()
        offsets = np.frombuffer(bufs[1], np.int32)[payloads.offset : payloads.offset + n + 1].tolist()
        data = bufs[2].to_pybytes() if bufs[2] is not None else b""
        ids = entries.field("id").to_pylist()
        keys: list[str] | str = (
            entries.field("key").to_pylist()
            if self.routing_key_column is not None
            else self.routing_key or ""
        )
        headers = entries.field("headers").to_pylist() if self.header_columns else None
        pub = self._publisher()
        req = _Request(n)
        try:
            pub.conn.ioloop.add_callback_threadsafe(
                lambda: pub.publish(
                    req, self.exchange, keys, data, offsets, ids, headers, self._props, self.mandatory
                )
            )
        except Exception as exc:  # the I/O loop stopped between the check and the call
            raise ConnectorError(f"rabbitmq: publisher gone: {exc!r}", retryable=True) from exc
        if not req.done.wait(self.confirm_timeout):
            with pub.lock:
                pub._fail_pending(req, f"no confirm within {self.confirm_timeout}s", True)
        failed = np.flatnonzero(req.state != _Request.OK)
        if len(failed) == 0:
            return None
        errs = [req.errors.get(i, ("nacked by the broker", True)) for i in failed.tolist()]
        return SubmitResult(
            failed=failed.astype(np.int64),
            errors=[e[0] for e in errs],
            retryable=np.asarray([e[1] for e in errs], bool),
        )

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            with self._pub_lock:
                if self._pub is not None:
                    self._pub.close()
                    self._pub = None
