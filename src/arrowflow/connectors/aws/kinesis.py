"""Kinesis Data Streams: :class:`KinesisSink` (PutRecords) and :class:`KinesisSource` (GetRecords).

Sink contract (on :class:`~arrowflow.writer.AsyncBatchWriter`):

* ``write(batch)`` encodes the rows with a format (default JSON, the compiled kernel), takes the
  partition key from a column, from a function over the batch, or random keys, and builds each
  record's wire JSON (``{"Data":"<base64>","PartitionKey":"..."}``) with the JSON kernel: no Python
  object per row. A request body is a zero-copy run of those entries.
* Requests hold at most ``max_records_per_request`` (500) records and ``max_request_bytes`` (5 MiB)
  counted as Kinesis counts them (data + partition key bytes); a record over ``max_record_bytes``
  (1 MiB) goes to the error policy, as do rows whose format encoding failed or whose partition key
  is null, empty or longer than 256 characters.
* ``FailedRecordCount > 0``: only the failed records are re-sent, with full-jitter backoff;
  ``ProvisionedThroughputExceededException`` and ``InternalFailure`` (per record or for the whole
  request) and connection errors are retryable, other per-record errors (KMS access, ...) go to the
  error policy with the service's error text.
* Guarantee: at-least-once. ``flush()`` (called at every checkpoint) returns once every written row
  is acknowledged or given to the error policy. A retry after a lost response can duplicate records
  (Kinesis has no idempotent put).

Source contract: see :class:`KinesisSource`.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import check_choice, check_type
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...errors import ConfigurationError
from ...formats import Format, Json, Raw, decode_with_policy
from ...source import Position, Split, SplitReader
from ...writer import BatchingConfig, Encoded, SubmitResult
from ._common import (
    binary_payloads,
    check_sink_limits,
    record_outcomes,
    resolve_config,
    resolve_keys,
    sink_batching,
)
from ._shards import ShardedSource, ShardReader, check_shard_polling
from ._sink import AwsSink
from .config import THROTTLING_CODES, AwsConfig

__all__ = ["KinesisSink", "KinesisSinkConfig", "KinesisSource", "KinesisSourceConfig"]

log = logging.getLogger("arrowflow.kinesis")

_RETRYABLE_RECORD_CODES = (
    frozenset({"ProvisionedThroughputExceededException", "InternalFailure"}) | THROTTLING_CODES
)


@dataclass(frozen=True, kw_only=True)
class KinesisSinkConfig:
    """Options of :class:`KinesisSink`.

    Target: ``stream_name`` or ``stream_arn``. Partition key: ``partition_key_column`` (cast to
    string), or ``partition_key`` (a function ``batch -> array of keys``), else random keys.
    ``explicit_hash_key_column`` optionally sets ``ExplicitHashKey``. Limits default to the service
    limits; ``flush_interval`` is the longest a record waits for a full request (``None``: only
    full requests, ``flush()`` and ``close()`` send partial ones). ``max_retries`` re-sends per
    record, with backoff between ``initial_backoff`` and ``max_backoff`` seconds.
    """

    stream_name: str | None = None
    stream_arn: str | None = None
    partition_key_column: str | None = None
    partition_key: Callable[[pa.RecordBatch], Any] | None = None
    explicit_hash_key_column: str | None = None
    max_records_per_request: int = 500
    max_request_bytes: int = 5 * 1024 * 1024
    max_record_bytes: int = 1024 * 1024
    max_in_flight: int = 4
    max_buffered_rows: int = 20_000
    flush_interval: float | None = 1.0
    max_retries: int = 10
    initial_backoff: float = 0.1
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        for name in ("stream_name", "stream_arn", "partition_key_column", "explicit_hash_key_column"):
            check_type(name, getattr(self, name), str, allow_none=True)
        if (self.stream_name is None) == (self.stream_arn is None):
            raise ConfigurationError("give exactly one of stream_name and stream_arn", option="stream_name")
        if self.partition_key_column is not None and self.partition_key is not None:
            raise ConfigurationError(
                "give at most one of partition_key_column and partition_key", option="partition_key"
            )
        if self.partition_key is not None and not callable(self.partition_key):
            raise ConfigurationError("partition_key must be a function batch -> keys", option="partition_key")
        check_sink_limits(
            self,
            count_option="max_records_per_request",
            count_limit=500,
            size_option="max_record_bytes",
            api="PutRecords",
        )

    def batching(self) -> BatchingConfig:
        return sink_batching(
            self, max_request_rows=self.max_records_per_request, max_record_bytes=self.max_record_bytes
        )


class KinesisSink(AwsSink[KinesisSinkConfig]):
    """Writes batches to a Kinesis data stream with PutRecords (see the module docstring).

    ``aws`` holds the boto3 options (:class:`AwsConfig` or a dict of its fields); ``client`` is an
    existing boto3 Kinesis client (not closed by the sink; its own retries should be off).
    """

    name = "kinesis"
    service = "kinesis"
    operation = "put_records"
    lean_answer = ("FailedRecordCount", "Records")

    def __init__(
        self,
        config: KinesisSinkConfig | None = None,
        *,
        format: Format | None = None,
        aws: AwsConfig | Mapping[str, Any] | None = None,
        client: Any = None,
        error_policy: ErrorPolicyLike = "fail",
        name: str | None = None,
        **options: Any,
    ) -> None:
        config = resolve_config(KinesisSinkConfig, config, options)
        super().__init__(config, aws=aws, client=client, error_policy=error_policy, name=name)
        self.format = format if format is not None else Json()
        check_type("format", self.format, Format)
        target = (
            {"StreamName": config.stream_name} if config.stream_name else {"StreamARN": config.stream_arn}
        )
        self._target = target
        import json

        head = json.dumps(target, separators=(",", ":"))[:-1]
        self._prefix = (head + ',"Records":[').encode()
        self._suffix = b"]}"

    # -- AsyncBatchWriter hooks ----------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> pa.StructArray | Encoded:
        from ..._ext.json import encode_rows

        cfg = self.sink_config
        n = batch.num_rows
        encoded = self.format.encode(batch)
        payloads = binary_payloads(encoded)
        keys = resolve_keys(
            batch, column=cfg.partition_key_column, function=cfg.partition_key, option="partition_key_column"
        )
        bad = np.zeros(n, dtype=bool)
        reasons = np.full(n, "", dtype=object)
        if len(encoded.failed):
            bad[encoded.failed] = True
            reasons[encoded.failed] = encoded.errors if encoded.errors else "format encoding failed"
        key_len = pc.utf8_length(keys).fill_null(0).to_numpy(zero_copy_only=False)
        bad_key = (key_len == 0) | (key_len > 256)
        if bad_key.any():
            new = bad_key & ~bad
            reasons[new] = "partition key is null, empty or longer than 256 characters"
            bad |= bad_key
        columns = {"Data": payloads, "PartitionKey": keys}
        if cfg.explicit_hash_key_column is not None:
            if cfg.explicit_hash_key_column not in batch.schema.names:
                raise ConfigurationError(
                    f"explicit_hash_key_column={cfg.explicit_hash_key_column!r} is not a column",
                    option="explicit_hash_key_column",
                )
            columns["ExplicitHashKey"] = pc.cast(batch.column(cfg.explicit_hash_key_column), pa.string())
        failed = np.flatnonzero(bad)
        if len(failed):
            keep = pa.array(~bad)
            columns = {k: v.filter(keep) for k, v in columns.items()}
        records = pa.record_batch(columns)
        # '{"Data":...,"PartitionKey":...},' per record: the kernel's terminator is the separator.
        entries = encode_rows(records, nulls="omit", terminator=b",")
        sizes = pc.add(
            pc.binary_length(records.column("Data")).cast(pa.int64()),
            pc.binary_length(records.column("PartitionKey")).cast(pa.int64()),
        )
        out = pa.StructArray.from_arrays([entries, sizes], names=["json", "size"])
        if len(failed):
            return Encoded(entries=out, failed=failed, errors=[str(r) for r in reasons[failed].tolist()])
        return out

    def submit(self, entries: pa.StructArray) -> SubmitResult | None:
        response = self._raw_call().call(
            self._body(entries), Records=[{"Data": b"", "PartitionKey": "_"}], **self._target
        )
        return record_outcomes(
            response,
            len(entries),
            _RETRYABLE_RECORD_CODES,
            records_key="Records",
            failed_key="FailedRecordCount",
        )


# ----------------------------------------------------------------------------------------- source

_META_TYPES: dict[str, pa.DataType] = {
    "_shard_id": pa.string(),
    "_sequence_number": pa.string(),
    "_partition_key": pa.string(),
    "_approximate_arrival_timestamp": pa.timestamp("ms", tz="UTC"),
}
_START_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")


@dataclass(frozen=True, kw_only=True)
class KinesisSourceConfig:
    """Options of :class:`KinesisSource`.

    ``start_position``: ``TRIM_HORIZON`` (oldest record kept), ``LATEST`` (records arriving after
    the reader opens) or ``AT_TIMESTAMP`` (with ``start_timestamp``, a timezone-aware datetime); a
    saved position always wins. ``metadata_columns``: any of ``_shard_id``, ``_sequence_number``,
    ``_partition_key``, ``_approximate_arrival_timestamp``. ``poll_interval``: seconds between
    GetRecords calls of a shard that is caught up (the service allows 5 calls per second per shard,
    so calls are never closer than ``min_call_interval``). ``shard_discovery_interval``: seconds
    between ListShards calls that find new shards after resharding (``None`` = never).
    """

    stream_name: str | None = None
    stream_arn: str | None = None
    start_position: str = "TRIM_HORIZON"
    start_timestamp: _dt.datetime | None = None
    metadata_columns: tuple[str, ...] = ()
    poll_interval: float = 0.5
    min_call_interval: float = 0.2
    shard_discovery_interval: float | None = 10.0
    max_records_per_call: int = 10_000
    initial_backoff: float = 0.2
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        for name in ("stream_name", "stream_arn"):
            check_type(name, getattr(self, name), str, allow_none=True)
        if (self.stream_name is None) == (self.stream_arn is None):
            raise ConfigurationError("give exactly one of stream_name and stream_arn", option="stream_name")
        check_choice("start_position", self.start_position, _START_POSITIONS)
        if (self.start_position == "AT_TIMESTAMP") != (self.start_timestamp is not None):
            raise ConfigurationError(
                "start_timestamp is required with (and only with) start_position='AT_TIMESTAMP'",
                option="start_timestamp",
            )
        check_shard_polling(self, metadata=_META_TYPES, limit=10_000, api="GetRecords")


class KinesisSource(ShardedSource[KinesisSourceConfig]):
    """Reads a Kinesis data stream: one unbounded split per shard.

    Contract (see :mod:`arrowflow.source`):

    * ``plan()`` lists the shards (ListShards); :meth:`discover` (every ``shard_discovery_interval``
      seconds) returns shards created since, e.g. by SplitShard / MergeShards / UpdateShardCount.
    * Parents before children: a child shard's reader returns nothing until each of its parent
      shards that this source knows is read to its end (the parent's iterator ran out), so the
      records of one partition key stay in order across a reshard. Parents no longer listed
      (expired) do not block.
    * Position: ``{"sequence_number": <last returned or null>, "closed": <shard read to its end>}``.
      A reader reopened from a position continues AFTER that sequence number; without one it
      starts at ``start_position``. (With ``LATEST`` and no record read yet, a restart starts at the
      new latest: records written in between are not read.)
    * ``read_batch(max_rows, timeout)`` makes at most one GetRecords call (``Limit`` = ``max_rows``,
      at most 10000) and sleeps at most ``timeout`` to honour the per-shard call rate; throttling
      (ProvisionedThroughputExceededException) backs off with full jitter; an expired iterator is
      renewed from the position. Payloads are decoded batch-wise by ``format`` (default ``Raw``:
      one binary column ``data``); payloads that fail go to ``error_policy`` as rows of ``payload``
      plus ``shard_id``, ``sequence_number``, ``partition_key``, ``error``.
    * Splits are unbounded (``finished`` stays False); ``commit`` does nothing (Kinesis keeps no
      consumer offsets: the checkpoint is the truth).
    """

    name = "kinesis"

    def __init__(
        self,
        config: KinesisSourceConfig | None = None,
        *,
        format: Format | None = None,
        aws: AwsConfig | Mapping[str, Any] | None = None,
        client: Any = None,
        error_policy: ErrorPolicyLike = "fail",
        **options: Any,
    ) -> None:
        config = resolve_config(KinesisSourceConfig, config, options)
        super().__init__(config)
        self.format = format if format is not None else Raw(column="data")
        check_type("format", self.format, Format)
        self.error_policy = ErrorPolicy.resolve(error_policy, name=self.name)
        self.aws = AwsConfig.coerce(aws)
        self._client = client
        self._target = (
            {"StreamName": config.stream_name} if config.stream_name else {"StreamARN": config.stream_arn}
        )

    @property
    def schema(self) -> pa.Schema | None:
        base = self.format.schema
        if base is None:
            return None
        return pa.schema([*base, *(pa.field(m, _META_TYPES[m]) for m in self.config.metadata_columns)])

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self.aws.client("kinesis", max_pool_connections=16)
            return self._client

    def _list_shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        params: dict[str, Any] = dict(self._target)
        while True:
            response = self.client.list_shards(**params)
            shards.extend(response.get("Shards") or [])
            token = response.get("NextToken")
            if not token:
                return shards
            params = {"NextToken": token}

    def open(self, split: Split, position: Position = None) -> SplitReader:
        return _ShardReader(self, split, position)


class _ShardReader(ShardReader[KinesisSource]):
    log = log
    label = "kinesis shard"

    def _new_iterator(self) -> str | None:
        cfg = self._src.config
        params: dict[str, Any] = dict(self._src._target, ShardId=self._shard)
        if self._seq is not None:
            params.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=self._seq)
        else:
            params["ShardIteratorType"] = cfg.start_position
            if cfg.start_position == "AT_TIMESTAMP":
                params["Timestamp"] = cfg.start_timestamp
        it = self._src.client.get_shard_iterator(**params).get("ShardIterator")
        return str(it) if it else None

    def _idle_delay(self, response: Mapping[str, Any]) -> float:
        caught_up = not response.get("MillisBehindLatest")
        cfg = self._src.config
        return cfg.poll_interval if caught_up else cfg.min_call_interval

    def _last_sequence(self, records: list[dict[str, Any]]) -> str:
        return str(records[-1]["SequenceNumber"])

    def _to_batch(self, records: list[dict[str, Any]]) -> pa.RecordBatch:
        src = self._src
        n = len(records)
        payloads = pa.array([r["Data"] for r in records], pa.binary())
        seqs = pa.array([r["SequenceNumber"] for r in records], pa.string())
        keys = pa.array([r.get("PartitionKey") for r in records], pa.string())
        shard = pa.array([self._shard] * n, pa.string())
        meta = pa.record_batch({"shard_id": shard, "sequence_number": seqs, "partition_key": keys})
        batch, idx = decode_with_policy(src.format, payloads, src.error_policy, meta)
        wanted = src.config.metadata_columns
        if not wanted:
            return batch
        take = pa.array(idx, pa.int64()) if len(idx) != n else None
        columns = list(batch.columns)
        fields = list(batch.schema)
        for m in wanted:
            if m == "_shard_id":
                col = shard
            elif m == "_sequence_number":
                col = seqs
            elif m == "_partition_key":
                col = keys
            else:
                stamps = [r.get("ApproximateArrivalTimestamp") for r in records]
                col = pa.array(stamps, pa.timestamp("ms", tz="UTC"))
            if take is not None:
                col = col.take(take)
            columns.append(col)
            fields.append(pa.field(m, _META_TYPES[m]))
        return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))
