"""Google Cloud Pub/Sub (``google-cloud-pubsub``): :class:`PubSubSource` (streaming pull, acks on
checkpoint) and :class:`PubSubSink` (the publisher client's batching and futures, at-least-once). Needs
the ``pubsub`` extra; the client is imported when a connector is built. The module is called
``gcp_pubsub`` so that it never shadows a ``pubsub`` package.

Where to connect: ``emulator_host="127.0.0.1:8085"`` talks to the emulator over an insecure channel
with no credentials; without it the client library decides (``PUBSUB_EMULATOR_HOST`` when set, else
Application Default Credentials against Google Cloud).

Source contract:

* Splits: ``streams`` splits (default 1), ``split_id`` = ``"<subscription>/<i>"``; each is one
  ``StreamingPull`` stream of the subscription (the server balances messages, and keeps each ordering
  key on one stream).
* The stream runs in a daemon thread that feeds a local buffer; it is reopened (with backoff) when
  the server or the network closes it. Flow control is the server's: ``max_messages`` and
  ``max_bytes`` bound the messages delivered and not yet acknowledged on a stream. Messages held for
  a pending checkpoint count, so a checkpoint interval must hold fewer than ``max_messages`` or the
  stream pauses until the next commit (backpressure, not loss).
* Ack-deadline extension: a lease thread calls ``modify_ack_deadline(ack_deadline)`` every
  ``ack_deadline / 3`` seconds for every message received and not yet acknowledged (buffered, returned,
  or waiting for its checkpoint), for at most ``max_hold`` seconds per message; after that the
  message is no longer extended and the server redelivers it (a duplicate, never a loss).
* Position: the number of batches returned (``int``). Pub/Sub is not replayable: after a restart the
  server redelivers every message not acknowledged (``close()`` hands buffered and held messages back
  at once with a zero deadline; after a crash they come back when their deadline expires).
* ``read_batch(max_rows, timeout)`` waits at most ``timeout`` for the buffer. Payloads (``data``) are
  decoded by ``format`` (default ``Raw`` column ``value``) as one array; failures go to the error
  policy as rows ``payload, message_id, ordering_key`` (and are acknowledged with the batch's
  checkpoint). Metadata columns on request: ``_message_id``, ``_publish_time``, ``_attributes``
  (``map<string, string>``), ``_ordering_key``, ``_delivery_attempt``. Messages of one ordering key
  are returned in publish order (when the subscription has message ordering enabled).
* ``commit(snapshot)`` acknowledges (``acknowledge``, up to 2500 ids per call) every message of the
  batches returned up to ``snapshot``. Nothing is acknowledged earlier: at-least-once. A failed ack is
  logged; the message is redelivered (a duplicate).

Sink contract (batching, retries, error policy: :class:`~arrowflow.writer.AsyncBatchWriter`):

* One message per row to ``topic``: ``data`` from ``value_column`` as is, or the row (``value_columns``
  or every column but the ordering-key/attributes columns) encoded by ``format`` (default JSON,
  compiled kernel). ``ordering_key_column`` sets ordering keys (the publisher then has message
  ordering on; null/empty = no key), ``attributes_column`` (``map<string, string>``) the attributes.
* Without ``ordering_key_column``: a request is cut into ``Publish`` RPCs of at most
  ``batch_max_messages`` (<= 1000, the API's limit) messages and ``batch_max_bytes``, built as raw
  protobuf messages and sent on the publisher's gRPC channel all at once (gRPC futures), then every
  RPC is awaited. No per-message future or client-side batching timer is involved (the client's
  ``publish`` costs tens of microseconds per message in Python; this path ~5). A ``Publish`` is all
  or nothing: a failed RPC fails its rows, retried when the status is transient (unavailable,
  deadline exceeded, aborted, resource exhausted, internal, unknown, cancelled), else handed to the
  error policy.
* With ``ordering_key_column``: a request publishes its rows through the client library (message
  ordering on; it batches per key by ``batch_max_messages`` / ``batch_max_bytes`` /
  ``batch_max_latency``) and waits for every future. Transient failures are retried, the paused
  ordering key resumed first; other failures go to the error policy. With ``max_in_flight=1`` (the
  default) a key's messages are published in write order.
* Either way ``flush()`` (every checkpoint) returns once every row is acknowledged by the server:
  at-least-once (a retried RPC whose first attempt was stored after all publishes duplicates).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import check_choice, check_positive, check_type
from ..error_policy import ErrorPolicy, ErrorPolicyLike
from ..errors import ConfigurationError
from ..formats import Format, Json, Raw, decode_with_policy
from ..formats.base import as_binary
from ..retry import ExponentialBackoff
from ..source import Position, Source, Split, SplitReader
from ..writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult

__all__ = ["PubSubSink", "PubSubSource"]

log = logging.getLogger("arrowflow.pubsub")

_META: dict[str, pa.DataType] = {
    "_message_id": pa.string(),
    "_publish_time": pa.timestamp("us", tz="UTC"),
    "_attributes": pa.map_(pa.string(), pa.string()),
    "_ordering_key": pa.string(),
    "_delivery_attempt": pa.int32(),
}
#: The server takes at most this many ack ids per acknowledge/modify_ack_deadline call.
_ACK_CHUNK = 2500
_RETRYABLE_ERRORS = (
    "ServiceUnavailable",
    "DeadlineExceeded",
    "InternalServerError",
    "Aborted",
    "ResourceExhausted",
    "TooManyRequests",
    "Unknown",
    "Cancelled",
    "TimeoutError",
    "PublishToPausedOrderingKeyException",
)


#: gRPC status names of a failed Publish RPC that are worth retrying.
_RETRYABLE_STATUS = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN", "CANCELLED"}
)


def _direct_publish(publisher: Any) -> tuple[Any, Any] | None:
    """``(Publish multicallable on raw protobufs, raw PublishRequest class)`` for ``publisher``'s gRPC
    channel, or None when its transport has no gRPC channel (then the client library publishes)."""
    from google.pubsub_v1 import types

    channel = getattr(publisher.transport, "grpc_channel", None)
    if channel is None or not hasattr(channel, "unary_unary"):
        return None
    request_type = types.PublishRequest.pb()
    call = channel.unary_unary(
        "/google.pubsub.v1.Publisher/Publish",
        request_serializer=request_type.SerializeToString,
        response_deserializer=types.PublishResponse.pb().FromString,
    )
    return call, request_type


def _path(project: str, kind: str, name: str) -> str:
    return name if name.startswith("projects/") else f"projects/{project}/{kind}/{name}"


def _check_name(option: str, value: Any) -> None:
    check_type(option, value, str)
    if not value:
        raise ConfigurationError(f"{option} must not be empty", option=option)


def subscriber_client(emulator_host: str | None) -> Any:
    """A ``SubscriberClient``: an insecure channel to ``emulator_host``, else the library's default."""
    from google.cloud import pubsub_v1

    if emulator_host is None:
        return pubsub_v1.SubscriberClient()
    import grpc
    from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

    return pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator_host))
    )


