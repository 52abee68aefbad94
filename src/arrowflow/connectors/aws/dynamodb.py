"""DynamoDB: :class:`DynamoDBSink` (BatchWriteItem) and :class:`DynamoDBScanSource` (parallel Scan).

Sink contract (on :class:`~arrowflow.writer.AsyncBatchWriter`):

* ``write(batch)`` maps every attribute column to DynamoDB attribute values column by column
  (:mod:`.attribute_values`) and serializes each row's ``PutRequest`` / ``DeleteRequest`` with the
  compiled JSON kernel, so a BatchWriteItem body is a zero-copy run of those entries: no Python
  object per row. Rows whose ``delete_column`` is true become ``DeleteRequest`` s for their key.
* Rows with a null key attribute, or holding a NaN/infinite number (no DynamoDB representation),
  go to the error policy; so do items over ``max_item_bytes`` (400 KB, measured on the wire JSON,
  which slightly over-counts).
* Requests hold at most 25 items (the BatchWriteItem limit). Items with the same primary key inside
  one request are deduplicated, the last one winning (DynamoDB rejects such requests; Flink's
  ``overwriteByPartitionKeys``). Across concurrent requests the order of two writes of one key is
  not defined; use ``max_in_flight=1`` when a batch may update a key twice across requests.
* ``UnprocessedItems`` are re-sent, only they, with full-jitter backoff;
  ``ProvisionedThroughputExceededException`` / throttling / 5xx / connection errors retry the whole
  request; validation errors (bad types, empty sets, oversized items) fail the request's rows to
  the error policy with the service's message.
* Guarantee: puts and deletes by primary key are idempotent (``sink.idempotent``), so a replay
  after a crash leaves the table as if written once: usable in ``exactly-once`` pipelines.

Source contract: see :class:`DynamoDBScanSource`.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import check_choice, check_positive, check_type
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError, SerializationError
from ...source import Position, Source, Split, SplitReader
from ...writer import BatchingConfig, Encoded, SubmitResult
from ._common import check_sink_limits, resolve_config, sink_batching
from ._sink import AwsSink
from .attribute_values import from_attribute_values, to_attribute_values
from .config import AwsConfig

__all__ = ["DynamoDBScanSource", "DynamoDBSink", "DynamoDBSinkConfig"]


@dataclass(frozen=True, kw_only=True)
class DynamoDBSinkConfig:
    """Options of :class:`DynamoDBSink`.

    ``table_name``; ``key_columns`` (partition key, then sort key; ``None``: read the table's key
    schema with DescribeTable on first write); ``delete_column`` (bool; true rows are deleted, null
    counts as false); ``attribute_columns`` (default: every column but ``delete_column``);
    ``null_attributes``: ``"omit"`` (a null leaves the attribute out, default) or ``"null"``
    (``{"NULL": true}``); ``set_columns``: list columns written as ``SS``/``NS``/``BS`` instead of
    ``L``. Limits and retries as for the other AWS sinks.
    """

    table_name: str
    key_columns: tuple[str, ...] | None = None
    delete_column: str | None = None
    attribute_columns: tuple[str, ...] | None = None
    null_attributes: str = "omit"
    set_columns: tuple[str, ...] = ()
    max_items_per_request: int = 25
    max_request_bytes: int = 16 * 1024 * 1024
    max_item_bytes: int = 400 * 1024
    max_in_flight: int = 4
    max_buffered_rows: int = 10_000
    flush_interval: float | None = 1.0
    max_retries: int = 10
    initial_backoff: float = 0.05
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        check_type("table_name", self.table_name, str)
        if not self.table_name:
            raise ConfigurationError("table_name must not be empty", option="table_name")
        for name in ("key_columns", "attribute_columns"):
            value = getattr(self, name)
            check_type(name, value, (tuple, list), allow_none=True)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.key_columns is not None and not 1 <= len(self.key_columns) <= 2:
            raise ConfigurationError(
                "key_columns holds the partition key and an optional sort key", option="key_columns"
            )
        check_type("set_columns", self.set_columns, (tuple, list))
        object.__setattr__(self, "set_columns", tuple(self.set_columns))
        check_type("delete_column", self.delete_column, str, allow_none=True)
        check_choice("null_attributes", self.null_attributes, ("omit", "null"))
        check_sink_limits(
            self,
            count_option="max_items_per_request",
            count_limit=25,
            size_option="max_item_bytes",
            api="BatchWriteItem",
        )

    def batching(self) -> BatchingConfig:
        return sink_batching(
            self, max_request_rows=self.max_items_per_request, max_record_bytes=self.max_item_bytes
        )


def _canonical_key(key: Mapping[str, Any], names: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    """A hashable form of a key as botocore parses it or as ``json.loads`` reads our key JSON."""
    out = []
    for name in names:
        av = key.get(name) or {}
        ((kind, value),) = av.items() if av else (("", ""),)
        if isinstance(value, (bytes, bytearray)):
            value = base64.b64encode(value).decode()
        out.append((name, kind, str(value)))
    return tuple(out)


class DynamoDBSink(AwsSink[DynamoDBSinkConfig]):
    """Writes batches to a DynamoDB table with BatchWriteItem (see the module docstring).

    ``aws`` holds the boto3 options (:class:`AwsConfig` or a dict of its fields); ``client`` is an
    existing boto3 DynamoDB client (not closed by the sink; its own retries should be off).
    """

    name = "dynamodb"
    service = "dynamodb"
    operation = "batch_write_item"
    idempotent = True

    def __init__(
        self,
        config: DynamoDBSinkConfig | None = None,
        *,
        aws: AwsConfig | Mapping[str, Any] | None = None,
        client: Any = None,
        error_policy: ErrorPolicyLike = "fail",
        name: str | None = None,
        **options: Any,
    ) -> None:
        config = resolve_config(DynamoDBSinkConfig, config, options)
        super().__init__(config, aws=aws, client=client, error_policy=error_policy, name=name)
        self._keys: tuple[str, ...] | None = config.key_columns
        table = json.dumps(config.table_name)
        self._prefix = ('{"RequestItems":{' + table + ":[").encode()
        self._suffix = b"]}}"
        self._dummy = {config.table_name: [{"DeleteRequest": {"Key": {"_": {"S": "_"}}}}]}

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The primary key attributes (from the config, else from DescribeTable, once)."""
        if self._keys is None:
            desc = self.client.describe_table(TableName=self.sink_config.table_name)["Table"]
            schema = sorted(desc["KeySchema"], key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
            self._keys = tuple(k["AttributeName"] for k in schema)
        return self._keys

    # -- AsyncBatchWriter hooks ----------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> pa.StructArray | Encoded:
        from ..._ext.json import encode_rows

        cfg = self.sink_config
        names = batch.schema.names
        keys = self.key_columns
        attributes = cfg.attribute_columns or tuple(c for c in names if c != cfg.delete_column)
        for option, cols in (("key_columns", keys), ("attribute_columns", attributes)):
            missing = [c for c in cols if c not in names]
            if missing:
                raise ConfigurationError(
                    f"{option}: {missing} are not columns of the batch {names}", option=option
                )
        if cfg.delete_column is not None and cfg.delete_column not in names:
            raise ConfigurationError(
                f"delete_column={cfg.delete_column!r} is not a column", option="delete_column"
            )
        n = batch.num_rows
        bad = np.zeros(n, dtype=bool)
        reasons = np.full(n, "", dtype=object)
        for k in keys:
            col = batch.column(k)
            if col.null_count:
                mask = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
                reasons[mask & ~bad] = f"null key attribute {k!r}"
                bad |= mask
        avs: dict[str, pa.Array] = {}
        for c in dict.fromkeys((*keys, *attributes)):
            try:
                av = to_attribute_values(
                    batch.column(c),
                    sets=c in cfg.set_columns,
                    top_level_nulls="null" if (cfg.null_attributes == "null" or c in keys) else "omit",
                )
            except SerializationError as exc:
                raise SerializationError(f"{self.name}: column {c!r}: {exc}") from exc
            if av.invalid is not None:
                reasons[av.invalid & ~bad] = f"column {c!r}: NaN or infinity has no DynamoDB number form"
                bad |= av.invalid
            avs[c] = av.values
        failed = np.flatnonzero(bad)
        keep = pa.array(~bad) if len(failed) else None

        def column(c: str) -> pa.Array:
            return avs[c] if keep is None else avs[c].filter(keep)

        key_columns = {k: column(k) for k in keys}
        key_docs = encode_rows(pa.record_batch(key_columns), nulls="omit")
        # Each entry is '{"PutRequest":{"Item":{...}}},' written in one kernel pass (the wrapper is a
        # struct around the item, the comma the kernel's terminator): submit drops the last comma.
        entries = encode_rows(
            _wrapped("PutRequest", "Item", {c: column(c) for c in dict.fromkeys((*keys, *attributes))}),
            nulls="omit",
            terminator=b",",
        )
        if cfg.delete_column is not None:
            flags = pc.cast(batch.column(cfg.delete_column), pa.bool_()).fill_null(False)
            if keep is not None:
                flags = flags.filter(keep)
            if pc.any(flags).as_py():
                deletes = encode_rows(
                    _wrapped("DeleteRequest", "Key", key_columns), nulls="omit", terminator=b","
                )
                entries = pc.if_else(flags, deletes, entries)
        out = pa.StructArray.from_arrays([entries, key_docs], names=["json", "key"])
        if len(failed):
            return Encoded(entries=out, failed=failed, errors=[str(r) for r in reasons[failed].tolist()])
        return out

    def entry_sizes(self, entries: pa.StructArray) -> np.ndarray:
        # Minus the trailing comma: the size of the request's JSON for this item.
        lengths = pc.binary_length(pc.struct_field(entries, "json")).to_numpy(zero_copy_only=False)
        return np.asarray(lengths, dtype=np.int64) - 1

    def submit(self, entries: pa.StructArray) -> SubmitResult | None:
        n = len(entries)
        key_docs = pc.struct_field(entries, "key")
        kept = _last_per_key(key_docs)
        sent = entries if kept is None else entries.take(pa.array(kept))
        response = self._raw_call().call(self._body(sent), RequestItems=self._dummy)
        unprocessed = (response.get("UnprocessedItems") or {}).get(self.sink_config.table_name) or []
        if not unprocessed:
            return SubmitResult.ok()
        # Failure path only: map the unprocessed requests back to entries by their key.
        names = self.key_columns
        sent_keys = pc.struct_field(sent, "key").to_pylist()
        position = {_canonical_key(json.loads(k), names): i for i, k in enumerate(sent_keys)}
        failed: list[int] = []
        for req in unprocessed:
            item = (
                (req.get("PutRequest") or {}).get("Item") or (req.get("DeleteRequest") or {}).get("Key") or {}
            )
            i = position.get(_canonical_key(item, names))
            if i is None:
                raise SerializationError(f"{self.name}: UnprocessedItems holds an item that was not sent")
            failed.append(i if kept is None else int(kept[i]))
        failed_arr = np.unique(np.asarray(failed, dtype=np.int64))
        if len(failed_arr) > n:  # pragma: no cover - defensive
            raise SerializationError(f"{self.name}: more unprocessed items than sent")
        return SubmitResult(failed=failed_arr, errors="UnprocessedItems (throttled)", retryable=True)


def _wrapped(outer: str, inner: str, columns: Mapping[str, pa.Array]) -> pa.RecordBatch:
    """A one-column batch ``{outer: {inner: {<columns>}}}`` (struct wrappers, no data copied)."""
    item = pa.StructArray.from_arrays(list(columns.values()), names=list(columns))
    return pa.record_batch({outer: pa.StructArray.from_arrays([item], names=[inner])})


def _last_per_key(keys: pa.Array) -> np.ndarray | None:
    """Sorted indices of the last entry of every distinct key, or ``None`` when keys are unique."""
    n = len(keys)
    if n < 2 or len(pc.unique(keys)) == n:
        return None
    reversed_keys = keys.take(pa.array(np.arange(n - 1, -1, -1)))
    uniq = pc.unique(reversed_keys)
    first_in_reversed = pc.index_in(uniq, value_set=reversed_keys).to_numpy(zero_copy_only=False)
    return np.sort(n - 1 - np.asarray(first_in_reversed, dtype=np.int64))


# ----------------------------------------------------------------------------------------- source


def _jsonable_key(key: Any) -> Any:
    """A LastEvaluatedKey made JSON-serializable (``bytes`` -> ``{"$b64": ...}``)."""
    if isinstance(key, (bytes, bytearray)):
        return {"$b64": base64.b64encode(key).decode()}
    if isinstance(key, Mapping):
        return {k: _jsonable_key(v) for k, v in key.items()}
    if isinstance(key, (list, tuple)):
        return [_jsonable_key(v) for v in key]
    return key


def _key_from_json(key: Any) -> Any:
    if isinstance(key, Mapping):
        if set(key) == {"$b64"}:
            return base64.b64decode(key["$b64"])
        return {k: _key_from_json(v) for k, v in key.items()}
    if isinstance(key, list):
        return [_key_from_json(v) for v in key]
    return key


def items_to_batch(items: Sequence[Mapping[str, Any]], schema: pa.Schema | None) -> pa.RecordBatch:
    """Scan items (botocore's AttributeValue dicts) -> a record batch, converted column by column.

    ``pa.array`` converts the item dicts to structs of AttributeValue structs in C; each attribute
    column is then mapped with :func:`from_attribute_values`. With ``schema`` the columns are exactly
    its fields (missing attributes are null); without it, the attributes found, sorted by name.
    """
    n = len(items)
    if n == 0:
        return (
            (schema or pa.schema([])).empty_table().to_batches()[0]
            if schema is not None and len(schema)
            else pa.record_batch({})
        )
    raw = pa.array(items)
    present = {raw.type.field(i).name: col for i, col in enumerate(raw.flatten())}
    if schema is None:
        names = sorted(present)
        arrays = [from_attribute_values(present[name]) for name in names]
        return pa.RecordBatch.from_arrays(arrays, names=names)
    arrays = []
    for field in schema:
        if field.name in present:
            arrays.append(from_attribute_values(present[field.name], field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class DynamoDBScanSource(Source):
    """Reads a table with a bounded, parallel Scan: one split per segment.

    * ``segments``: how many Scan segments (splits) run in parallel (``TotalSegments``).
    * ``projection``: attribute names to read (sent as a ProjectionExpression with placeholders, so
      reserved words work); ``filter_expression`` with ``expression_attribute_values`` (AttributeValue
      dicts, e.g. ``{":min": {"N": "10"}}``) and ``expression_attribute_names``.
    * ``schema``: the Arrow schema of the batches (recommended: without it types are inferred per
      page, and an attribute that is sometimes a number and sometimes a string reads inconsistently).
    * ``consistent_read``; ``page_size`` bounds the items per Scan call (it is also capped by
      ``read_batch``'s ``max_rows``).

    Position: the segment's ``LastEvaluatedKey`` after the last batch returned (JSON; binary key
    parts as ``{"$b64": ...}``) and whether the segment is done. ``read_batch`` makes at most one
    Scan call, so it blocks for one round trip (boto3's timeouts apply, not ``timeout``). The scan
    is not a snapshot: writes during the scan may or may not be seen (DynamoDB's Scan semantics).
    """

    name = "dynamodb-scan"
    replayable = True

    def __init__(
        self,
        table_name: str,
        *,
        segments: int = 1,
        projection: Sequence[str] | None = None,
        filter_expression: str | None = None,
        expression_attribute_values: Mapping[str, Any] | None = None,
        expression_attribute_names: Mapping[str, str] | None = None,
        schema: pa.Schema | None = None,
        consistent_read: bool = False,
        page_size: int = 1000,
        aws: AwsConfig | Mapping[str, Any] | None = None,
        client: Any = None,
    ) -> None:
        check_type("table_name", table_name, str)
        check_type("segments", segments, int)
        check_positive("segments", segments)
        check_type("page_size", page_size, int)
        check_positive("page_size", page_size)
        check_type("schema", schema, pa.Schema, allow_none=True)
        check_type("filter_expression", filter_expression, str, allow_none=True)
        self.table_name = table_name
        self.segments = segments
        self.projection = tuple(projection) if projection is not None else None
        self.filter_expression = filter_expression
        self.expression_attribute_values = dict(expression_attribute_values or {})
        self.expression_attribute_names = dict(expression_attribute_names or {})
        self._schema = schema
        self.consistent_read = bool(consistent_read)
        self.page_size = page_size
        self.aws = AwsConfig.coerce(aws)
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def bounded(self) -> bool:
        return True

    @property
    def schema(self) -> pa.Schema | None:
        return self._schema

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self.aws.client("dynamodb", max_pool_connections=self.segments)
            return self._client

    def plan(self) -> list[Split]:
        return [
            Split(split_id=f"{self.table_name}/segment-{i}", params={"segment": i, "total": self.segments})
            for i in range(self.segments)
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        return _ScanReader(self, split, position)

    def scan_params(self, segment: int, total: int) -> dict[str, Any]:
        params: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": self.consistent_read}
        if total > 1:
            params["Segment"] = segment
            params["TotalSegments"] = total
        names = dict(self.expression_attribute_names)
        if self.projection is not None:
            placeholders = []
            for i, attr in enumerate(self.projection):
                names[f"#af{i}"] = attr
                placeholders.append(f"#af{i}")
            params["ProjectionExpression"] = ", ".join(placeholders)
        if self.filter_expression is not None:
            params["FilterExpression"] = self.filter_expression
        if self.expression_attribute_values:
            params["ExpressionAttributeValues"] = self.expression_attribute_values
        if names:
            params["ExpressionAttributeNames"] = names
        return params


class _ScanReader(SplitReader):
    def __init__(self, source: DynamoDBScanSource, split: Split, position: Position) -> None:
        super().__init__(split, position)
        self._source = source
        self._params = source.scan_params(int(split.params["segment"]), int(split.params["total"]))
        pos = position or {}
        self._last_key = _key_from_json(pos.get("last_key")) if pos.get("last_key") else None
        self._done = bool(pos.get("done", False))

    @property
    def finished(self) -> bool:
        return self._done

    def snapshot(self) -> Position:
        return {"last_key": _jsonable_key(self._last_key), "done": self._done}

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._done:
            return None
        params = dict(self._params, Limit=min(max_rows, self._source.page_size))
        if self._last_key is not None:
            params["ExclusiveStartKey"] = self._last_key
        response = self._source.client.scan(**params)
        self._last_key = response.get("LastEvaluatedKey")
        if self._last_key is None:
            self._done = True
        items = response.get("Items") or []
        if not items:
            return None
        return items_to_batch(items, self._source.schema)
