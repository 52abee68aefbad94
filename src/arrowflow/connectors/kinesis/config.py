"""The options of :class:`~.sink.KinesisSink` and :class:`~.source.KinesisSource`, checked in one place."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from ...config import check_choice, check_exactly_one, check_type
from ...errors import ConfigurationError
from ...formats import Format
from ...writer import BatchingConfig, legacy_batching
from .._aws.shards import ShardPollingOptions
from .._aws.sink import AWS_LEGACY_BATCHING, ApiLimits, put_batching
from .._messaging import SourceOptions

__all__ = ["KINESIS_BATCHING", "KinesisSinkConfig", "KinesisSourceConfig"]

#: The sink's batching unless configured: PutRecords' limits (500 records, 5 MiB a request, 1 MiB a
#: record), 4 requests in flight, 1 s in the buffer, up to 11 attempts with 0.1 s -> 5 s backoff.
PUT_RECORDS = ApiLimits("PutRecords", 500, 5 * 1024 * 1024, 1024 * 1024)
KINESIS_BATCHING = put_batching(PUT_RECORDS)


@legacy_batching(*AWS_LEGACY_BATCHING)
@dataclass(frozen=True, kw_only=True)
class KinesisSinkConfig:
    """Options of :class:`~arrowflow.connectors.kinesis.KinesisSink`.

    0.1.0's ``max_records_per_request``, ``max_request_bytes``, ``max_record_bytes``,
    ``max_in_flight``, ``max_buffered_rows``, ``flush_interval``, ``max_retries``,
    ``initial_backoff`` and ``max_backoff`` still work (``DeprecationWarning``): they are folded
    into ``batching``.
    """

    stream_name: str | None = None
    """The stream's name; excludes ``stream_arn``."""
    stream_arn: str | None = None
    """The stream's ARN; excludes ``stream_name``."""
    partition_key_column: str | None = None
    """A column of partition keys (cast to string); excludes ``partition_key``. Default: random keys."""
    partition_key: Callable[[pa.RecordBatch], Any] | None = None
    """A function ``batch -> array of keys``; excludes ``partition_key_column``."""
    explicit_hash_key_column: str | None = None
    """A column of ``ExplicitHashKey`` values."""
    format: Format | None = None
    """How a row becomes a record's data (default :class:`~arrowflow.formats.Json`)."""
    batching: BatchingConfig = KINESIS_BATCHING
    """Requests, buffering and retries (:class:`~arrowflow.writer.BatchingConfig`), at most
    PutRecords' limits (500 records, 5 MiB a request, 1 MiB a record; a limit left ``None`` is
    the service's)."""

    def __post_init__(self) -> None:
        for name in ("stream_name", "stream_arn", "partition_key_column", "explicit_hash_key_column"):
            check_type(name, getattr(self, name), str, allow_none=True)
        check_exactly_one(stream_name=self.stream_name, stream_arn=self.stream_arn)
        if self.partition_key_column is not None and self.partition_key is not None:
            raise ConfigurationError(
                "give at most one of partition_key_column and partition_key", option="partition_key"
            )
        if self.partition_key is not None and not callable(self.partition_key):
            raise ConfigurationError("partition_key must be a function batch -> keys", option="partition_key")
        check_type("format", self.format, Format, allow_none=True)
        PUT_RECORDS.apply(self)

    @property
    def target(self) -> dict[str, str]:
        """``StreamName`` or ``StreamARN`` of a request."""
        return {"StreamName": self.stream_name} if self.stream_name else {"StreamARN": str(self.stream_arn)}


@dataclass(frozen=True, kw_only=True)
class KinesisSourceConfig(ShardPollingOptions, SourceOptions):
    """Options of :class:`~arrowflow.connectors.kinesis.KinesisSource`."""

    METADATA: ClassVar[dict[str, pa.DataType]] = {
        "_shard_id": pa.string(),
        "_sequence_number": pa.string(),
        "_partition_key": pa.string(),
        "_approximate_arrival_timestamp": pa.timestamp("ms", tz="UTC"),
    }
    MAX_RECORDS_PER_CALL: ClassVar[int] = 10_000

    stream_name: str | None = None
    """The stream's name; excludes ``stream_arn``."""
    stream_arn: str | None = None
    """The stream's ARN; excludes ``stream_name``."""
    start_position: str = "TRIM_HORIZON"
    """``TRIM_HORIZON`` (the oldest record kept), ``LATEST`` (records arriving after the reader
    opens) or ``AT_TIMESTAMP`` (with ``start_timestamp``); a saved position always wins."""
    start_timestamp: _dt.datetime | None = None
    """With ``AT_TIMESTAMP``: a timezone-aware datetime."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("stream_name", "stream_arn"):
            check_type(name, getattr(self, name), str, allow_none=True)
        check_exactly_one(stream_name=self.stream_name, stream_arn=self.stream_arn)
        check_choice("start_position", self.start_position, ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"))
        if (self.start_position == "AT_TIMESTAMP") != (self.start_timestamp is not None):
            raise ConfigurationError(
                "start_timestamp is required with (and only with) start_position='AT_TIMESTAMP'",
                option="start_timestamp",
            )

    @property
    def target(self) -> dict[str, str]:
        """``StreamName`` or ``StreamARN`` of a request."""
        return {"StreamName": self.stream_name} if self.stream_name else {"StreamARN": str(self.stream_arn)}
