"""MQTT sink (paho-mqtt 2): one ``PUBLISH`` per row, QoS and retain.

Contract (batching, retries, error policy: :class:`~arrowflow.writer.AsyncBatchWriter`; payloads:
:mod:`arrowflow.connectors._messaging`):

* One ``PUBLISH`` per row to ``topic`` or the row's ``topic_column``, with ``qos`` and ``retain``;
  the payload is ``value_column`` as is or the ``value_columns`` encoded by ``format`` (default JSON).
* A request publishes its messages and waits until each is acknowledged (QoS 1: ``PUBACK``, QoS 2:
  ``PUBCOMP``; QoS 0: written to the socket). While disconnected, or when acknowledgements do not
  arrive within ``publish_timeout``, the request's unacknowledged messages are retried: at-least-once
  (duplicates possible) for QoS 1; QoS 0 is at-most-once on the wire.
* ``flush`` returns once every message written so far was acknowledged or handed to the policy.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import pyarrow as pa

from ...config import Secret, resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format
from ...retry import ExponentialBackoff
from ...writer import BatchingConfig, SubmitResult
from .._messaging import MessageSink, failures
from .config import MQTT_BATCHING, MQTT_RECONNECT, MqttConnection, MqttSinkConfig, wait_connected

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
        #: The client id in use (made up when ``client_id`` is empty).
        self.client_id = config.client_id or f"arrowflow-sink-{uuid.uuid4().hex[:12]}"
        self._client = config.client(manual_ack=False, client_id=self.client_id)
        # paho's own window of unacknowledged outgoing messages: a whole request may be in flight.
        self._client.max_inflight_messages_set(config.batching.max_request_rows)
        config.connect(self._client)

    def publish(self, entries: pa.StructArray) -> SubmitResult | None:
        cfg = self.config
        client = self._client
        if not wait_connected(client, cfg.publish_timeout):
            raise ConnectorError("mqtt: not connected to the broker", retryable=True)
        out = self.outgoing(entries)
        topics, qos, retain, const = out.routing, cfg.qos, cfg.retain, cfg.topic
        publish = client.publish
        infos = [
            publish(topics[i] if topics is not None else const, out.payload(i), qos, retain)
            for i in range(out.n)
        ]
        deadline = time.monotonic() + cfg.publish_timeout
        failed: list[int] = []
        for i, info in enumerate(infos):
            if info.rc != 0 and not info.is_published():
                failed.append(i)
                continue
            while not info.is_published():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    info.wait_for_publish(min(left, 0.5))
                except (RuntimeError, ValueError):
                    break
            if not info.is_published():
                failed.append(i)
        return failures(failed, "not acknowledged by the broker", True)

    def close_client(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
