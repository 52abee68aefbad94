"""The options of :class:`~.source.PulsarSource` and :class:`~.sink.PulsarSink`, checked in one place."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from ...config import check_choice, check_exactly_one, check_name, check_positive, check_type, hide_secrets
from ...errors import ConfigurationError
from ...writer import BatchingConfig
from .._messaging import PIPELINED_BATCHING, PayloadOptions, PayloadSpec, SourceOptions
from ._client import CUMULATIVE, SUBSCRIPTION_TYPES, parse_cursor

__all__ = ["COMPRESSIONS", "PULSAR_BATCHING", "PulsarSinkConfig", "PulsarSourceConfig"]

DEFAULT_SERVICE_URL = "pulsar://127.0.0.1:6650"

#: The sink's batching unless configured: 5000 rows a request, one in flight, 0.5 s in the buffer.
PULSAR_BATCHING = PIPELINED_BATCHING

#: ``compression`` values (pulsar ``CompressionType`` member names).
COMPRESSIONS = {None: "NONE", "lz4": "LZ4", "zlib": "ZLib", "zstd": "ZSTD", "snappy": "SNAPPY"}


def _check_service_url(url: str) -> None:
    check_type("service_url", url, str)
    if not url.startswith(("pulsar://", "pulsar+ssl://")):
        raise ConfigurationError(f"service_url {url!r} must start with pulsar://", option="service_url")


@dataclass(frozen=True, kw_only=True)
class PulsarSourceConfig(SourceOptions):
    """Options of :class:`~arrowflow.connectors.pulsar.PulsarSource`."""

    METADATA: ClassVar[dict[str, pa.DataType]] = {
        "_topic": pa.string(),
        "_key": pa.string(),
        "_message_id": pa.binary(),
        "_publish_time": pa.timestamp("ms", tz="UTC"),
        "_event_time": pa.timestamp("ms", tz="UTC"),
        "_properties": pa.map_(pa.string(), pa.string()),
        "_redelivery_count": pa.int32(),
    }

    service_url: str = DEFAULT_SERVICE_URL
    """``pulsar://host:port`` (``pulsar+ssl://`` for TLS)."""
    topics: str | Sequence[str] | None = None
    """One topic or several (a partitioned topic is read through its partitions); excludes
    ``topics_pattern``."""
    topics_pattern: str | None = None
    """A regular expression over full topic names of one namespace; new matching topics are picked up
    within 60 s. Excludes ``topics``."""
    subscription: str
    """The subscription name."""
    subscription_type: str = "exclusive"
    """``exclusive``, ``shared``, ``key_shared`` or ``failover``."""
    consumers: int = 1
    """Consumers (splits) of the subscription; more than one needs a non-exclusive type."""
    start: Any = "earliest"
    """Where a new subscription starts: ``"earliest"``, ``"latest"``, ``{"message_id": ...}`` or
    ``{"publish_time": ...}`` (the last two applied on the client)."""
    stop: Any = None
    """Makes the source bounded: ``"latest"`` (each partition's last message when the reader
    opened), ``{"message_id": ...}`` or ``{"publish_time": ...}`` (exclusive)."""
    receiver_queue_size: int = 1000
    """The client's receiver queue per consumer (also the most ``batch_receive`` returns)."""
    batch_receive_timeout: float = 0.02
    """Seconds one ``batch_receive`` waits."""
    operation_timeout: float = 30.0
    """The client's operation timeout, in seconds."""
    client_options: Mapping[str, Any] | None = None
    """More ``pulsar.Client`` arguments (authentication, TLS, ...; secret-named values hidden)."""
    consumer_options: Mapping[str, Any] | None = None
    """More ``subscribe`` arguments (``batch_index_ack_enabled``, ...)."""
    #: The parsed cursors: ``(kind, value)``.
    _start: tuple[str, Any] = field(init=False, repr=False, compare=False, default=("earliest", None))
    _stop: tuple[str, Any] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_service_url(self.service_url)
        check_exactly_one(topics=self.topics, topics_pattern=self.topics_pattern)
        if self.topics is not None:
            topic_list = [self.topics] if isinstance(self.topics, str) else list(self.topics)
            if not topic_list or not all(isinstance(t, str) and t for t in topic_list):
                raise ConfigurationError("topics must be one or more non-empty topic names", option="topics")
            object.__setattr__(self, "topics", tuple(topic_list))
        else:
            check_type("topics_pattern", self.topics_pattern, str)
            try:
                re.compile(str(self.topics_pattern))
            except re.error as exc:
                raise ConfigurationError(
                    f"topics_pattern {self.topics_pattern!r} is not a regular expression: {exc}",
                    option="topics_pattern",
                ) from exc
        check_name("subscription", self.subscription)
        check_choice("subscription_type", self.subscription_type, SUBSCRIPTION_TYPES)
        check_type("consumers", self.consumers, int)
        check_positive("consumers", self.consumers)
        if self.consumers > 1 and self.subscription_type == "exclusive":
            raise ConfigurationError(
                "an exclusive subscription has one consumer; use consumers=1", option="consumers"
            )
        start = parse_cursor(self.start, "start", ("earliest", "latest"))
        stop = None if self.stop is None else parse_cursor(self.stop, "stop", ("latest",))
        if stop is not None and stop[0] == "latest" and self.topics_pattern is not None:
            raise ConfigurationError(
                "stop='latest' needs topics (the topics a pattern matches are not known in advance)",
                option="stop",
            )
        for option, cursor in (("start", start), ("stop", stop)):
            if cursor is not None and cursor[0] == "message_id" and len(self.topic_list) != 1:
                raise ConfigurationError(
                    f"{option}={{'message_id': ...}} needs a single topic: a message id belongs to one",
                    option=option,
                )
        object.__setattr__(self, "_start", start)
        object.__setattr__(self, "_stop", stop)
        check_type("receiver_queue_size", self.receiver_queue_size, int)
        check_positive("receiver_queue_size", self.receiver_queue_size)
        check_positive("batch_receive_timeout", self.batch_receive_timeout)
        check_positive("operation_timeout", self.operation_timeout)
        check_type("client_options", self.client_options, Mapping, allow_none=True)
        object.__setattr__(self, "client_options", hide_secrets(dict(self.client_options or {})))
        check_type("consumer_options", self.consumer_options, Mapping, allow_none=True)

    @property
    def topic_list(self) -> tuple[str, ...]:
        """The topics (empty with ``topics_pattern``)."""
        return tuple(self.topics or ())  # type: ignore[arg-type]

    @property
    def cumulative(self) -> bool:
        """Whether the subscription reads ordered partitions (``exclusive``/``failover``)."""
        return self.subscription_type in CUMULATIVE


