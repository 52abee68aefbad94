"""The options of :class:`~.source.MqttSource` and :class:`~.sink.MqttSink`, checked in one place.

:class:`MqttConnection` (the broker address and session options both share) also makes the paho
client; both configurations are connections.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from ...config import (
    Secret,
    caller_stacklevel,
    check_choice,
    check_exactly_one,
    check_positive,
    check_type,
    post_init_bases,
    reveal,
)
from ...errors import ConfigurationError
from ...retry import ExponentialBackoff, as_backoff
from ...writer import BatchingConfig
from .._messaging import PayloadOptions, PayloadSpec, SourceOptions, non_empty

__all__ = ["MQTT_BATCHING", "MqttConnection", "MqttSinkConfig", "MqttSourceConfig", "wait_connected"]

_PROTOCOLS = ("5", "3.1.1")

#: paho's reconnect delays unless configured: 0.1 s doubling up to 5 s.
MQTT_RECONNECT = ExponentialBackoff(initial_delay=0.1, max_delay=5.0, multiplier=2.0)

#: The sink's batching unless configured: 2000 messages a request, one in flight, retried for 2 minutes.
MQTT_BATCHING = BatchingConfig(
    max_request_rows=2000, max_in_flight=1, max_attempts=None, max_retry_time=120.0
)


@dataclass(frozen=True, kw_only=True)
class MqttConnection:
    """Broker address and session options shared by the source and the sink."""

    host: str = "127.0.0.1"
    """The broker's host."""
    port: int = 1883
    """The broker's MQTT port."""
    client_id: str = ""
    """The client id; it names the session, so it must be stable across restarts for a persistent one
    (the sink makes up one when it is empty)."""
    clean_session: bool = False
    """``True`` starts an empty session and forgets it at disconnect; ``False`` keeps it on the broker
    (MQTT 5: ``Session Expiry Interval`` = ``session_expiry``)."""
    protocol: str = "5"
    """``"5"`` or ``"3.1.1"``."""
    session_expiry: int = 3600
    """Seconds the broker keeps a persistent session after a disconnect (MQTT 5)."""
    keepalive: int = 30
    """Seconds between keep-alive pings."""
    username: str | None = None
    """The user name."""
    password: Secret | str | None = None
    """The password (kept as a :class:`~arrowflow.config.Secret`)."""
    reconnect_backoff: ExponentialBackoff = MQTT_RECONNECT
    """The source's paho client reconnects by itself, waiting from ``initial_delay`` doubling to
    ``max_delay`` (paho's own schedule: no jitter, the multiplier is paho's 2). The sink does not use
    it: it reconnects at the next attempt of a failed request, after the writer's retry backoff."""
    reconnect_delay: tuple[float, float] | None = None
    """Deprecated (0.1.0): ``(min, max)`` seconds; use ``reconnect_backoff``."""
    tls: bool = False
    """Connect with TLS (the system's trust store)."""

    def __post_init__(self) -> None:
        post_init_bases(super())
        check_type("host", self.host, str)
        check_type("port", self.port, int)
        check_type("client_id", self.client_id, str, allow_none=True)
        object.__setattr__(self, "client_id", self.client_id or "")
        check_type("clean_session", self.clean_session, bool)
        check_choice("protocol", self.protocol, _PROTOCOLS)
        check_type("session_expiry", self.session_expiry, int)
        check_positive("keepalive", self.keepalive)
        check_type("username", self.username, str, allow_none=True)
        if isinstance(self.password, str):
            object.__setattr__(self, "password", Secret(self.password))
        if self.reconnect_delay is not None:
            warnings.warn(
                "MqttConnection(reconnect_delay=(min, max)) is deprecated: pass reconnect_backoff=",
                DeprecationWarning,
                stacklevel=caller_stacklevel(),
            )
            lo, hi = self.reconnect_delay
            check_positive("reconnect_delay", lo)
            if hi < lo:
                raise ConfigurationError(
                    "reconnect_delay must be (min, max) with min <= max", option="reconnect_delay"
                )
            object.__setattr__(
                self, "reconnect_backoff", ExponentialBackoff(initial_delay=lo, max_delay=hi, multiplier=2.0)
            )
        object.__setattr__(self, "reconnect_backoff", as_backoff(self.reconnect_backoff, "reconnect_backoff"))
        check_type("tls", self.tls, bool)

    @property
    def connection(self) -> MqttConnection:
        """This connection (0.1.0's ``source.connection``)."""
        return self

    def client(self, *, manual_ack: bool, client_id: str | None = None) -> Any:
        """A paho client (not yet connected), as ``client_id`` if given."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        proto = mqtt.MQTTv5 if self.protocol == "5" else mqtt.MQTTv311
        kwargs: dict[str, Any] = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": self.client_id if client_id is None else client_id,
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
        backoff = self.reconnect_backoff
        c.reconnect_delay_set(min_delay=backoff.initial_delay, max_delay=backoff.max_delay)  # type: ignore[arg-type]
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


def wait_connected(client: Any, timeout: float) -> bool:
    """Whether paho's ``client`` is connected within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not client.is_connected():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