def publisher_client(emulator_host: str | None, **kwargs: Any) -> Any:
    """A ``PublisherClient`` (``kwargs``: batch_settings, publisher_options) for ``emulator_host``."""
    from google.cloud import pubsub_v1

    if emulator_host is None:
        return pubsub_v1.PublisherClient(**kwargs)
    import grpc
    from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

    channel = grpc.insecure_channel(emulator_host)
    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel), **kwargs)


# ----------------------------------------------------------------------------------------- source


class PubSubSource(Source):
    """Reads a Pub/Sub subscription by streaming pull. See the module docstring for the contract."""

    name = "pubsub"

    def __init__(
        self,
        project: str,
        subscription: str,
        *,
        emulator_host: str | None = None,
        streams: int = 1,
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        error_policy: ErrorPolicyLike = "fail",
        max_messages: int = 10_000,
        max_bytes: int = 100 * 1024 * 1024,
        ack_deadline: int = 60,
        max_hold: float = 3600.0,
        request_timeout: float = 30.0,
    ) -> None:
        _check_name("project", project)
        _check_name("subscription", subscription)
        check_type("emulator_host", emulator_host, str, allow_none=True)
        for opt, val in (("streams", streams), ("max_messages", max_messages), ("max_bytes", max_bytes)):
            check_type(opt, val, int)
            check_positive(opt, val)
        check_type("ack_deadline", ack_deadline, int)
        if not 10 <= ack_deadline <= 600:
            raise ConfigurationError(
                f"ack_deadline must be 10..600 seconds, got {ack_deadline}", option="ack_deadline"
            )
        check_positive("max_hold", max_hold)
        check_positive("request_timeout", request_timeout)
        check_type("format", format, Format, allow_none=True)
        self.metadata_columns = tuple(metadata_columns)
        for m in self.metadata_columns:
            check_choice("metadata_columns", m, tuple(_META))
        self.project = project
        self.subscription = _path(project, "subscriptions", subscription)
        self.emulator_host = emulator_host
        self.streams = streams
        self.format: Format = format if format is not None else Raw()
        self.error_policy = ErrorPolicy.resolve(error_policy, name="pubsub source")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.ack_deadline = ack_deadline
        self.max_hold = float(max_hold)
        self.request_timeout = float(request_timeout)

    @property
    def bounded(self) -> bool:
        return False

    @property
    def schema(self) -> pa.Schema | None:
        base = self.format.schema
        if base is None:
            return None
        return pa.schema([*base, *(pa.field(m, _META[m]) for m in self.metadata_columns)])

    def plan(self) -> list[Split]:
        return [
            Split(split_id=f"{self.subscription}/{i}", bounded=False, params={"index": i})
            for i in range(self.streams)
        ]

    def open(self, split: Split, position: Position = None) -> PubSubSplitReader:
        return PubSubSplitReader(self, split, position)


