"""The options of the DynamoDB sink, Scan source and Streams source, checked in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from ...config import check_choice, check_exactly_one, check_name, check_positive, check_type
from ...errors import ConfigurationError
from ...writer import BatchingConfig, legacy_batching
from .._aws.shards import ShardPollingOptions
from .._aws.sink import AWS_LEGACY_BATCHING, ApiLimits
from .._messaging import MetadataOptions

__all__ = [
    "DYNAMODB_BATCHING",
    "DynamoDBScanSourceConfig",
    "DynamoDBSinkConfig",
    "DynamoDBStreamsSourceConfig",
]

#: The sink's batching unless configured: BatchWriteItem's limits (25 items, 16 MiB a request,
#: 400 KiB an item), 4 requests in flight, 1 s in the buffer, up to 11 attempts, 0.05 s -> 5 s.
BATCH_WRITE_ITEM = ApiLimits("BatchWriteItem", 25, 16 * 1024 * 1024, 400 * 1024)
DYNAMODB_BATCHING = BatchingConfig(**BATCH_WRITE_ITEM.sizes, max_time_in_buffer=1.0, max_attempts=11)


def _key_columns(value: Sequence[str] | None) -> tuple[str, ...] | None:
    check_type("key_columns", value, (tuple, list), allow_none=True)
    if value is None:
        return None
    if not 1 <= len(value) <= 2:
        raise ConfigurationError(
            "key_columns holds the partition key and an optional sort key", option="key_columns"
        )
    return tuple(value)


@legacy_batching("max_items_per_request", "max_item_bytes", *AWS_LEGACY_BATCHING)
@dataclass(frozen=True, kw_only=True)
class DynamoDBSinkConfig:
    """Options of :class:`~arrowflow.connectors.dynamodb.DynamoDBSink`.

    0.1.0's request and retry options (``max_items_per_request``, ``max_request_bytes``,
    ``max_item_bytes``, ``max_in_flight``, ``max_buffered_rows``, ``flush_interval``,
    ``max_retries``, ``initial_backoff``, ``max_backoff``) still work (``DeprecationWarning``),
    folded into ``batching``.
    """

    table_name: str
    """The table."""
    key_columns: Sequence[str] | None = None
    """The partition key, then the sort key (default: the table's key schema, read with
    DescribeTable on the first write)."""
    delete_column: str | None = None
    """A bool column: rows where it is true are deleted (by key); null counts as false."""
    attribute_columns: Sequence[str] | None = None
    """The attributes written (default: every column but ``delete_column``)."""
    null_attributes: str = "omit"
    """A null value: ``"omit"`` leaves the attribute out, ``"null"`` writes ``{"NULL": true}``."""
    set_columns: Sequence[str] = ()
    """List columns written as sets (``SS``/``NS``/``BS``) instead of lists (``L``)."""
    batching: BatchingConfig = DYNAMODB_BATCHING
    """Requests, buffering and retries (:class:`~arrowflow.writer.BatchingConfig`), at most
    BatchWriteItem's limits (25 items, 16 MiB a request, 400 KiB an item)."""

    def __post_init__(self) -> None:
        check_name("table_name", self.table_name)
        object.__setattr__(self, "key_columns", _key_columns(self.key_columns))
        check_type("attribute_columns", self.attribute_columns, (tuple, list), allow_none=True)
        if self.attribute_columns is not None:
            object.__setattr__(self, "attribute_columns", tuple(self.attribute_columns))
        check_type("set_columns", self.set_columns, (tuple, list))
        object.__setattr__(self, "set_columns", tuple(self.set_columns))
        check_type("delete_column", self.delete_column, str, allow_none=True)
        check_choice("null_attributes", self.null_attributes, ("omit", "null"))
        BATCH_WRITE_ITEM.apply(self)


@dataclass(frozen=True, kw_only=True)
class DynamoDBScanSourceConfig:
    """Options of :class:`~arrowflow.connectors.dynamodb.DynamoDBScanSource`."""

    table_name: str
    """The table."""
    segments: int = 1
    """Scan segments (splits) read in parallel (``TotalSegments``)."""
    projection: Sequence[str] | None = None
    """Attribute names to read (a ProjectionExpression with placeholders, so reserved words work)."""
    filter_expression: str | None = None
    """A FilterExpression."""
    expression_attribute_values: Mapping[str, Any] | None = None
    """AttributeValue dicts of the expression's values (``{":min": {"N": "10"}}``)."""
    expression_attribute_names: Mapping[str, str] | None = None
    """Placeholders of attribute names in the expression."""
    schema: pa.Schema | None = None
    """The batches' schema (recommended: without it types are inferred per page)."""
    consistent_read: bool = False
    """Strongly consistent reads."""
    page_size: int = 1000
    """Items per Scan call (also capped by ``read_batch``'s ``max_rows``)."""

    def __post_init__(self) -> None:
        check_name("table_name", self.table_name)
        for name in ("segments", "page_size"):
            check_type(name, getattr(self, name), int)
            check_positive(name, getattr(self, name))
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        check_type("filter_expression", self.filter_expression, str, allow_none=True)
        if self.projection is not None:
            object.__setattr__(self, "projection", tuple(self.projection))
        check_type("consistent_read", self.consistent_read, bool)


@dataclass(frozen=True, kw_only=True)
class DynamoDBStreamsSourceConfig(ShardPollingOptions, MetadataOptions):
    """Options of :class:`~arrowflow.connectors.dynamodb.DynamoDBStreamsSource`."""

    METADATA: ClassVar[dict[str, pa.DataType]] = {"_shard_id": pa.string(), "_size_bytes": pa.int64()}
    MAX_RECORDS_PER_CALL: ClassVar[int] = 1000
    API: ClassVar[str] = "DynamoDB Streams GetRecords"

    stream_arn: str | None = None
    """The stream's ARN; excludes ``table_name``."""
    table_name: str | None = None
    """A table whose ``LatestStreamArn`` is read (DescribeTable) when the source plans."""
    start_position: str = "TRIM_HORIZON"
    """``TRIM_HORIZON`` (the oldest record kept, 24 hours) or ``LATEST``; a saved position wins."""
    schema: pa.Schema | None = None
    """The Arrow schema of the table's items (keys and images are structs of it)."""
    key_columns: Sequence[str] | None = None
    """The key attribute names (default: the stream's ``KeySchema``)."""
    max_records_per_call: int = 1000
    """GetRecords ``Limit`` at most (the service allows 1000)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("stream_arn", "table_name"):
            check_type(name, getattr(self, name), str, allow_none=True)
        check_exactly_one(stream_arn=self.stream_arn, table_name=self.table_name)
        check_choice("start_position", self.start_position, ("TRIM_HORIZON", "LATEST"))
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        object.__setattr__(self, "key_columns", _key_columns(self.key_columns))
        if self.key_columns is not None and self.schema is not None:
            missing = [k for k in self.key_columns if k not in self.schema.names]
            if missing:
                raise ConfigurationError(f"key_columns {missing} are not in schema", option="key_columns")