@dataclass(frozen=True, kw_only=True)
class MqttSourceConfig(SourceOptions, MqttConnection):
    """Options of :class:`~arrowflow.connectors.mqtt.MqttSource`."""

    METADATA: ClassVar[dict[str, pa.DataType]] = {
        "_topic": pa.string(),
        "_qos": pa.int8(),
        "_retain": pa.bool_(),
    }

    topics: Sequence[str] | Mapping[str, int] | str
    """Topic filters (``+``/``#`` wildcards), all at ``qos``, or a mapping filter -> QoS."""
    qos: int = 1
    """The QoS of the filters given as a list (0, 1 or 2)."""
    receive_maximum: int = 10_000
    """MQTT 5 ``Receive Maximum``: unacknowledged QoS 1/2 messages the broker may send (it bounds
    what one checkpoint interval can read with ``ack="checkpoint"``)."""
    ack: str = "checkpoint"
    """``"checkpoint"``: acknowledge (``PUBACK``) at checkpoint commit (at-least-once; needs QoS >= 1
    and a persistent session); ``"receipt"``: paho acknowledges on receipt (at-most-once)."""
    connect_timeout: float = 10.0
    """Seconds to wait for the first connection."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.client_id:
            raise ConfigurationError("client_id is required (it names the session)", option="client_id")
        check_choice("qos", self.qos, (0, 1, 2))
        topics = [self.topics] if isinstance(self.topics, str) else self.topics
        subs = dict(topics) if isinstance(topics, Mapping) else dict.fromkeys(topics, self.qos)
        if not subs:
            raise ConfigurationError("topics must name at least one topic filter", option="topics")
        for t, q in subs.items():
            check_type("topics", t, str)
            check_choice("topics (qos)", q, (0, 1, 2))
        object.__setattr__(self, "topics", subs)
        check_choice("ack", self.ack, ("checkpoint", "receipt"))
        if self.ack == "checkpoint" and self.clean_session:
            raise ConfigurationError(
                "ack='checkpoint' needs a persistent session (clean_session=False): a clean session "
                "forgets unacknowledged messages at disconnect",
                option="ack",
            )
        check_type("receive_maximum", self.receive_maximum, int)
        if not 1 <= self.receive_maximum <= 65535:
            raise ConfigurationError("receive_maximum must be in 1..65535", option="receive_maximum")
        check_positive("connect_timeout", self.connect_timeout)


@dataclass(frozen=True, kw_only=True)
class MqttSinkConfig(PayloadOptions, MqttConnection):
    """Options of :class:`~arrowflow.connectors.mqtt.MqttSink`."""

    clean_session: bool = True
    """``True`` (the sink's default) starts an empty session and forgets it at disconnect."""
    topic: str | None = None
    """The topic of every message (no wildcards); excludes ``topic_column``."""
    topic_column: str | None = None
    """A column holding each row's topic (a null or empty one sends the row to the error policy)."""
    qos: int = 1
    """0 (at most once on the wire), 1 (acknowledged: at-least-once) or 2."""
    retain: bool = False
    """Publish retained messages."""
    publish_timeout: float = 30.0
    """Seconds to wait for a request's acknowledgements (and for a connection) before a retry."""
    batching: BatchingConfig = MQTT_BATCHING
    """Requests, buffering and retries (:class:`~arrowflow.writer.BatchingConfig`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_exactly_one(topic=self.topic, topic_column=self.topic_column)
        if self.topic is not None and (not self.topic or "+" in self.topic or "#" in self.topic):
            raise ConfigurationError(
                f"topic {self.topic!r} must be non-empty and without wildcards", option="topic"
            )
        check_type("topic_column", self.topic_column, str, allow_none=True)
        check_choice("qos", self.qos, (0, 1, 2))
        check_type("retain", self.retain, bool)
        check_positive("publish_timeout", self.publish_timeout)
        check_type("batching", self.batching, BatchingConfig)

    def payloads(self) -> PayloadSpec:
        return self.payload_spec(
            routing_column=self.topic_column, routing_valid=non_empty, routing_error="null or empty topic"
        )