class PubSubSplitReader(SplitReader):
    """One streaming pull of the subscription. See the module docstring."""

    def __init__(self, source: PubSubSource, split: Split, position: Position = None) -> None:
        super().__init__(split, position)
        self._source = source
        self._seq = int(position) if position is not None else 0
        self._position: Position = position
        self._closed = False
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._buffer: deque[Any] = deque()  # raw ReceivedMessage protos not yet returned
        self._leases: dict[str, float] = {}  # ack id -> when it arrived (monotonic); guarded by _cond
        self._held: deque[tuple[int, list[str]]] = deque()  # (seq, ack ids) waiting for commit
        self._requests: queue.Queue[Any] = queue.Queue()
        self._call: Any = None
        self._client = subscriber_client(source.emulator_host)
        self._client_id = uuid.uuid4().hex
        self._reader = threading.Thread(
            target=self._pull_loop, name=f"arrowflow-pubsub-{split.split_id}", daemon=True
        )
        self._leaser = threading.Thread(target=self._lease_loop, name="arrowflow-pubsub-lease", daemon=True)
        self._reader.start()
        self._leaser.start()

    # -- background threads -----------------------------------------------------------------

    def _request_iter(self, requests: queue.Queue[Any]) -> Iterator[Any]:
        from google.pubsub_v1 import types

        src = self._source
        yield types.StreamingPullRequest(
            subscription=src.subscription,
            stream_ack_deadline_seconds=src.ack_deadline,
            max_outstanding_messages=src.max_messages,
            max_outstanding_bytes=src.max_bytes,
            client_id=self._client_id,
        )
        while True:
            item = requests.get()
            if item is None:
                return
            yield item

    def _pull_loop(self) -> None:
        from google.pubsub_v1 import types

        backoff = ExponentialBackoff(initial_delay=0.1, max_delay=5.0, multiplier=2.0)
        attempt = 0
        pb_of = types.StreamingPullResponse.pb
        while not self._stop.is_set():
            try:
                # The raw gRPC stub, not the wrapped method: the wrapper blocks until the first
                # response arrives, and until then close() would have no call to cancel.
                stub = self._client.transport.streaming_pull
                self._call = stub(
                    self._request_iter(self._requests),
                    metadata=[("x-goog-request-params", f"subscription={self._source.subscription}")],
                )
                if self._stop.is_set():
                    self._call.cancel()
                for resp in self._call:
                    received = pb_of(resp).received_messages
                    if not received:
                        continue
                    attempt = 0
                    now = time.monotonic()
                    with self._cond:
                        self._buffer.extend(received)
                        for rm in received:
                            self._leases[rm.ack_id] = now
                        self._cond.notify_all()
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("pubsub: stream on %s ended: %s", self.split.split_id, exc)
            # Reopen: a new request iterator (the old one ends on its sentinel).
            self._requests.put(None)
            self._requests = queue.Queue()
            attempt += 1
            self._stop.wait(backoff.delay(attempt))

    def _lease_loop(self) -> None:
        src = self._source
        interval = max(1.0, src.ack_deadline / 3)
        while not self._stop.wait(interval):
            now = time.monotonic()
            with self._cond:
                ids = [a for a, t in self._leases.items() if now - t < src.max_hold]
                expired = [a for a, t in self._leases.items() if now - t >= src.max_hold]
                for a in expired:  # no longer extended: the server redelivers them
                    del self._leases[a]
            self._modify(ids, src.ack_deadline)

    def _modify(self, ack_ids: list[str], seconds: int) -> None:
        for i in range(0, len(ack_ids), _ACK_CHUNK):
            try:
                self._client.modify_ack_deadline(
                    subscription=self._source.subscription,
                    ack_ids=ack_ids[i : i + _ACK_CHUNK],
                    ack_deadline_seconds=seconds,
                    timeout=self._source.request_timeout,
                )
            except Exception as exc:  # an expired id makes the server redeliver: a duplicate, not a loss
                log.warning(
                    "pubsub: modify_ack_deadline(%d ids) failed: %s", len(ack_ids[i : i + _ACK_CHUNK]), exc
                )

    # -- the reader contract -------------------------------------------------------------------

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed:
            return None
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while not self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            n = min(max_rows, len(self._buffer))
            msgs = [self._buffer.popleft() for _ in range(n)]
        return self._to_batch(msgs)

    def _to_batch(self, received: list[Any]) -> pa.RecordBatch:
        src = self._source
        msgs = [rm.message for rm in received]
        self._seq += 1
        self._held.append((self._seq, [rm.ack_id for rm in received]))
        self._position = self._seq
        values = pa.array([m.data for m in msgs], pa.binary())
        ids = pa.array([m.message_id for m in msgs], pa.string())
        keys = pa.array([m.ordering_key or None for m in msgs], pa.string())
        meta = pa.RecordBatch.from_arrays([ids, keys], names=["message_id", "ordering_key"])
        batch, rows = decode_with_policy(src.format, values, src.error_policy, meta)
        take = None if len(rows) == len(msgs) else pa.array(rows, pa.int64())
        for name in src.metadata_columns:
            if name == "_message_id":
                col = ids
            elif name == "_ordering_key":
                col = keys
            elif name == "_publish_time":
                us = np.fromiter(
                    (m.publish_time.seconds * 1_000_000 + m.publish_time.nanos // 1000 for m in msgs),
                    np.int64,
                    len(msgs),
                )
                col = pa.array(us).cast(_META[name])
            elif name == "_attributes":
                col = pa.array([list(m.attributes.items()) for m in msgs], _META[name])
            else:
                col = pa.array([rm.delivery_attempt for rm in received], pa.int32())
            batch = batch.append_column(pa.field(name, _META[name]), col if take is None else col.take(take))
        return batch

    @property
    def finished(self) -> bool:
        return False

    def snapshot(self) -> Position:
        return self._position

    def commit(self, snapshot: Position) -> None:
        """Acknowledge every message of the batches returned up to ``snapshot``."""
        if snapshot is None or self._closed:
            return
        ids: list[str] = []
        while self._held and self._held[0][0] <= int(snapshot):
            ids.extend(self._held.popleft()[1])
        if not ids:
            return
        with self._cond:
            for a in ids:
                self._leases.pop(a, None)
        for i in range(0, len(ids), _ACK_CHUNK):
            try:
                self._client.acknowledge(
                    subscription=self._source.subscription,
                    ack_ids=ids[i : i + _ACK_CHUNK],
                    timeout=self._source.request_timeout,
                )
            except Exception as exc:
                log.warning("pubsub: acknowledge up to %s failed: %s", snapshot, exc)

    def lag(self) -> int | None:
        return len(self._buffer)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._requests.put(None)
        call = self._call
        if call is not None:
            try:
                call.cancel()
            except Exception as exc:
                log.debug("pubsub: cancel stream: %s", exc)
        with self._cond:
            unacked = list(self._leases)
            self._leases.clear()
            self._buffer.clear()
        # Hand everything not acknowledged back now, so a restart need not wait for the deadline.
        self._modify(unacked, 0)
        self._reader.join(timeout=5)
        try:
            self._client.close()
        except Exception as exc:
            log.debug("pubsub: close: %s", exc)


# ------------------------------------------------------------------------------------------- sink


class PubSubSink(AsyncBatchWriter):
    """Publishes one Pub/Sub message per row. See the module docstring for the contract."""

    name = "pubsub"

    def __init__(
        self,
        project: str,
        topic: str,
        *,
        emulator_host: str | None = None,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        ordering_key_column: str | None = None,
        attributes_column: str | None = None,
        batch_max_messages: int = 1000,
        batch_max_bytes: int = 9 * 1024 * 1024,
        batch_max_latency: float = 0.01,
        publish_timeout: float = 60.0,
        batching: BatchingConfig | None = None,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        from google.cloud.pubsub_v1 import types

        _check_name("project", project)
        _check_name("topic", topic)
        check_type("emulator_host", emulator_host, str, allow_none=True)
        if value_column is not None and (value_columns is not None or format is not None):
            raise ConfigurationError(
                "value_column is sent as is; it excludes value_columns and format", option="value_column"
            )
        check_type("format", format, Format, allow_none=True)
        check_type("ordering_key_column", ordering_key_column, str, allow_none=True)
        check_type("attributes_column", attributes_column, str, allow_none=True)
        for opt, val in (("batch_max_messages", batch_max_messages), ("batch_max_bytes", batch_max_bytes)):
            check_type(opt, val, int)
            check_positive(opt, val)
        if batch_max_messages > 1000:
            raise ConfigurationError(
                f"batch_max_messages must be <= 1000 (Pub/Sub's limit per Publish), got {batch_max_messages}",
                option="batch_max_messages",
            )
        if batch_max_bytes > 10_000_000:
            raise ConfigurationError(
                f"batch_max_bytes must be <= 10000000 (Pub/Sub's limit per Publish), got {batch_max_bytes}",
                option="batch_max_bytes",
            )
        check_positive("batch_max_latency", batch_max_latency)
        check_positive("publish_timeout", publish_timeout)
        self.project = project
        self.topic = _path(project, "topics", topic)
        self.emulator_host = emulator_host
        self.value_column = value_column
        self.value_columns = tuple(value_columns) if value_columns is not None else None
        self.format: Format = format if format is not None else Json()
        self.ordering_key_column = ordering_key_column
        self.attributes_column = attributes_column
        self.publish_timeout = float(publish_timeout)
        config = batching or BatchingConfig(
            max_request_rows=5000,
            max_request_bytes=None,
            max_in_flight=1,
            max_time_in_buffer=0.5,
            max_buffered_rows=50_000,
        )
        super().__init__(config, error_policy=error_policy, name="pubsub sink")
        self._publisher = publisher_client(
            emulator_host,
            batch_settings=types.BatchSettings(
                max_messages=batch_max_messages, max_bytes=batch_max_bytes, max_latency=batch_max_latency
            ),
            publisher_options=types.PublisherOptions(enable_message_ordering=ordering_key_column is not None),
        )
        self.batch_max_messages = batch_max_messages
        self.batch_max_bytes = batch_max_bytes
        self._direct = None if ordering_key_column is not None else _direct_publish(self._publisher)

    def encode(self, batch: pa.RecordBatch) -> pa.Array | Encoded:
        n = batch.num_rows
        used = {self.ordering_key_column, self.attributes_column} - {None}
        if self.value_column is not None:
            col = batch.column(self.value_column)
            if not (pa.types.is_binary(col.type) or pa.types.is_string(col.type)):
                col = col.cast(pa.string())
            payloads = as_binary(col)
            failed = np.flatnonzero(~np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool))
            errors = ["null value"] * len(failed)
        else:
            cols = (
                list(self.value_columns)
                if self.value_columns is not None
                else [c for c in batch.schema.names if c not in used]
            )
            enc = self.format.encode(batch.select(cols))
            payloads, failed, errors = (
                as_binary(enc.payloads),
                np.asarray(enc.failed, np.int64),
                list(enc.errors),
            )
        if pa.types.is_large_binary(payloads.type):
            payloads = payloads.cast(pa.binary())
        keys = (
            batch.column(self.ordering_key_column).cast(pa.string())
            if self.ordering_key_column
            else pa.nulls(n, pa.string())
        )
        fields, names = [payloads, keys], ["payload", "key"]
        if self.attributes_column is not None:
            attrs = batch.column(self.attributes_column)
            if not pa.types.is_map(attrs.type):
                raise ConfigurationError(
                    f"attributes_column {self.attributes_column!r} must be map<string, string>, "
                    f"not {attrs.type}",
                    option="attributes_column",
                )
            fields.append(attrs.cast(pa.map_(pa.string(), pa.string())))
            names.append("attributes")
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
        attrs = entries.field("attributes").to_pylist() if self.attributes_column is not None else None
        if self._direct is not None:
            return self._submit_direct(n, data, offsets, attrs)
        keys = entries.field("key").to_pylist() if self.ordering_key_column is not None else None
        publish, topic = self._publisher.publish, self.topic
        futures: list[Any] = []
        early: dict[int, BaseException] = {}
        for i in range(n):
            kwargs: dict[str, Any] = dict(attrs[i]) if attrs is not None and attrs[i] else {}
            key = keys[i] if keys is not None else None
            try:
                futures.append(
                    publish(topic, data[offsets[i] : offsets[i + 1]], ordering_key=key or "", **kwargs)
                )
            except Exception as refused:  # refused before sending (paused key, bad attribute)
                early[i] = refused
                futures.append(None)
        live = [f for f in futures if f is not None]
        _, pending = concurrent.futures.wait(live, timeout=self.publish_timeout)
        failed: list[int] = []
        errors: list[str] = []
        retryable: list[bool] = []
        paused: set[str] = set()
        for i, fut in enumerate(futures):
            if fut is None:
                exc: BaseException | None = early[i]
            elif fut in pending:
                exc = TimeoutError("no publish result within publish_timeout")
            else:
                exc = fut.exception()
            if exc is None:
                continue
            failed.append(i)
            errors.append(f"{type(exc).__name__}: {exc}")
            retryable.append(type(exc).__name__ in _RETRYABLE_ERRORS)
            if keys is not None and keys[i]:
                paused.add(keys[i])
        for key in paused:  # a failed publish pauses its ordering key until resumed
            try:
                self._publisher.resume_publish(topic, key)
            except Exception as exc:
                log.debug("pubsub: resume_publish(%r): %s", key, exc)
        if not failed:
            return None
        return SubmitResult(
            failed=np.asarray(failed, np.int64), errors=errors, retryable=np.asarray(retryable)
        )

    def _submit_direct(
        self, n: int, data: bytes, offsets: list[int], attrs: list[Any] | None
    ) -> SubmitResult | None:
        """``Publish`` RPCs of raw protobuf messages, all in flight at once; see the module docstring."""
        assert self._direct is not None
        call, request_type = self._direct
        sizes = np.diff(np.asarray(offsets, np.int64))
        chunks: list[tuple[int, int]] = []
        start, total = 0, 0
        for i in range(n):  # cut at batch_max_messages / batch_max_bytes (a too-big row goes alone)
            size = int(sizes[i]) + 64
            if i > start and (i - start >= self.batch_max_messages or total + size > self.batch_max_bytes):
                chunks.append((start, i))
                start, total = i, 0
            total += size
        chunks.append((start, n))
        metadata = [("x-goog-request-params", f"topic={self.topic}")]
        calls: list[tuple[int, int, Any]] = []
        for lo, hi in chunks:
            request = request_type(topic=self.topic)
            add = request.messages.add
            if attrs is None:
                for i in range(lo, hi):
                    add(data=data[offsets[i] : offsets[i + 1]])
            else:
                for i in range(lo, hi):
                    a = attrs[i]
                    add(data=data[offsets[i] : offsets[i + 1]], attributes=dict(a) if a else None)
            calls.append((lo, hi, call.future(request, timeout=self.publish_timeout, metadata=metadata)))
        failed: list[np.ndarray] = []
        errors: list[str] = []
        retryable: list[bool] = []
        for lo, hi, fut in calls:
            try:
                got = len(fut.result().message_ids)
                if got != hi - lo:
                    raise RuntimeError(f"server returned {got} message ids for {hi - lo} messages")
                continue
            except Exception as exc:
                code = getattr(exc, "code", None)
                status = code() if callable(code) else None
                name = getattr(status, "name", type(exc).__name__)
                details = getattr(exc, "details", None)
                why = f"{name}: {details() if callable(details) else exc}"
                again = name in _RETRYABLE_STATUS or type(exc).__name__ in _RETRYABLE_ERRORS
            failed.append(np.arange(lo, hi, dtype=np.int64))
            errors.extend([why] * (hi - lo))
            retryable.extend([again] * (hi - lo))
        if not failed:
            return None
        return SubmitResult(failed=np.concatenate(failed), errors=errors, retryable=np.asarray(retryable))

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            try:
                self._publisher.stop()
            except Exception as exc:
                log.debug("pubsub sink: stop: %s", exc)
