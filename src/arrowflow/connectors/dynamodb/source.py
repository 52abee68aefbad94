"""DynamoDB Scan source: a bounded, parallel Scan, one split per segment.

Contract:

* ``segments`` Scan segments (``TotalSegments``) are the splits, read in parallel; ``projection``,
  ``filter_expression`` (with ``expression_attribute_values`` / ``expression_attribute_names``),
  ``consistent_read`` and ``page_size`` shape each Scan call.
* ``schema``: the Arrow schema of the batches (recommended: without it types are inferred per
  page, and an attribute that is sometimes a number and sometimes a string reads inconsistently).
* Position: the segment's ``LastEvaluatedKey`` after the last batch returned (JSON; binary key
  parts as ``{"$b64": ...}``) and whether the segment is done. ``read_batch`` makes at most one
  Scan call, so it blocks for one round trip (boto3's timeouts apply, not ``timeout``). The scan
  is not a snapshot: writes during the scan may or may not be seen (DynamoDB's Scan semantics).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ...config import REQUIRED, ConfigAttributes, resolve_config
from ...source import Position, Source, Split, SplitReader
from .._aws.attribute_values import from_attribute_values
from .._aws.config import AwsConfig
from .config import DynamoDBScanSourceConfig

__all__ = ["DynamoDBScanSource", "items_to_batch"]


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


class DynamoDBScanSource(ConfigAttributes, Source):
    """Reads a table with a bounded, parallel Scan: one split per segment (see the module docstring).

    ``aws`` holds the boto3 options (:class:`~arrowflow.connectors.aws.AwsConfig` or a dict of its
    fields); ``client`` is an existing boto3 DynamoDB client.
    """

    name = "dynamodb-scan"
    replayable = True

    def __init__(
        self,
        table_name: str = REQUIRED,
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
        config: DynamoDBScanSourceConfig | None = None,
    ) -> None:
        self.config = resolve_config(DynamoDBScanSourceConfig, config, locals())
        self.aws = AwsConfig.coerce(aws)
        self._client = client
        self._client_lock = threading.Lock()

    #: Every split ends (a class constant, not a property).
    bounded = True

    @property
    def schema(self) -> pa.Schema | None:
        return self.config.schema

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self.aws.client("dynamodb", max_pool_connections=self.config.segments)
            return self._client

    def plan(self) -> list[Split]:
        cfg = self.config
        return [
            Split(split_id=f"{cfg.table_name}/segment-{i}", params={"segment": i, "total": cfg.segments})
            for i in range(cfg.segments)
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        return _ScanReader(self, split, position)

    def scan_params(self, segment: int, total: int) -> dict[str, Any]:
        cfg = self.config
        params: dict[str, Any] = {"TableName": cfg.table_name, "ConsistentRead": cfg.consistent_read}
        if total > 1:
            params["Segment"] = segment
            params["TotalSegments"] = total
        names = dict(cfg.expression_attribute_names or {})
        if cfg.projection is not None:
            placeholders = []
            for i, attr in enumerate(cfg.projection):
                names[f"#af{i}"] = attr
                placeholders.append(f"#af{i}")
            params["ProjectionExpression"] = ", ".join(placeholders)
        if cfg.filter_expression is not None:
            params["FilterExpression"] = cfg.filter_expression
        if cfg.expression_attribute_values:
            params["ExpressionAttributeValues"] = dict(cfg.expression_attribute_values)
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
        params = dict(self._params, Limit=min(max_rows, self._source.config.page_size))
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
