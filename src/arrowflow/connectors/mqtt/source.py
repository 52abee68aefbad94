"""MQTT source (paho-mqtt 2): topic filters, QoS, persistent sessions, acks on checkpoint.

Contract:

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
  reconnects by itself (``reconnect_backoff``); the subscriptions are renewed on every connect.
* Payloads are decoded by ``format`` (default ``Raw`` binary column ``value``); failures go to the
  error policy as rows ``payload, topic``. Metadata columns: ``_topic``, ``_qos``, ``_retain``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import REQUIRED, Secret
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format
from ...retry import ExponentialBackoff
from ...source import Position, Split, SplitReader, check_int_position
from .._messaging import MessageReader, MessageSource
from .config import MQTT_RECONNECT, MqttConnection, MqttSourceConfig, wait_connected

__all__ = ["MqttSource"]

log = logging.getLogger("arrowflow.mqtt")


class MqttSource(MessageSource[MqttSourceConfig]):
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
        topics: Sequence[str] | Mapping[str, int] | str = REQUIRED,
        client_id: str = REQUIRED,
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
        reconnect_backoff: ExponentialBackoff = MQTT_RECONNECT,
        tls: bool = False,
        error_policy: ErrorPolicyLike = "fail",
        config: MqttSourceConfig | None = None,
    ) -> None:
        config = self._init_messages(locals())
        self.connection: MqttConnection = config
        self.topics: dict[str, int] = dict(config.topics)  # type: ignore[arg-type]

    def plan(self) -> list[Split]:
        return [Split(split_id=self.config.client_id, bounded=False, params={"topics": self.topics})]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        check_int_position(split, position, "a message count", minimum=None)
        return _MqttReader(split, position, self)


class _MqttReader(MessageReader):
    def __init__(self, split: Split, position: Position, source: MqttSource) -> None:
        super().__init__(source, split, position)
        cfg: MqttSourceConfig = source.config
        self._cfg = cfg
        self._topics = source.topics
        self._count: int = position or 0
        # Received on which connection (acks from an older connection are dropped, see the docstring).
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._client = cfg.client(manual_ack=cfg.ack == "checkpoint")
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        cfg.connect(self._client, receive_maximum=cfg.receive_maximum)
        if not wait_connected(self._client, cfg.connect_timeout):
            self.close()
            raise ConnectorError(
                f"mqtt: no connection to {cfg.host}:{cfg.port} within {cfg.connect_timeout}s", retryable=True
            )

    # paho callbacks (network thread) ------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("mqtt: connect refused: %s", reason)
            return
        with self._gen_lock:
            self._generation += 1
        client.subscribe(list(self._topics.items()))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self._closed:
            log.warning("mqtt: disconnected (%s); paho reconnects", reason)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._gen_lock:
            generation = self._generation
        self._inbox.put((generation, msg))

    # reading ------------------------------------------------------------------------------------

    def _to_batch(self, taken: list[tuple[int, Any]]) -> pa.RecordBatch:
        msgs = [m for _, m in taken]
        n = len(msgs)
        self._count += n
        self._position = self._count
        if self._cfg.ack == "checkpoint":
            acks = [(g, m.mid, m.qos) for g, m in taken if m.qos > 0]
            if acks:
                gen = acks[-1][0]
                self._pending.add(self._count, [(mid, q) for g, mid, q in acks if g == gen], gen)
        topics = pa.array([m.topic for m in msgs], pa.string())
        return self.decode(
            pa.array([m.payload for m in msgs], pa.binary()),
            pa.RecordBatch.from_arrays([topics], names=["topic"]),
            {
                "_topic": lambda: topics,
                "_qos": lambda: pa.array(np.fromiter((m.qos for m in msgs), np.int8, n)),
                "_retain": lambda: pa.array(np.fromiter((bool(m.retain) for m in msgs), np.bool_, n)),
            },
        )

    def snapshot(self) -> Position:
        return self._count if (self._count or self.start_position is not None) else None

    def commit(self, snapshot: Position) -> None:
        """Acknowledge (``PUBACK``/``PUBREC``) every message returned up to ``snapshot``."""
        if snapshot is None or self._closed:
            return
        with self._gen_lock:
            generation = self._generation
        # Received before a reconnect: the broker redelivers it, and the copy is acknowledged.
        for mid, qos in self._pending.take(snapshot, generation):
            self._client.ack(mid, qos)

    def disconnect(self) -> None:
        try:
            self._client.disconnect()
        except Exception as exc:  # not connected
            log.debug("mqtt: disconnect: %s", exc)
        self._client.loop_stop()
