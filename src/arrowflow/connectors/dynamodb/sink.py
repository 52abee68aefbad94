"""DynamoDB sink: BatchWriteItem.

Contract (on :class:`~arrowflow.writer.AsyncBatchWriter`):

* ``write(batch)`` maps every attribute column to DynamoDB attribute values column by column
  (:mod:`arrowflow.connectors.aws.attribute_values`) and serializes each row's ``PutRequest`` /
  ``DeleteRequest`` with the compiled JSON kernel, so a BatchWriteItem body is a zero-copy run of
  those entries: no Python object per row. Rows whose ``delete_column`` is true become
  ``DeleteRequest`` s for their key.
* Rows with a null key attribute, or holding a NaN/infinite number (no DynamoDB representation),
  go to the error policy; so do items over ``batching.max_record_bytes`` (400 KiB, measured on the
  wire JSON, which slightly over-counts).
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
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import REQUIRED, resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError, SerializationError
from ...writer import BatchingConfig, Encoded, SubmitResult
from .._aws.attribute_values import to_attribute_values
from .._aws.config import AwsConfig
from .._aws.sink import AwsSink
from .config import DYNAMODB_BATCHING, DynamoDBSinkConfig

__all__ = ["DynamoDBSink"]


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

    ``aws`` holds the boto3 options (:class:`~arrowflow.connectors.aws.AwsConfig` or a dict of its
    fields); ``client`` is an existing boto3 DynamoDB client (not closed by the sink; its own
    retries should be off).
    """

    name = "dynamodb"
    service = "dynamodb"
    operation = "batch_write_item"
    idempotent = True

    def __init__(
        self,
        config: DynamoDBSinkConfig | None = None,
        *,
        table_name: str = REQUIRED,
        key_columns: Sequence[str] | None = None,
        delete_column: str | None = None,
        attribute_columns: Sequence[str] | None = None,
        null_attributes: str = "omit",
        set_columns: Sequence[str] = (),
        batching: BatchingConfig = DYNAMODB_BATCHING,
        aws: AwsConfig | Mapping[str, Any] | None = None,
        client: Any = None,
        error_policy: ErrorPolicyLike = "fail",
        name: str | None = None,
        **deprecated: Any,
    ) -> None:
        config = resolve_config(DynamoDBSinkConfig, config, locals(), **deprecated)
        super().__init__(config, aws=aws, client=client, error_policy=error_policy, name=name)
        self._keys: tuple[str, ...] | None = config.key_columns  # type: ignore[assignment]
        table = json.dumps(config.table_name)
        self._prefix = ('{"RequestItems":{' + table + ":[").encode()
        self._suffix = b"]}}"
        self._dummy = {config.table_name: [{"DeleteRequest": {"Key": {"_": {"S": "_"}}}}]}

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The primary key attributes (from the config, else from DescribeTable, once)."""
        if self._keys is None:
            desc = self.client.describe_table(TableName=self.config.table_name)["Table"]
            schema = sorted(desc["KeySchema"], key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
            self._keys = tuple(k["AttributeName"] for k in schema)
        return self._keys

    # -- AsyncBatchWriter hooks ----------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> pa.StructArray | Encoded:
        from ..._ext.json_encode import encode_rows

        cfg = self.config
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
        response = self._send(self._body(sent), RequestItems=self._dummy)
        unprocessed = (response.get("UnprocessedItems") or {}).get(self.config.table_name) or []
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