@dataclass(frozen=True, kw_only=True)
class PulsarSinkConfig(PayloadOptions):
    """Options of :class:`~arrowflow.connectors.pulsar.PulsarSink`."""

    service_url: str = DEFAULT_SERVICE_URL
    """``pulsar://host:port`` (``pulsar+ssl://`` for TLS)."""
    topic: str
    """The topic to produce to."""
    key_column: str | None = None
    """A column of message keys (Pulsar routes by it; null = no key)."""
    properties_column: str | None = None
    """A ``map<string, string>`` column of message properties."""
    producer_batching: bool = True
    """The client producer batches messages into entries."""
    batching_max_messages: int = 1000
    """Producer batching: messages per entry."""
    batching_max_bytes: int = 128 * 1024
    """Producer batching: bytes per entry."""
    batching_max_publish_delay_ms: int = 10
    """Producer batching: how long an entry waits for more messages."""
    key_based_batching: bool | None = None
    """Batch by key (needed by ``key_shared`` consumers); default: when there is a ``key_column``."""
    compression: str | None = None
    """``lz4``, ``zlib``, ``zstd``, ``snappy`` or ``None``."""
    send_timeout: float = 30.0
    """Seconds the client tries to send one message."""
    operation_timeout: float = 30.0
    """The client's operation timeout, in seconds."""
    client_options: Mapping[str, Any] | None = None
    """More ``pulsar.Client`` arguments (authentication, TLS, ...; secret-named values hidden)."""
    producer_options: Mapping[str, Any] | None = None
    """More ``create_producer`` arguments."""
    batching: BatchingConfig = PULSAR_BATCHING
    """Requests, buffering and retries (:class:`~arrowflow.writer.BatchingConfig`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_service_url(self.service_url)
        check_name("topic", self.topic)
        check_type("key_column", self.key_column, str, allow_none=True)
        check_type("properties_column", self.properties_column, str, allow_none=True)
        check_type("producer_batching", self.producer_batching, bool)
        for opt in ("batching_max_messages", "batching_max_bytes", "batching_max_publish_delay_ms"):
            check_type(opt, getattr(self, opt), int)
            check_positive(opt, getattr(self, opt))
        check_type("key_based_batching", self.key_based_batching, bool, allow_none=True)
        check_choice("compression", self.compression, tuple(COMPRESSIONS))
        check_positive("send_timeout", self.send_timeout)
        check_positive("operation_timeout", self.operation_timeout)
        check_type("client_options", self.client_options, Mapping, allow_none=True)
        object.__setattr__(self, "client_options", hide_secrets(dict(self.client_options or {})))
        check_type("producer_options", self.producer_options, Mapping, allow_none=True)
        check_type("batching", self.batching, BatchingConfig)

    def payloads(self) -> PayloadSpec:
        return self.payload_spec(
            key_column=self.key_column,
            headers_column=self.properties_column,
            headers_option="properties_column",
        )
