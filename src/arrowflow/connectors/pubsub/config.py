"""The options of :class:`~.source.PubSubSource` and :class:`~.sink.PubSubSink`, checked in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa

from ...config import check_at_most, check_name, check_positive, check_type
from ...errors import ConfigurationError
from ...retry import ExponentialBackoff
from ...writer import BatchingConfig
from .._messaging import PIPELINED_BATCHING, PayloadOptions, PayloadSpec, ReconnectingSourceOptions
from ._client import path

__all__ = ["PUBSUB_BATCHING", "PUBSUB_RECONNECT", "PubSubSinkConfig", "PubSubSourceConfig"]

#: The sink's batching unless configured: 5000 rows a request (cut into Publish RPCs by
#: ``batch_max_messages``/``batch_max_bytes``), one in flight, 0.5 s in the buffer.
PUBSUB_BATCHING = PIPELINED_BATCHING

#: Waits before a closed streaming pull is reopened, unless configured: 0.1 s growing to 5 s.
PUBSUB_RECONNECT = ExponentialBackoff(initial_delay=0.1, max_delay=5.0, multiplier=2.0)


@dataclass(frozen=True, kw_only=True)
class PubSubSourceConfig(ReconnectingSourceOptions):
    """Options of :class:`~arrowflow.connectors.pubsub.PubSubSource`."""

    METADATA: ClassVar[dict[str, pa.DataType]] = {
        "_message_id": pa.string(),
        "_publish_time": pa.timestamp("us", tz="UTC"),
        "_attributes": pa.map_(pa.string(), pa.string()),
        "_ordering_key": pa.string(),
        "_delivery_attempt": pa.int32(),
    }

    project: str
    """The Google Cloud project."""
    subscription: str
    """The subscription: a name in ``project``, or a full ``projects/.../subscriptions/...`` path."""
    emulator_host: str | None = None
    """``host:port`` of an emulator (an insecure channel, no credentials); ``None``: the client
    library decides (``PUBSUB_EMULATOR_HOST``, else Application Default Credentials)."""
    streams: int = 1
    """``StreamingPull`` streams, one split each (the server balances messages over them)."""
    max_messages: int = 10_000
    """Flow control: messages delivered and not yet acknowledged on a stream (held ones count)."""
    max_bytes: int = 100 * 1024 * 1024
    """Flow control: bytes delivered and not yet acknowledged on a stream."""
    ack_deadline: int = 60
    """Seconds (10..600) a delivery stays leased; a lease thread extends it every third of that."""
    max_hold: float = 3600.0
    """Seconds a message is extended at most; after that the server redelivers it (a duplicate)."""
    request_timeout: float = 30.0
    """Seconds per acknowledge / modify-deadline call."""
    reconnect_backoff: ExponentialBackoff = PUBSUB_RECONNECT
    """How long to wait before reopening a stream the server or the network closed (full jitter)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name("project", self.project)
        check_name("subscription", self.subscription)
        check_type("emulator_host", self.emulator_host, str, allow_none=True)
        for opt in ("streams", "max_messages", "max_bytes"):
            check_type(opt, getattr(self, opt), int)
            check_positive(opt, getattr(self, opt))
        check_type("ack_deadline", self.ack_deadline, int)
        if not 10 <= self.ack_deadline <= 600:
            raise ConfigurationError(
                f"ack_deadline must be 10..600 seconds, got {self.ack_deadline}", option="ack_deadline"
            )
        check_positive("max_hold", self.max_hold)
        check_positive("request_timeout", self.request_timeout)

    @property
    def subscription_path(self) -> str:
        return path(self.project, "subscriptions", self.subscription)


@dataclass(frozen=True, kw_only=True)
class PubSubSinkConfig(PayloadOptions):
    """Options of :class:`~arrowflow.connectors.pubsub.PubSubSink`."""

    project: str
    """The Google Cloud project."""
    topic: str
    """The topic: a name in ``project``, or a full ``projects/.../topics/...`` path."""
    emulator_host: str | None = None
    """``host:port`` of an emulator (an insecure channel, no credentials); ``None``: the client
    library decides (``PUBSUB_EMULATOR_HOST``, else Application Default Credentials)."""
    ordering_key_column: str | None = None
    """A column of ordering keys (turns message ordering on; null or empty = no key)."""
    attributes_column: str | None = None
    """A ``map<string, string>`` column of message attributes."""
    batch_max_messages: int = 1000
    """Messages per ``Publish`` RPC (<= 1000, the API's limit)."""
    batch_max_bytes: int = 9 * 1024 * 1024
    """Bytes per ``Publish`` RPC (<= 10,000,000, the API's limit)."""
    batch_max_latency: float = 0.01
    """With ``ordering_key_column``: the client library's batching delay, in seconds."""
    publish_timeout: float = 60.0
    """Seconds to wait for a request's publish results."""
    batching: BatchingConfig = PUBSUB_BATCHING
    """Requests, buffering and retries (:class:`~arrowflow.writer.BatchingConfig`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name("project", self.project)
        check_name("topic", self.topic)
        check_type("emulator_host", self.emulator_host, str, allow_none=True)
        check_type("ordering_key_column", self.ordering_key_column, str, allow_none=True)
        check_type("attributes_column", self.attributes_column, str, allow_none=True)
        for opt in ("batch_max_messages", "batch_max_bytes"):
            check_type(opt, getattr(self, opt), int)
            check_positive(opt, getattr(self, opt))
        check_at_most("batch_max_messages", self.batch_max_messages, 1000, "Pub/Sub's limit per Publish")
        check_at_most("batch_max_bytes", self.batch_max_bytes, 10_000_000, "Pub/Sub's limit per Publish")
        check_positive("batch_max_latency", self.batch_max_latency)
        check_positive("publish_timeout", self.publish_timeout)
        check_type("batching", self.batching, BatchingConfig)

    @property
    def topic_path(self) -> str:
        return path(self.project, "topics", self.topic)

    def payloads(self) -> PayloadSpec:
        return self.payload_spec(
            key_column=self.ordering_key_column,
            headers_column=self.attributes_column,
            headers_option="attributes_column",
        )
