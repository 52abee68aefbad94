"""MQTT sink (its own connection, a compiled frame kernel): one ``PUBLISH`` per row, QoS and retain.

Contract (batching, retries, error policy: :class:`~arrowflow.writer.AsyncBatchWriter`; payloads:
:mod:`arrowflow.connectors._messaging`):

* One ``PUBLISH`` per row to ``topic`` or the row's ``topic_column``, with ``qos`` and ``retain``;
  the payload is ``value_column`` as is or the ``value_columns`` encoded by ``format`` (default JSON).
* The sink publishes on its own MQTT connection (:mod:`arrowflow.connectors.mqtt._client`, not
  paho): a request's PUBLISH packets are built by a compiled kernel into one buffer and written in
  windows of at most the broker's ``Receive Maximum`` (MQTT 5; for 3.1.1 1000 at QoS 1, 20 at QoS 2)
  unacknowledged messages; the acknowledgements are read in bulk. It connects at the first request.
  A request waits until each message is acknowledged (QoS 1: ``PUBACK``, QoS 2: ``PUBCOMP``; QoS 0:
  written to the socket). When the connection fails, or acknowledgements do not arrive within
  ``publish_timeout``, the connection is dropped and the request's unacknowledged messages are
  retried on a new one (after the writer's retry backoff): at-least-once (duplicates possible) for
  QoS 1 and 2; QoS 0 is at-most-once on the wire. An MQTT 5 reason code >= 0x80 on a
  ``PUBACK``/``PUBREC`` fails that message (quota exceeded and packet id in use are retried, the
  others go to the error policy); a broker refusing the credentials or the client id fails the sink
  (not retried). ``tls=True`` is refused at construction: the sink's connection is plain TCP.
* ``flush`` returns once every message written so far was acknowledged or handed to the policy.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ...config import Secret, resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError, ConnectorError
from ...formats import Format
from ...retry import ExponentialBackoff
from ...writer import BatchingConfig, SubmitResult
from .._messaging import MessageSink, failures
from ._client import MqttPublisher, PublishError
from .config import MQTT_BATCHING, MQTT_RECONNECT, MqttConnection, MqttSinkConfig

__all__ = ["MqttSink"]


class MqttSink(MessageSink):
    """Publishes one MQTT message per row. See the module docstring for the contract."""

    name = "mqtt"
    default_batching = MQTT_BATCHING

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
        client_id: str = "",
        clean_session: bool = True,
        protocol: str = "5",
        session_expiry: int = 3600,
        username: str | None = None,
        password: str | Secret | None = None,
        keepalive: int = 30,
        publish_timeout: float = 30.0,
        reconnect_backoff: ExponentialBackoff = MQTT_RECONNECT,
        tls: bool = False,
        batching: BatchingConfig = MQTT_BATCHING,
        error_policy: ErrorPolicyLike = "fail",
        config: MqttSinkConfig | None = None,
    ) -> None:
        config = resolve_config(MqttSinkConfig, config, locals())
        super().__init__(config, error_policy=error_policy, name="mqtt sink")
        self.connection: MqttConnection = config
        if config.tls:
            raise ConfigurationError(
                "the MQTT sink publishes on a plain TCP connection; tls=True is not supported",
                option="tls",
            )
        #: The client id in use (made up when ``client_id`` is empty).
        self.client_id = config.client_id or f"arrowflow-sink-{uuid.uuid4().hex[:12]}"
        self._publisher: MqttPublisher | None = None
        self._publish_lock = threading.Lock()  # one request at a time on the connection

    def _connection(self) -> MqttPublisher:
        if self._publisher is None:
            c = self.config
            try:
                self._publisher = MqttPublisher(c, client_id=self.client_id, timeout=c.publish_timeout)
            except PublishError as exc:
                raise ConnectorError(f"mqtt: {exc}", retryable=exc.retryable) from exc
        return self._publisher

    def publish(self, entries: pa.StructArray) -> SubmitResult | None:
        cfg = self.config
        n = len(entries)
        topics = entries.field("routing") if cfg.topic_column is not None else None
        with self._publish_lock:
            pub = self._connection()
            try:
                failed, errors, retryable = pub.publish(
                    entries.field("payload"),
                    qos=cfg.qos,
                    retain=cfg.retain,
                    timeout=cfg.publish_timeout,
                    topic=cfg.topic,
                    topics=topics,
                )
            except PublishError as exc:
                pub.close()
                self._publisher = None
                if not exc.retryable:
                    raise ConnectorError(f"mqtt: {exc}", retryable=False) from exc
                acked = exc.acked if exc.acked is not None else np.zeros(n, dtype=bool)
                return failures(np.flatnonzero(~acked), f"mqtt: {exc}", True)
        return failures(failed, errors, retryable)

    def close_client(self) -> None:
        if self._publisher is not None:
            self._publisher.disconnect()
            self._publisher = None
