"""The messaging base every broker connector is built on (issue 17; ``docs/writing-a-connector.md``).

* :mod:`.payloads`: :class:`PayloadSpec`, which columns make a message (value, routing, key, id,
  headers) and the one vectorized encoding of a batch into entries plus failed rows.
* :mod:`.sink`: :class:`MessageSink` (on :class:`ClientSink`: client events in ``metrics()``,
  the client closed after draining) on :class:`~arrowflow.writer.AsyncBatchWriter`; a broker writes
  only ``publish`` (and ``close_client``).
* :mod:`.source`: :class:`MessageSource` / :class:`MessageReader`: format, metadata columns,
  acknowledge-on-commit (:class:`PendingAcks`), reconnect backoff (:class:`Reconnect` on
  :class:`~arrowflow.retry.ExponentialBackoff`), :class:`Inbox`.
"""

from __future__ import annotations

from .payloads import (
    Outgoing,
    PayloadOptions,
    PayloadSpec,
    RowIds,
    check_columns,
    non_empty,
    payload_columns,
)
from .sink import PIPELINED_BATCHING, ClientSink, MessageSink, failures
from .source import (
    RECONNECT_BACKOFF,
    Inbox,
    MessageReader,
    MessageSource,
    MetadataOptions,
    PendingAcks,
    Reconnect,
    ReconnectingSourceOptions,
    SourceOptions,
    check_metadata_columns,
    decode_messages,
)

__all__ = [
    "PIPELINED_BATCHING",
    "RECONNECT_BACKOFF",
    "ClientSink",
    "Inbox",
    "MessageReader",
    "MessageSink",
    "MessageSource",
    "MetadataOptions",
    "Outgoing",
    "PayloadOptions",
    "PayloadSpec",
    "PendingAcks",
    "Reconnect",
    "ReconnectingSourceOptions",
    "RowIds",
    "SourceOptions",
    "check_columns",
    "check_metadata_columns",
    "decode_messages",
    "failures",
    "non_empty",
    "payload_columns",
]
