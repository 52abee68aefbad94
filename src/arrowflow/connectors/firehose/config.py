"""The options of :class:`~.sink.FirehoseSink`, checked in one place."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import check_name, check_type
from ...formats import Format
from ...writer import BatchingConfig, legacy_batching
from .._aws.sink import AWS_LEGACY_BATCHING, ApiLimits, put_batching

__all__ = ["FIREHOSE_BATCHING", "FirehoseSinkConfig"]

#: The sink's batching unless configured: PutRecordBatch's limits (500 records, 4 MiB a request,
#: 1000 KiB a record), 4 requests in flight, 1 s in the buffer, up to 11 attempts, 0.1 s -> 5 s.
PUT_RECORD_BATCH = ApiLimits("PutRecordBatch", 500, 4 * 1024 * 1024, 1000 * 1024)
FIREHOSE_BATCHING = put_batching(PUT_RECORD_BATCH)


@legacy_batching(*AWS_LEGACY_BATCHING)
@dataclass(frozen=True, kw_only=True)
class FirehoseSinkConfig:
    """Options of :class:`~arrowflow.connectors.firehose.FirehoseSink`.

    0.1.0's request and retry options (``max_records_per_request``, ``max_request_bytes``,
    ``max_record_bytes``, ``max_in_flight``, ``max_buffered_rows``, ``flush_interval``,
    ``max_retries``, ``initial_backoff``, ``max_backoff``) still work (``DeprecationWarning``),
    folded into ``batching``.
    """

    delivery_stream_name: str
    """The delivery stream."""
    newline_delimited: bool = True
    """End every record with ``\\n``, so the objects Firehose concatenates are NDJSON."""
    format: Format | None = None
    """How a row becomes a record's data (default :class:`~arrowflow.formats.Json`)."""
    batching: BatchingConfig = FIREHOSE_BATCHING
    """Requests, buffering and retries (:class:`~arrowflow.writer.BatchingConfig`), at most
    PutRecordBatch's limits (500 records, 4 MiB a request, 1000 KiB a record)."""

    def __post_init__(self) -> None:
        check_name("delivery_stream_name", self.delivery_stream_name)
        check_type("newline_delimited", self.newline_delimited, bool)
        check_type("format", self.format, Format, allow_none=True)
        PUT_RECORD_BATCH.apply(self)
