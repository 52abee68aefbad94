"""MQTT (paho-mqtt 2): :class:`MqttSource` (topic filters, QoS, persistent sessions, acks on checkpoint)
and :class:`MqttSink` (QoS, retain). Needs the ``mqtt`` extra; paho is imported when a connector is
built. The module is called ``mqtt_broker`` so that it never shadows a client package.

Source contract:

* One unbounded split per source (``split_id`` = the client id). An MQTT subscription is **not
  replayable**: the broker, not the position, decides what is delivered. The position is the number
  of messages returned so far (informational; a reopened reader reports it back).
* Sessions: ``clean_session=False`` (the default) keeps the session on the broker across
  disconnects and restarts (MQTT 5: ``Session Expiry Interval`` = ``session_expiry``; MQTT 3.1.1:
  ``clean_session=False``): QoS 1/2 messages published while the client is away are queued by the
  broker, and messages delivered but never acknowledged are delivered again when it reconnects.
  ``clean_session=True`` starts empty and forgets everything at disconnect.
* Acknowledgements (``ack="checkpoint"``, the default, needs QoS >= 1 and a persistent session): the
  client uses paho's ``manual_ack``; a message is acknowledged (``PUBACK``) only by
  ``commit(snapshot)``, i.e. once a checkpoint holding it is durable. A crash before that makes the
  broker deliver it again to the next run: **at-least-once**. After a reconnect, messages received
  on the old connection are not acknowledged any more (the broker redelivers them and their copies
  are acknowledged instead), so a stale packet id is never acknowledged. ``ack="receipt"`` lets
  paho acknowledge on receipt: at-most-once across crashes, and no in-flight limit.
* In-flight limit: a broker sends at most its in-flight window of unacknowledged QoS 1/2 messages
  (Mosquitto: 20 for MQTT 3.1.1 clients). With ``ack="checkpoint"`` that caps what one checkpoint
  interval can read, so the default protocol is MQTT 5, whose ``Receive Maximum`` (``receive_maximum``,
  default 10000) raises the window.
* ``read_batch`` waits at most ``timeout`` for messages received by paho's network thread. paho
  reconnects by itself (``reconnect_delay``); the subscriptions are renewed on every connect.
* Payloads are decoded by ``format`` (default ``Raw`` binary column ``value``); failures go to the
  error policy as rows ``payload, topic``. Metadata columns: ``_topic``, ``_qos``, ``_retain``.

Sink contract (batching, retries, error policy: :class:`~arrowflow.writer.AsyncBatchWriter`):

* One ``PUBLISH`` per row to ``topic`` or the row's ``topic_column``, with ``qos`` and ``retain``;
  the payload is ``value_column`` as is or the ``value_columns`` encoded by ``format`` (default JSON).
* The sink publishes on its own MQTT connection (:mod:`arrowflow.connectors._mqtt_pub`, not paho): a
  request's PUBLISH packets are built by a compiled kernel into one buffer and written in windows of
  at most the broker's ``Receive Maximum`` (MQTT 5; for 3.1.1 1000 at QoS 1, 20 at QoS 2)
  unacknowledged messages; the
  acknowledgements are read in bulk. It connects at the first request. A request waits until each
  message is acknowledged (QoS 1: ``PUBACK``, QoS 2: ``PUBCOMP``; QoS 0: written to the socket). When
  the connection fails, or acknowledgements do not arrive within ``publish_timeout``, the connection
  is dropped and the request's unacknowledged messages are retried on a new one: at-least-once
  (duplicates possible) for QoS 1 and 2; QoS 0 is at-most-once on the wire. An MQTT 5 reason code
  >= 0x80 on a ``PUBACK``/``PUBREC`` fails that message (quota exceeded and packet id in use are
  retried, the others go to the error policy); a broker refusing the credentials or the client id
  fails the sink (not retried).
* ``flush`` returns once every message written so far was acknowledged or handed to the policy.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Secret, check_choice, check_positive, check_type, reveal
from ..error_policy import ErrorPolicy, ErrorPolicyLike
from ..errors import ConfigurationError, ConnectorError
from ..formats import Format, Json, Raw, decode_with_policy
from ..formats.base import as_binary
from ..source import Position, Source, Split, SplitReader
from ..writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult
from ._mqtt_pub import MqttPublisher, PublishError

__all__ = ["MqttConnection", "MqttSink", "MqttSource"]

log = logging.getLogger("arrowflow.mqtt")

_META = {"_topic": pa.string(), "_qos": pa.int8(), "_retain": pa.bool_()}
_PROTOCOLS = ("5", "3.1.1")


@dataclass(frozen=True, kw_only=True)
class MqttConnection:
    """Broker address and session options shared by the source and the sink."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    clean_session: bool = False
    protocol: str = "5"
    session_expiry: int = 3600
    keepalive: int = 30
    username: str | None = None
    password: Secret | None = None
    reconnect_delay: tuple[float, float] = (0.1, 5.0)
    tls: bool = False

    def __post_init__(self) -> None:
        check_type("host", self.host, str)
        check_type("port", self.port, int)
        check_type("client_id", self.client_id, str)
        check_type("clean_session", self.clean_session, bool)
        check_choice("protocol", self.protocol, _PROTOCOLS)
        check_type("session_expiry", self.session_expiry, int)
        check_positive("keepalive", self.keepalive)
        check_type("username", self.username, str, allow_none=True)
        if isinstance(self.password, str):
            object.__setattr__(self, "password", Secret(self.password))
        lo, hi = self.reconnect_delay
        check_positive("reconnect_delay", lo)
        if hi < lo:
            raise ConfigurationError(
                "reconnect_delay must be (min, max) with min <= max", option="reconnect_delay"
            )

    def client(self, *, manual_ack: bool, receive_maximum: int | None = None) -> Any:
        """A paho client (not yet connected)."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        proto = mqtt.MQTTv5 if self.protocol == "5" else mqtt.MQTTv311
        kwargs: dict[str, Any] = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": self.client_id,
            "protocol": proto,
            "manual_ack": manual_ack,
        }
        if proto != mqtt.MQTTv5:
            kwargs["clean_session"] = self.clean_session
        c = mqtt.Client(**kwargs)
        if self.username is not None:
            c.username_pw_set(self.username, reveal(self.password))
        if self.tls:
            c.tls_set()
        lo, hi = self.reconnect_delay
        c.reconnect_delay_set(min_delay=lo, max_delay=hi)  # type: ignore[arg-type]
        c.max_queued_messages_set(0)
        return c

    def connect(self, client: Any, *, receive_maximum: int | None = None) -> None:
        """Start connecting in paho's network thread (returns at once; paho keeps reconnecting)."""
        if self.protocol == "5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if self.clean_session else self.session_expiry
            if receive_maximum is not None:
                props.ReceiveMaximum = receive_maximum
            client.connect_async(
                self.host,
                self.port,
                keepalive=self.keepalive,
                clean_start=self.clean_session if self.clean_session else False,
                properties=props,
            )
        else:
            client.connect_async(self.host, self.port, keepalive=self.keepalive)
        client.loop_start()


