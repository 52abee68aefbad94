"""The options of :class:`~.source.NatsJetStreamSource` and :class:`~.sink.NatsJetStreamSink`, checked
in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from ...config import check_choice, check_positive, check_type
from ...errors import ConfigurationError
from ...writer import BatchingConfig
from .._messaging import PayloadOptions, PayloadSpec, SourceOptions, non_empty
from .._messaging.options import pass_through
from ._client import check_url

__all__ = ["DEFAULT_URL", "NATS_BATCHING", "NatsJetStreamSinkConfig", "NatsJetStreamSourceConfig"]

DEFAULT_URL = "nats://127.0.0.1:4222"

#: The sink's batching unless configured: 4000 messages a request, 2 in flight, 1 s in the buffer.
NATS_BATCHING = BatchingConfig(max_request_rows=4000, max_in_flight=2, max_time_in_buffer=1.0)


@dataclass(frozen=True, kw_only=True)
class NatsJetStreamSourceConfig(SourceOptions):
    """Options of :class:`~arrowflow.connectors.nats.NatsJetStreamSource`."""

    METADATA: ClassVar[dict[str, pa.DataType]] = {
        "_subject": pa.string(),
        "_sequence": pa.int64(),
        "_timestamp": pa.timestamp("us", tz="UTC"),
    }

    url: str | Sequence[str] = DEFAULT_URL
    """``nats://host:port`` (or a list of servers)."""
    stream: str
    """The JetStream stream to read."""
    durable: str
    """The durable pull consumer's name (the source owns it: see the module docstring)."""
    subject: str | None = None
    """A filter subject of the consumer (default: the whole stream)."""
    deliver_policy: str = "all"
    """Where a new consumer starts: ``"all"``, ``"new"`` or ``"by_start_sequence"``."""
    start_sequence: int | None = None
    """With ``deliver_policy="by_start_sequence"``: the first stream sequence read."""
    bounded: bool = False
    """Stop at the stream's last sequence at planning time."""
    ack_wait: float = 300.0
    """Seconds the server waits for an ack before redelivering (must exceed the checkpoint interval)."""
    max_ack_pending: int = 100_000
    """Messages delivered and not yet acknowledged, at most."""
    connect_options: Mapping[str, Any] | None = None
    """nats-py ``connect`` options (``user_credentials``, ``tls``, ...)."""
    request_timeout: float = 10.0
    """Seconds a JetStream API request (consumer info/create, ack flush) may take."""
    raw_pull: bool = True
    """Pull on the reader's own socket, frames parsed by a compiled kernel (used when the
    connection needs no TLS or credentials), or ``False``: nats-py's ``fetch``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_url(self.url)
        check_type("raw_pull", self.raw_pull, bool)
        for opt in ("stream", "durable"):
            value = getattr(self, opt)
            check_type(opt, value, str)
            if not value or any(c in value for c in " .*>"):
                raise ConfigurationError(
                    f"{opt} {value!r} must be a non-empty name without . * > or spaces", option=opt
                )
        check_type("subject", self.subject, str, allow_none=True)
        check_choice("deliver_policy", self.deliver_policy, ("all", "new", "by_start_sequence"))
        if (self.deliver_policy == "by_start_sequence") != (self.start_sequence is not None):
            raise ConfigurationError(
                "start_sequence goes with deliver_policy='by_start_sequence'", option="start_sequence"
            )
        if self.start_sequence is not None:
            check_type("start_sequence", self.start_sequence, int)
            check_positive("start_sequence", self.start_sequence)
        check_type("bounded", self.bounded, bool)
        check_positive("ack_wait", self.ack_wait)
        object.__setattr__(self, "ack_wait", float(self.ack_wait))
        check_type("max_ack_pending", self.max_ack_pending, int)
        check_positive("max_ack_pending", self.max_ack_pending)
        check_positive("request_timeout", self.request_timeout)
        object.__setattr__(self, "request_timeout", float(self.request_timeout))
        object.__setattr__(self, "connect_options", pass_through("connect_options", self.connect_options))


@dataclass(frozen=True, kw_only=True)
class NatsJetStreamSinkConfig(PayloadOptions):
    """Options of :class:`~arrowflow.connectors.nats.NatsJetStreamSink`."""

    url: str | Sequence[str] = DEFAULT_URL
    """``nats://host:port`` (or a list of servers)."""
    subject: str | None = None
    """The subject of every message (no wildcards); excludes ``subject_column``."""
    subject_column: str | None = None
    """A column holding each row's subject (a null or empty one sends the row to the error policy)."""
    msg_id_column: str | None = None
    """A column of ``Nats-Msg-Id`` values; default ``"<run id>-<row number>"``. Ids from the data
    make the sink idempotent within the stream's duplicate window."""
    publish_timeout: float = 10.0
    """Seconds a request waits for its ``PubAck`` s."""
    connect_options: Mapping[str, Any] | None = None
    """nats-py ``connect`` options (``user_credentials``, ``tls``, ...)."""
    batching: BatchingConfig = NATS_BATCHING
    """Requests, buffering and retries (:class:`~arrowflow.writer.BatchingConfig`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_url(self.url)
        if (self.subject is None) == (self.subject_column is None):
            raise ConfigurationError("give exactly one of subject or subject_column", option="subject")
        if self.subject is not None and (not self.subject or any(c in self.subject for c in " *>")):
            raise ConfigurationError(
                f"subject {self.subject!r} must be non-empty, without wildcards", option="subject"
            )
        check_type("subject_column", self.subject_column, str, allow_none=True)
        check_type("msg_id_column", self.msg_id_column, str, allow_none=True)
        check_positive("publish_timeout", self.publish_timeout)
        object.__setattr__(self, "publish_timeout", float(self.publish_timeout))
        object.__setattr__(self, "connect_options", pass_through("connect_options", self.connect_options))
        if self.batching is None:  # 0.1.0's default
            object.__setattr__(self, "batching", NATS_BATCHING)
        check_type("batching", self.batching, BatchingConfig)

    def payloads(self) -> PayloadSpec:
        return self.payload_spec(
            routing_column=self.subject_column,
            routing_valid=non_empty,
            routing_error="null or empty subject",
            id_column=self.msg_id_column,
            generate_ids=self.msg_id_column is None,
        )
