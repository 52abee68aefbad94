"""The options of :class:`~.source.RabbitMQSource` and :class:`~.sink.RabbitMQSink`, checked in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from ...config import check_choice, check_exactly_one, check_name, check_positive, check_type
from ...errors import ConfigurationError
from ...writer import BatchingConfig
from .._messaging import PayloadOptions, PayloadSpec, ReconnectingSourceOptions
from .._messaging.options import pass_through

__all__ = ["DEFAULT_URL", "RABBITMQ_BATCHING", "RabbitMQSinkConfig", "RabbitMQSourceConfig"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"

#: The sink's batching unless configured: 5000 messages a request, 2 in flight, 1 s in the buffer.
RABBITMQ_BATCHING = BatchingConfig(max_request_rows=5000, max_in_flight=2, max_time_in_buffer=1.0)


def _check_url(url: str) -> None:
    if not isinstance(url, str) or not url.startswith(("amqp://", "amqps://")):
        raise ConfigurationError(f"url must be amqp://user:pass@host:port/vhost, got {url!r}", option="url")


@dataclass(frozen=True, kw_only=True)
class RabbitMQSourceConfig(ReconnectingSourceOptions):
    """Options of :class:`~arrowflow.connectors.rabbitmq.RabbitMQSource`."""

    METADATA: ClassVar[dict[str, pa.DataType]] = {
        "_exchange": pa.string(),
        "_routing_key": pa.string(),
        "_message_id": pa.string(),
        "_correlation_id": pa.string(),
        "_redelivered": pa.bool_(),
        "_timestamp": pa.timestamp("s", tz="UTC"),
    }

    url: str = DEFAULT_URL
    """``amqp://user:pass@host:port/vhost`` (``amqps://`` for TLS)."""
    queue: str
    """The queue to consume (one split)."""
    prefetch: int = 10_000
    """``basic_qos`` window: messages delivered and not yet acknowledged (0 = unlimited). It bounds
    what one checkpoint interval can read."""
    dedup: str | None = None
    """``"message_id"`` or ``"correlation_id"``: drop redeliveries of messages already returned (needs
    the property on every message and this reader as the queue's only consumer): exactly-once with a
    transactional sink."""
    bounded: bool = False
    """Finish once the queue has no ready message left (a drain)."""
    declare: bool = False
    """Declare the queue (durable) before consuming."""
    queue_arguments: Mapping[str, Any] | None = None
    """``x-arguments`` of the declared queue (``x-queue-type``, ...)."""
    connect_options: Mapping[str, Any] | None = None
    """pika ``ConnectionParameters`` attributes set on top of the URL (``heartbeat``, ...)."""
    stale_id_commits: int = 2
    """With ``dedup``: commits after a reconnect (or restart) during which ids of the old channel
    still count as returned."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_url(self.url)
        check_name("queue", self.queue)
        check_type("prefetch", self.prefetch, int)
        if not 0 <= self.prefetch <= 65535:
            raise ConfigurationError(
                f"prefetch must be in 0..65535 (0 = unlimited), got {self.prefetch!r}", option="prefetch"
            )
        if self.dedup is not None:
            check_choice("dedup", self.dedup, ("message_id", "correlation_id"))
        check_type("bounded", self.bounded, bool)
        check_type("declare", self.declare, bool)
        check_type("queue_arguments", self.queue_arguments, Mapping, allow_none=True)
        check_type("stale_id_commits", self.stale_id_commits, int)
        check_positive("stale_id_commits", self.stale_id_commits)
        object.__setattr__(self, "connect_options", pass_through("connect_options", self.connect_options))


@dataclass(frozen=True, kw_only=True)
class RabbitMQSinkConfig(PayloadOptions):
    """Options of :class:`~arrowflow.connectors.rabbitmq.RabbitMQSink`."""

    url: str = DEFAULT_URL
    """``amqp://user:pass@host:port/vhost`` (``amqps://`` for TLS)."""
    exchange: str = ""
    """The exchange to publish to (``""``: the default exchange, where the routing key is a queue)."""
    routing_key: str | None = None
    """The routing key of every message; excludes ``routing_key_column``."""
    routing_key_column: str | None = None
    """A column holding each row's routing key (a null one sends the row to the error policy)."""
    message_id_column: str | None = None
    """A column of message ids; default ``"<run id>-<row number>"``, so a source with
    ``dedup="message_id"`` reads the output exactly once."""
    header_columns: Sequence[str] = ()
    """Columns sent as AMQP headers (name = column name)."""
    persistent: bool = True
    """``delivery_mode=2``: the broker stores the message on disk (durable queues)."""
    mandatory: bool = True
    """A message the broker cannot route comes back and goes to the error policy (never retried)."""
    content_type: str | None = None
    """The ``content_type`` property (default ``application/json`` for the JSON format)."""
    declare_queue: str | None = None
    """A durable queue to declare at construction (for publishing to the default exchange)."""
    confirm_timeout: float = 30.0
    """Seconds to wait for a request's publisher confirms before it is retried."""
    connect_options: Mapping[str, Any] | None = None
    """pika ``ConnectionParameters`` attributes set on top of the URL (``heartbeat``, ...)."""
    batching: BatchingConfig = RABBITMQ_BATCHING
    """Requests, buffering and retries (:class:`~arrowflow.writer.BatchingConfig`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_url(self.url)
        check_type("exchange", self.exchange, str)
        check_exactly_one(routing_key=self.routing_key, routing_key_column=self.routing_key_column)
        check_type("routing_key", self.routing_key, str, allow_none=True)
        check_type("routing_key_column", self.routing_key_column, str, allow_none=True)
        check_type("message_id_column", self.message_id_column, str, allow_none=True)
        object.__setattr__(self, "header_columns", tuple(self.header_columns))
        check_type("persistent", self.persistent, bool)
        check_type("mandatory", self.mandatory, bool)
        check_type("content_type", self.content_type, str, allow_none=True)
        check_type("declare_queue", self.declare_queue, str, allow_none=True)
        check_positive("confirm_timeout", self.confirm_timeout)
        object.__setattr__(self, "connect_options", pass_through("connect_options", self.connect_options))
        check_type("batching", self.batching, BatchingConfig)

    def payloads(self) -> PayloadSpec:
        return self.payload_spec(
            routing_column=self.routing_key_column,
            routing_error="null routing key",
            id_column=self.message_id_column,
            generate_ids=self.message_id_column is None,
            header_columns=tuple(self.header_columns),
        )