def _wait_connected(client: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not client.is_connected():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


# ----------------------------------------------------------------------------------------- source


class MqttSource(Source):
    """Subscribes to MQTT topic filters. See the module docstring for the contract.

    ``topics``: topic filters (``+``/``#`` wildcards), all at ``qos``, or a mapping filter -> QoS.
    ``client_id`` identifies the session and must be stable across restarts for a persistent session.
    """

    name = "mqtt"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        topics: Sequence[str] | Mapping[str, int] | str,
        client_id: str,
        qos: int = 1,
        clean_session: bool = False,
        protocol: str = "5",
        session_expiry: int = 3600,
        receive_maximum: int = 10_000,
        ack: str = "checkpoint",
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        username: str | None = None,
        password: str | Secret | None = None,
        keepalive: int = 30,
        connect_timeout: float = 10.0,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        if not client_id:
            raise ConfigurationError("client_id is required (it names the session)", option="client_id")
        self.connection = MqttConnection(
            host=host,
            port=port,
            client_id=client_id,
            clean_session=clean_session,
            protocol=protocol,
            session_expiry=session_expiry,
            keepalive=keepalive,
            username=username,
            password=Secret(password) if isinstance(password, str) else password,
        )
        check_choice("qos", qos, (0, 1, 2))
        if isinstance(topics, str):
            topics = [topics]
        subs = dict(topics) if isinstance(topics, Mapping) else dict.fromkeys(topics, qos)
        if not subs:
            raise ConfigurationError("topics must name at least one topic filter", option="topics")
        for t, q in subs.items():
            check_type("topics", t, str)
            check_choice("topics (qos)", q, (0, 1, 2))
        self.topics: dict[str, int] = subs
        check_choice("ack", ack, ("checkpoint", "receipt"))
        if ack == "checkpoint" and clean_session:
            raise ConfigurationError(
                "ack='checkpoint' needs a persistent session (clean_session=False): a clean session "
                "forgets unacknowledged messages at disconnect",
                option="ack",
            )
        self.ack = ack
        check_type("receive_maximum", receive_maximum, int)
        if not 1 <= receive_maximum <= 65535:
            raise ConfigurationError("receive_maximum must be in 1..65535", option="receive_maximum")
        self.receive_maximum = receive_maximum
        check_positive("connect_timeout", connect_timeout)
        self.connect_timeout = connect_timeout
        self.metadata_columns = tuple(metadata_columns)
        for m in self.metadata_columns:
            check_choice("metadata_columns", m, tuple(_META))
        check_type("format", format, Format, allow_none=True)
        self.format: Format = format if format is not None else Raw(column="value")
        self.error_policy = ErrorPolicy.resolve(error_policy, name="mqtt source")

    @property
    def bounded(self) -> bool:
        return False

    def plan(self) -> list[Split]:
        return [Split(split_id=self.connection.client_id, bounded=False, params={"topics": self.topics})]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        if position is not None and (isinstance(position, bool) or not isinstance(position, int)):
            raise ConnectorError(f"split {split.split_id!r}: a position is a message count, got {position!r}")
        return _MqttReader(split, position, self)


class _MqttReader(SplitReader):
    def __init__(self, split: Split, position: Position, source: MqttSource) -> None:
        super().__init__(split, position)
        self._source = source
        self._count: int = position or 0
        self._lock = threading.Condition()
        self._inbox: deque[Any] = deque()
        # Received on which connection (acks from an older connection are dropped, see the docstring).
        self._generation = 0
        self._unacked: deque[tuple[int, int, list[tuple[int, int]]]] = deque()
        self._closed = False
        manual = source.ack == "checkpoint"
        self._client = source.connection.client(manual_ack=manual)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        source.connection.connect(self._client, receive_maximum=source.receive_maximum)
        if not _wait_connected(self._client, source.connect_timeout):
            self.close()
            c = source.connection
            raise ConnectorError(
                f"mqtt: no connection to {c.host}:{c.port} within {source.connect_timeout}s", retryable=True
            )

    # paho callbacks (network thread) ------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("mqtt: connect refused: %s", reason)
            return
        with self._lock:
            self._generation += 1
        client.subscribe([(t, q) for t, q in self._source.topics.items()])

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self._closed:
            log.warning("mqtt: disconnected (%s); paho reconnects", reason)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self._inbox.append((self._generation, msg))
            self._lock.notify()

    # reading ------------------------------------------------------------------------------------

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed:
            return None
        with self._lock:
            if not self._inbox:
                self._lock.wait(max(timeout, 0.0))
            n = min(max_rows, len(self._inbox))
            if n == 0:
                return None
            taken = [self._inbox.popleft() for _ in range(n)]
        return self._to_batch(taken)

    def _to_batch(self, taken: list[tuple[int, Any]]) -> pa.RecordBatch:
        src = self._source
        msgs = [m for _, m in taken]
        n = len(msgs)
        values = pa.array([m.payload for m in msgs], pa.binary())
        topics = pa.array([m.topic for m in msgs], pa.string())
        self._count += n
        if src.ack == "checkpoint":
            acks = [(g, m.mid, m.qos) for g, m in taken if m.qos > 0]
            if acks:
                gen = acks[-1][0]
                self._unacked.append((self._count, gen, [(mid, q) for g, mid, q in acks if g == gen]))
        meta = pa.RecordBatch.from_arrays([topics], names=["topic"])
        batch, rows = decode_with_policy(src.format, values, src.error_policy, meta)
        take = None if len(rows) == n else pa.array(rows, pa.int64())
        for name in src.metadata_columns:
            if name == "_topic":
                col = topics
            elif name == "_qos":
                col = pa.array(np.fromiter((m.qos for m in msgs), np.int8, n))
            else:
                col = pa.array(np.fromiter((bool(m.retain) for m in msgs), np.bool_, n))
            batch = batch.append_column(pa.field(name, _META[name]), col if take is None else col.take(take))
        return batch

    @property
    def finished(self) -> bool:
        return False

    def snapshot(self) -> Position:
        return self._count if (self._count or self.start_position is not None) else None

    def commit(self, snapshot: Position) -> None:
        """Acknowledge (``PUBACK``/``PUBREC``) every message returned up to ``snapshot``."""
        if snapshot is None or self._closed:
            return
        with self._lock:
            gen = self._generation
        while self._unacked and self._unacked[0][0] <= snapshot:
            _, g, acks = self._unacked.popleft()
            if g != gen:
                continue  # received before a reconnect: the broker redelivers it, the copy is acked
            for mid, qos in acks:
                self._client.ack(mid, qos)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._client.disconnect()
        except Exception as exc:  # not connected
            log.debug("mqtt: disconnect: %s", exc)
        self._client.loop_stop()


# ------------------------------------------------------------------------------------------- sink


class MqttSink(AsyncBatchWriter):
    """Publishes one MQTT message per row. See the module docstring for the contract."""

    name = "mqtt"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        topic: str | None = None,
        topic_column: str | None = None,
        qos: int = 1,
        retain: bool = False,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        client_id: str | None = None,
        clean_session: bool = True,
        protocol: str = "5",
        session_expiry: int = 3600,
        username: str | None = None,
        password: str | Secret | None = None,
        keepalive: int = 30,
        publish_timeout: float = 30.0,
        batching: BatchingConfig | None = None,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        self.connection = MqttConnection(
            host=host,
            port=port,
            client_id=client_id or f"arrowflow-sink-{uuid.uuid4().hex[:12]}",
            clean_session=clean_session,
            protocol=protocol,
            session_expiry=session_expiry,
            keepalive=keepalive,
            username=username,
            password=Secret(password) if isinstance(password, str) else password,
        )
        if (topic is None) == (topic_column is None):
            raise ConfigurationError("give exactly one of topic or topic_column", option="topic")
        if topic is not None and (not topic or "+" in topic or "#" in topic):
            raise ConfigurationError(
                f"topic {topic!r} must be non-empty and without wildcards", option="topic"
            )
        check_choice("qos", qos, (0, 1, 2))
        check_type("retain", retain, bool)
        check_positive("publish_timeout", publish_timeout)
        if value_column is not None and (value_columns is not None or format is not None):
            raise ConfigurationError(
                "value_column is sent as is; it excludes value_columns and format", option="value_column"
            )
        check_type("format", format, Format, allow_none=True)
        self.topic = topic
        self.topic_column = topic_column
        self.qos = qos
        self.retain = retain
        self.value_column = value_column
        self.value_columns = tuple(value_columns) if value_columns is not None else None
        self.format: Format = format if format is not None else Json()
        self.publish_timeout = publish_timeout
        config = batching or BatchingConfig(
            max_request_rows=2000, max_in_flight=1, max_attempts=None, max_retry_time=120.0
        )
        super().__init__(config, error_policy=error_policy, name="mqtt sink")
        self._publisher: MqttPublisher | None = None
        self._publish_lock = threading.Lock()  # one request at a time on the connection

    def encode(self, batch: pa.RecordBatch) -> pa.Array | Encoded:
        n = batch.num_rows
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
            elif getattr(self.format, "columns", None) is not None:
                cols = batch.schema.names
            else:
                cols = [c for c in batch.schema.names if c != self.topic_column]
            enc = self.format.encode(batch.select(cols))
            payloads, failed, errors = (
                as_binary(enc.payloads),
                np.asarray(enc.failed, np.int64),
                list(enc.errors),
            )
        if self.topic_column is not None:
            topics = batch.column(self.topic_column).cast(pa.string())
            bad_topic = np.asarray(
                pc.or_kleene(topics.is_null(), pc.equal(pc.binary_length(topics), 0))
                .fill_null(True)
                .to_numpy(zero_copy_only=False),
                bool,
            )
            if bad_topic.any():
                extra = np.setdiff1d(np.flatnonzero(bad_topic), failed)
                failed = np.concatenate([failed, extra]).astype(np.int64)
                errors = errors + ["null or empty topic"] * len(extra)
                order = np.argsort(failed, kind="stable")
                failed, errors = failed[order], [errors[i] for i in order]
            topic_arr: pa.Array = topics
        else:
            topic_arr = pa.nulls(n, pa.string())
        if pa.types.is_large_binary(payloads.type):
            payloads = payloads.cast(pa.binary())
        entries = pa.StructArray.from_arrays([topic_arr, payloads], names=["topic", "payload"])
        if len(failed) == 0:
            return entries
        good = np.setdiff1d(np.arange(n, dtype=np.int64), failed, assume_unique=True)
        return Encoded(entries=entries.take(pa.array(good)), failed=failed.astype(np.int64), errors=errors)

    def entry_sizes(self, entries: pa.Array) -> np.ndarray:
        sizes: np.ndarray = super().entry_sizes(entries.field("payload"))
        if self.topic_column is not None:
            sizes = sizes + super().entry_sizes(entries.field("topic"))
        return sizes

    def _connection(self) -> MqttPublisher:
        if self._publisher is None:
            c = self.connection
            try:
                self._publisher = MqttPublisher(
                    c.host,
                    c.port,
                    client_id=c.client_id,
                    v5=c.protocol == "5",
                    clean_start=c.clean_session,
                    session_expiry=c.session_expiry,
                    keepalive=c.keepalive,
                    username=c.username,
                    password=reveal(c.password) if c.password is not None else None,
                    timeout=self.publish_timeout,
                )
            except PublishError as exc:
                raise ConnectorError(f"mqtt: {exc}", retryable=exc.retryable) from exc
        return self._publisher

    def submit(self, entries: pa.Array) -> SubmitResult | None:
        n = len(entries)
        if n == 0:
            return None
        topics = entries.field("topic") if self.topic_column is not None else None
        with self._publish_lock:
            pub = self._connection()
            try:
                failed, errors, retryable = pub.publish(
                    entries.field("payload"),
                    qos=self.qos,
                    retain=self.retain,
                    timeout=self.publish_timeout,
                    topic=self.topic,
                    topics=topics,
                )
            except PublishError as exc:
                pub.close()
                self._publisher = None
                if not exc.retryable:
                    raise ConnectorError(f"mqtt: {exc}", retryable=False) from exc
                acked = exc.acked if exc.acked is not None else np.zeros(n, dtype=bool)
                lost = np.flatnonzero(~acked)
                return SubmitResult(failed=lost.astype(np.int64), errors=f"mqtt: {exc}", retryable=True)
        if not len(failed):
            return None
        return SubmitResult(failed=failed, errors=errors, retryable=retryable)

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            if self._publisher is not None:
                self._publisher.disconnect()
                self._publisher = None
