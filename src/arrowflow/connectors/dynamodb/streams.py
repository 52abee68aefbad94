"""DynamoDB Streams source: the change records of a table as Arrow batches.

One unbounded split per stream shard. Each change record becomes one row:

* ``event_id``, ``event_name`` (``INSERT`` / ``MODIFY`` / ``REMOVE``), ``sequence_number`` (string:
  the numbers exceed 64 bits), ``approximate_creation_time`` (``timestamp[ms, UTC]``);
* ``keys``, ``new_image``, ``old_image``: structs of the item's attributes, mapped from DynamoDB JSON
  to Arrow with the same mapping as :class:`~arrowflow.connectors.dynamodb.DynamoDBScanSource`
  (:func:`~arrowflow.connectors.aws.attribute_values.from_attribute_values`). An image the stream
  does not carry (``new_image`` of a ``REMOVE``, ``old_image`` of an ``INSERT``, both with the
  ``KEYS_ONLY`` view) is null;
* optional metadata columns ``_shard_id`` and ``_size_bytes``.

With ``schema`` (the Arrow schema of the table's items) every batch has the same types; without it
the attribute types are inferred per batch (an attribute missing from a batch is missing from its
structs), which is convenient for a look but not for a pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import resolve_config
from ...errors import ConfigurationError
from ...source import Position, Split, SplitReader
from .._aws.attribute_values import from_attribute_values
from .._aws.config import AwsConfig
from .._aws.shards import ShardedSource, ShardReader
from .config import DynamoDBStreamsSourceConfig

__all__ = ["DynamoDBStreamsSource", "records_to_batch"]

log = logging.getLogger("arrowflow.dynamodb_streams")

_META_TYPES = DynamoDBStreamsSourceConfig.METADATA
_TS = pa.timestamp("ms", tz="UTC")


def _struct_column(raw: pa.Array, schema: pa.Schema | None) -> pa.Array:
    """A struct array of AttributeValue structs (or nulls) -> a struct of plain Arrow columns."""
    n = len(raw)
    if schema is not None:
        target = pa.struct(list(schema))
        if pa.types.is_null(raw.type):
            return pa.nulls(n, target)
        present = {raw.type.field(i).name: col for i, col in enumerate(raw.flatten())}
        arrays = [
            from_attribute_values(present[f.name], f.type) if f.name in present else pa.nulls(n, f.type)
            for f in schema
        ]
        return pa.StructArray.from_arrays(arrays, fields=list(schema), mask=_null_mask(raw))
    if pa.types.is_null(raw.type):
        return pa.nulls(n, pa.struct([]))
    names = sorted(raw.type.field(i).name for i in range(raw.type.num_fields))
    present = {raw.type.field(i).name: col for i, col in enumerate(raw.flatten())}
    arrays = [from_attribute_values(present[name]) for name in names]
    if not arrays:
        return pa.nulls(n, pa.struct([]))
    return pa.StructArray.from_arrays(arrays, names=names, mask=_null_mask(raw))


def _null_mask(arr: pa.Array) -> pa.Array | None:
    return arr.is_null() if arr.null_count else None


def records_to_batch(
    records: Sequence[Mapping[str, Any]],
    *,
    schema: pa.Schema | None,
    key_columns: Sequence[str] | None,
    shard_id: str,
    metadata_columns: Sequence[str] = (),
) -> pa.RecordBatch:
    """GetRecords records (botocore's parsed dicts) -> one batch (see the module docstring).

    ``pa.array`` converts the list of record dicts into nested structs in C; the image columns are
    then mapped column by column with :func:`from_attribute_values`.
    """
    n = len(records)
    raw = pa.array(records)
    top = dict(zip([raw.type.field(i).name for i in range(raw.type.num_fields)], raw.flatten(), strict=True))
    ddb = top["dynamodb"]
    inner = dict(
        zip([ddb.type.field(i).name for i in range(ddb.type.num_fields)], ddb.flatten(), strict=True)
    )

    def get(d: Mapping[str, pa.Array], name: str, typ: pa.DataType) -> pa.Array:
        col = d.get(name)
        if col is None:
            return pa.nulls(n, typ)
        return col if col.type == typ else col.cast(typ)

    key_schema = None
    if schema is not None and key_columns:
        key_schema = pa.schema([schema.field(k) for k in key_columns])
    stamps = inner.get("ApproximateCreationDateTime")
    if stamps is None:
        stamps = pa.nulls(n, _TS)
    elif pa.types.is_timestamp(stamps.type):
        stamps = stamps.cast(pa.timestamp("ms", tz=stamps.type.tz or "UTC")).cast(_TS)
    else:  # epoch seconds (a parser that left them numeric)
        millis = np.asarray(stamps.cast(pa.float64()).to_numpy(zero_copy_only=False)) * 1000
        stamps = pa.array(millis, mask=np.isnan(millis)).cast(pa.int64()).cast(_TS)
    columns: dict[str, pa.Array] = {
        "event_id": get(top, "eventID", pa.string()),
        "event_name": get(top, "eventName", pa.string()),
        "sequence_number": get(inner, "SequenceNumber", pa.string()),
        "approximate_creation_time": stamps,
        "keys": _struct_column(inner.get("Keys", pa.nulls(n)), key_schema),
        "new_image": _struct_column(inner.get("NewImage", pa.nulls(n)), schema),
        "old_image": _struct_column(inner.get("OldImage", pa.nulls(n)), schema),
    }
    for m in metadata_columns:
        if m == "_shard_id":
            columns[m] = pa.array(np.full(n, shard_id, dtype=object), pa.string())
        else:
            columns[m] = get(inner, "SizeBytes", pa.int64())
    return pa.record_batch(columns)


class DynamoDBStreamsSource(ShardedSource[DynamoDBStreamsSourceConfig]):
    """Reads a DynamoDB stream: one unbounded split per shard (see the module docstring for rows).

    Contract (see :mod:`arrowflow.source`):

    * ``plan()`` lists the shards (DescribeStream, paginated); :meth:`discover` (every
      ``shard_discovery_interval`` seconds) returns shards created since (DynamoDB rolls shards over
      every few hours and splits them under load).
    * Parents before children: a child shard's reader returns nothing until its parent shard, if
      this source knows it, is read to its end (its iterator ran out), so the changes of one item
      stay in order. A parent no longer listed (trimmed) does not block.
    * Position: ``{"sequence_number": <last returned or null>, "closed": <shard read to its end>}``.
      A reader reopened from a position continues AFTER that sequence number; without one it starts
      at ``start_position``.
    * ``read_batch(max_rows, timeout)`` makes at most one GetRecords call (``Limit`` = ``max_rows``,
      at most 1000) and sleeps at most ``timeout`` to honour the per-shard call rate; throttling
      (``LimitExceededException``, ``ProvisionedThroughputExceededException``, 5xx) backs off with
      full jitter, an expired iterator is renewed from the position. Other errors (e.g.
      ``TrimmedDataAccessException``: the saved position is older than the stream's retention) raise.
    * Splits are unbounded; ``commit`` does nothing: the stream keeps no consumer state and is
      replayable within its retention, so the checkpoint is the truth.
    """

    name = "dynamodb-streams"
    service = "dynamodbstreams"

    def __init__(
        self,
        config: DynamoDBStreamsSourceConfig | None = None,
        *,
        stream_arn: str | None = None,
        table_name: str | None = None,
        start_position: str = "TRIM_HORIZON",
        schema: pa.Schema | None = None,
        key_columns: Sequence[str] | None = None,
        metadata_columns: Sequence[str] = (),
        poll_interval: float = 0.5,
        min_call_interval: float = 0.2,
        shard_discovery_interval: float | None = 10.0,
        max_records_per_call: int = 1000,
        initial_backoff: float = 0.2,
        max_backoff: float = 5.0,
        aws: AwsConfig | Mapping[str, Any] | None = None,
        client: Any = None,
    ) -> None:
        config = resolve_config(DynamoDBStreamsSourceConfig, config, locals())
        super().__init__(config, aws=aws, client=client)
        self._arn: str | None = config.stream_arn
        self._keys: tuple[str, ...] | None = config.key_columns  # type: ignore[assignment]

    @property
    def schema(self) -> pa.Schema | None:
        item = self.config.schema
        if item is None:
            return None
        keys = self.key_columns
        fields = [
            pa.field("event_id", pa.string()),
            pa.field("event_name", pa.string()),
            pa.field("sequence_number", pa.string()),
            pa.field("approximate_creation_time", _TS),
            pa.field("keys", pa.struct([item.field(k) for k in keys])),
            pa.field("new_image", pa.struct(list(item))),
            pa.field("old_image", pa.struct(list(item))),
        ]
        fields += [pa.field(m, _META_TYPES[m]) for m in self.config.metadata_columns]
        return pa.schema(fields)

    @property
    def stream_arn(self) -> str:
        """The stream's ARN (from the config, else the table's ``LatestStreamArn``)."""
        if self._arn is None:
            table = self.aws.client("dynamodb").describe_table(TableName=self.config.table_name)["Table"]
            arn = table.get("LatestStreamArn")
            if not arn or not (table.get("StreamSpecification") or {}).get("StreamEnabled", True):
                raise ConfigurationError(
                    f"table {self.config.table_name!r} has no enabled stream", option="table_name"
                )
            self._arn = str(arn)
        return self._arn

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The table's key attributes (from the config, else DescribeStream's ``KeySchema``)."""
        if self._keys is None:
            desc = self.client.describe_stream(StreamArn=self.stream_arn, Limit=1)["StreamDescription"]
            schema = sorted(desc["KeySchema"], key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
            self._keys = tuple(k["AttributeName"] for k in schema)
        return self._keys

    def _list_shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        params: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            desc = self.client.describe_stream(**params)["StreamDescription"]
            if self._keys is None and desc.get("KeySchema"):
                ks = sorted(desc["KeySchema"], key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
                self._keys = tuple(k["AttributeName"] for k in ks)
            shards.extend(desc.get("Shards") or [])
            last = desc.get("LastEvaluatedShardId")
            if not last:
                return shards
            params = {"StreamArn": self.stream_arn, "ExclusiveStartShardId": last}

    def _split_params(self) -> dict[str, Any]:
        return {"stream_arn": self.stream_arn}

    def open(self, split: Split, position: Position = None) -> SplitReader:
        return _StreamShardReader(self, split, position)


class _StreamShardReader(ShardReader[DynamoDBStreamsSource]):
    log = log
    label = "dynamodb stream shard"
    end_without_iterator = True
    sequence_parameter = "SequenceNumber"

    def __init__(self, source: DynamoDBStreamsSource, split: Split, position: Position) -> None:
        self._arn = str(split.params.get("stream_arn") or source.stream_arn)
        super().__init__(source, split, position)
        cfg = source.config
        # Keys and schema are resolved once, outside the polling loop.
        self._keys = source.key_columns if cfg.schema is not None else cfg.key_columns

    def _stream_params(self) -> dict[str, Any]:
        return {"StreamArn": self._arn}

    def _last_sequence(self, records: list[dict[str, Any]]) -> str:
        return str(records[-1]["dynamodb"]["SequenceNumber"])

    def _to_batch(self, records: list[dict[str, Any]]) -> pa.RecordBatch:
        cfg = self._src.config
        return records_to_batch(
            records,
            schema=cfg.schema,
            key_columns=self._keys,
            shard_id=self._shard,
            metadata_columns=cfg.metadata_columns,
        )
