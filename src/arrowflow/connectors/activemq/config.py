"""The options of the ActiveMQ source and sinks (STOMP 1.2), checked in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from ...config import (
    Secret,
    check_choice,
    check_exactly_one,
    check_positive,
    check_type,
    post_init_bases,
)
from ...errors import ConfigurationError
from ...writer import BatchingConfig
from .._messaging import PayloadOptions, PayloadSpec, ReconnectingSourceOptions

__all__ = [
    "ACTIVEMQ_BATCHING",
    "ActiveMQSinkConfig",
    "ActiveMQSourceConfig",
    "ActiveMQTransactionalSinkConfig",
    "StompConnectionOptions",
]

#: The sink's batching unless configured: 5000 SENDs a request, one request in flight, 1 s buffer.
ACTIVEMQ_BATCHING = BatchingConfig(max_request_rows=5000, max_in_flight=1, max_time_in_buffer=1.0)

#: STOMP headers a header column may not set (the connector sets them).
_RESERVED_HEADERS = ("destination", "content-length", "transaction", "receipt")


def check_destination(option: str, value: str | None, allow_none: bool = False) -> None:
    check_type(option, value, str, allow_none=allow_none)
    if value is not None and not (value.startswith(("/queue/", "/topic/")) and len(value) > 7):
        raise ConfigurationError(f"{option} must be /queue/NAME or /topic/NAME, got {value!r}", option=option)


def valid_destinations(values: pa.Array) -> pa.Array:
    """``routing_valid`` of a destination column: ``/queue/...`` or ``/topic/...``."""
    prefixed = pc.or_(pc.starts_with(values, "/queue/"), pc.starts_with(values, "/topic/"))
    return pc.and_(values.is_valid(), prefixed).fill_null(False)


@dataclass(frozen=True, kw_only=True)
class StompConnectionOptions:
    """Where the broker's STOMP listener is and how to log in (the source and the sinks share them)."""

    host: str = "127.0.0.1"
    """The broker's host."""
    port: int = 61613
    """The broker's STOMP port."""
    username: str | None = None
    """STOMP ``login``."""
    password: str | Secret | None = None
    """STOMP ``passcode`` (kept as a :class:`~arrowflow.config.Secret`)."""
    connect_headers: Mapping[str, str] | None = None
    """More ``CONNECT`` headers (``client-id`` is set from ``client_id`` on the source)."""

    def __post_init__(self) -> None:
        post_init_bases(super())
        check_type("host", self.host, str)
        check_type("port", self.port, int)
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"port must be in 1..65535, got {self.port!r}", option="port")
        check_type("username", self.username, str, allow_none=True)
        check_type("password", self.password, (str, Secret), allow_none=True)
        if isinstance(self.password, str):
            object.__setattr__(self, "password", Secret(self.password))
        check_type("connect_headers", self.connect_headers, Mapping, allow_none=True)


@dataclass(frozen=True, kw_only=True)
class ActiveMQSourceConfig(ReconnectingSourceOptions, StompConnectionOptions):
    """Options of :class:`~arrowflow.connectors.activemq.ActiveMQSource`."""

    METADATA: ClassVar[dict[str, pa.DataType]] = {
        "_destination": pa.string(),
        "_message_id": pa.string(),
        "_timestamp": pa.timestamp("ms", tz="UTC"),
        "_redelivered": pa.bool_(),
        "_headers": pa.map_(pa.string(), pa.string()),
    }

    destination: str
    """``/queue/NAME`` or ``/topic/NAME``."""
    ack: str = "client-individual"
    """``"client-individual"`` (one ``ACK`` per message) or ``"client"`` (cumulative)."""
    prefetch: int = 10_000
    """``activemq.prefetchSize``: unacknowledged messages the broker sends; it bounds what one
    checkpoint interval can read."""
    client_id: str | None = None
    """The connection's ``client-id`` (needed by a durable topic subscription)."""
    subscription_name: str | None = None
    """Makes a ``/topic/`` subscription durable (``activemq.subscriptionName``; needs ``client_id``)."""
    selector: str | None = None
    """A JMS message selector (``"type = 'order'"``)."""
    timeout: float = 10.0
    """Seconds to connect."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_destination("destination", self.destination)
        check_choice("ack", self.ack, ("client-individual", "client"))
        check_type("prefetch", self.prefetch, int)
        check_positive("prefetch", self.prefetch)
        check_type("client_id", self.client_id, str, allow_none=True)
        check_type("subscription_name", self.subscription_name, str, allow_none=True)
        check_type("selector", self.selector, str, allow_none=True)
        check_positive("timeout", self.timeout)
        if self.subscription_name is not None and (
            self.client_id is None or not self.destination.startswith("/topic/")
        ):
            raise ConfigurationError(
                "subscription_name (a durable topic subscription) needs client_id and a /topic/ destination",
                option="subscription_name",
            )


@dataclass(frozen=True, kw_only=True)
class ActiveMQTransactionalSinkConfig(PayloadOptions, StompConnectionOptions):
    """Options of :class:`~arrowflow.connectors.activemq.ActiveMQTransactionalSink` (and, with
    ``batching``, of :class:`~arrowflow.connectors.activemq.ActiveMQSink`)."""

    destination: str | None = None
    """``/queue/NAME`` or ``/topic/NAME`` of every message; excludes ``destination_column``."""
    destination_column: str | None = None
    """A column holding each row's destination (an invalid one sends the row to the error policy)."""
    header_columns: Sequence[str] = ()
    """Columns sent as STOMP headers, as text (a null value omits the header)."""
    persistent: bool = True
    """``persistent:true``: the broker stores the message."""
    content_type: str | None = None
    """The ``content-type`` header (default ``application/json`` for the JSON format)."""
    receipt_timeout: float = 30.0
    """Seconds to wait for a ``RECEIPT`` (of a request, or of a transaction's ``COMMIT``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_exactly_one(destination=self.destination, destination_column=self.destination_column)
        check_destination("destination", self.destination, allow_none=True)
        check_type("destination_column", self.destination_column, str, allow_none=True)
        object.__setattr__(self, "header_columns", tuple(self.header_columns))
        for h in self.header_columns:
            check_type("header_columns", h, str)
            if h in _RESERVED_HEADERS:
                raise ConfigurationError(
                    f"header column {h!r} clashes with a STOMP header", option="header_columns"
                )
        check_type("persistent", self.persistent, bool)
        check_type("content_type", self.content_type, str, allow_none=True)
        check_positive("receipt_timeout", self.receipt_timeout)

    def payloads(self) -> PayloadSpec:
        return self.payload_spec(
            routing_column=self.destination_column,
            routing_valid=valid_destinations,
            routing_error="destination must be /queue/NAME or /topic/NAME",
            header_columns=tuple(self.header_columns),
            headers_as_text=True,
        )


@dataclass(frozen=True, kw_only=True)
class ActiveMQSinkConfig(ActiveMQTransactionalSinkConfig):
    """Options of :class:`~arrowflow.connectors.activemq.ActiveMQSink`."""

    batching: BatchingConfig = ACTIVEMQ_BATCHING
    """Requests, buffering and retries (:class:`~arrowflow.writer.BatchingConfig`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_type("batching", self.batching, BatchingConfig)
