"""pulsar-client plumbing: message ids (serialized, ordered within a partition), cursors, the
client, the native send path of the sink, and which send results are transient."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...config import check_choice, reveal_secrets
from ...errors import ConfigurationError, ConnectorError

__all__ = [
    "CUMULATIVE",
    "INF",
    "NATIVE_MAX_BYTES",
    "NONE",
    "RETRYABLE",
    "SUBSCRIPTION_TYPES",
    "at_or_past",
    "decode_message_id",
    "encode_message_id",
    "id_key",
    "make_client",
    "native_sender",
    "parse_cursor",
    "partition_order",
]

SUBSCRIPTION_TYPES = ("exclusive", "shared", "key_shared", "failover")
#: Subscription types whose consumers read ordered partitions (cumulative acks, replayable).
CUMULATIVE = ("exclusive", "failover")
#: Send results worth retrying (the connection, the broker or the client queue was the problem).
RETRYABLE = {
    "Timeout",
    "ConnectError",
    "ReadError",
    "NotConnected",
    "LookupError",
    "ServiceUnitNotReady",
    "TooManyLookupRequestException",
    "BrokerPersistenceError",
    "BrokerMetadataError",
    "ProducerQueueIsFull",
    "MemoryBufferIsFull",
    "ProducerBlockedQuotaExceededError",
    "ProducerBlockedQuotaExceededException",
    "UnknownError",
    "Interrupted",
}
INF = 1 << 62
NONE = (-1, -1, -1)  # an order before every message id


def encode_message_id(message_id: Any) -> str:
    """A ``pulsar.MessageId`` as base64 text of its serialized bytes (JSON-safe)."""
    return base64.b64encode(message_id.serialize()).decode("ascii")


def decode_message_id(value: str | bytes) -> Any:
    """The ``pulsar.MessageId`` of base64 text or of serialized bytes."""
    import pulsar

    raw = base64.b64decode(value) if isinstance(value, str) else bytes(value)
    return pulsar.MessageId.deserialize(raw)


def id_key(mid: Any) -> tuple[int, int, int, int]:
    """``(partition, ledger, entry, batch)``: the order of ids within one partition of one topic."""
    return (mid.partition(), mid.ledger_id(), mid.entry_id(), mid.batch_index())


def partition_order(mid: Any) -> tuple[int, int, int]:
    """``(ledger, entry, batch)``: the order of ids within one topic partition. Ids of different
    topics (or partitions) must never be compared: a broker numbers ledgers across all topics."""
    return (mid.ledger_id(), mid.entry_id(), mid.batch_index())


def at_or_past(order: tuple[int, int, int], end: tuple[int, int, int]) -> bool:
    """Whether ``order`` is at or past ``end``, an id whose batch index ``INF`` stands for "any
    message of that entry" (an entry-level or unbatched id)."""
    if order[:2] != end[:2]:
        return order[:2] > end[:2]
    return end[2] == INF or order[2] >= end[2]


def _millis(value: Any, option: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(f"{option}: a datetime needs a time zone", option=option)
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"{option}: publish_time must be epoch ms (int) or a datetime", option=option
        )
    return value


def parse_cursor(value: Any, option: str, named: tuple[str, ...]) -> tuple[str, Any]:
    """``(kind, value)`` of a cursor: a name in ``named`` or a one-key message_id/publish_time dict."""
    if isinstance(value, str):
        check_choice(option, value, named)
        return value, None
    if isinstance(value, Mapping) and len(value) == 1:
        kind, arg = next(iter(value.items()))
        if kind == "message_id":
            if not isinstance(arg, (str, bytes)):
                raise ConfigurationError(f"{option}: message_id must be bytes or base64 text", option=option)
            try:
                raw = base64.b64decode(arg, validate=True) if isinstance(arg, str) else bytes(arg)
            except ValueError as exc:
                raise ConfigurationError(f"{option}: message_id is not base64: {exc}", option=option) from exc
            return "message_id", base64.b64encode(raw).decode("ascii")
        if kind == "publish_time":
            return "publish_time", _millis(arg, option)
    raise ConfigurationError(
        f"{option}={value!r} is not allowed; use one of {', '.join(map(repr, named))}, "
        "{'message_id': ...} or {'publish_time': ...}",
        option=option,
    )


def make_client(service_url: str, options: Mapping[str, Any], timeout: float) -> Any:
    import pulsar

    opts = reveal_secrets(options)
    opts.setdefault("operation_timeout_seconds", max(1, int(timeout)))
    opts.setdefault("logger", pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        return pulsar.Client(service_url, **opts)
    except Exception as exc:
        raise ConnectorError(f"pulsar: client for {service_url!r} failed: {exc}", retryable=True) from exc


#: Rows larger than this skip the native fast path (the client may refuse them one by one).
NATIVE_MAX_BYTES = 1 << 20


def native_sender(producer: Any) -> tuple[Any, Any, Any] | None:
    """``(MessageBuilder, native send_async, Result.Ok)`` of the client's extension, if it has them."""
    try:
        import _pulsar

        native = producer._producer
        return _pulsar.MessageBuilder, native.send_async, _pulsar.Result.Ok
    except (ImportError, AttributeError):
        return None
