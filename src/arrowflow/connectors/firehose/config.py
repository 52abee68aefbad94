"""The options of :class:`~.sink.FirehoseSink`, checked in one place."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import check_name, check_type
from ...formats import Format
from ...writer import BatchingConfig, check_batching_limits, legacy_batching
from .._aws.sink import AWS_LEGACY_BATCHING, put_batching

__all__ = ["FIREHOSE_BATCHING", "FirehoseSinkConfig"]

#: The sink's batching unless configured: PutRecordBatch's limits (500 records, 4 MiB a request,
#: 1000 KiB a record), 4 requests in flight, 1 s in the buffer, up to 11 attempts, 0.1 s -> 5 s.
FIREHOSE_BATCHING = put_batching(max_request_bytes=4 * 1024 * 1024, max_record_bytes=1000 * 1024)


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
        check_type("batching", self.batching, BatchingConfig)
        limited = check_batching_limits(
            self.batching,
            api="PutRecordBatch",
            max_request_rows=500,
            max_request_bytes=4 * 1024 * 1024,
            max_record_bytes=1000 * 1024,
        )
        object.__setattr__(self, "batching", limited)
