"""Kinesis Data Streams source: GetRecords, one unbounded split per shard.

Contract (see :mod:`arrowflow.source`):

* ``plan()`` lists the shards (ListShards); ``discover`` (every ``shard_discovery_interval``
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

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ...config import resolve_config
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...formats import Format, Raw
from ...source import Position, Split, SplitReader
from .._aws.config import AwsConfig
from .._aws.shards import ShardedSource, ShardReader
from .._messaging import decode_messages
from .config import KinesisSourceConfig

__all__ = ["KinesisSource"]

log = logging.getLogger("arrowflow.kinesis")


class KinesisSource(ShardedSource[KinesisSourceConfig]):
    """Reads a Kinesis data stream: one unbounded split per shard (see the module docstring).

    ``aws`` holds the boto3 options (:class:`~arrowflow.connectors.aws.AwsConfig` or a dict of its
    fields); ``client`` is an existing boto3 Kinesis client.
    """

    name = "kinesis"
    service = "kinesis"
    METADATA = KinesisSourceConfig.METADATA

    def __init__(
        self,
        config: KinesisSourceConfig | None = None,
        *,
        stream_name: str | None = None,
        stream_arn: str | None = None,
        start_position: str = "TRIM_HORIZON",
        start_timestamp: _dt.datetime | None = None,
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        poll_interval: float = 0.5,
        min_call_interval: float = 0.2,
        shard_discovery_interval: float | None = 10.0,
        max_records_per_call: int = 10_000,
        initial_backoff: float = 0.2,
        max_backoff: float = 5.0,
        aws: AwsConfig | Mapping[str, Any] | None = None,
        client: Any = None,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        config = resolve_config(KinesisSourceConfig, config, locals())
        super().__init__(config, aws=aws, client=client)
        self.format = config.format if config.format is not None else Raw(column="data")
        self.error_policy = ErrorPolicy.resolve(error_policy, name=self.name)

    @property
    def schema(self) -> pa.Schema | None:
        base = self.format.schema
        if base is None:
            return None
        return pa.schema([*base, *(pa.field(m, self.METADATA[m]) for m in self.config.metadata_columns)])

    def _list_shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        params: dict[str, Any] = dict(self.config.target)
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
    sequence_parameter = "StartingSequenceNumber"

    def _stream_params(self) -> dict[str, Any]:
        return dict(self._src.config.target)

    def _start_params(self) -> dict[str, Any]:
        params = super()._start_params()
        cfg = self._src.config
        if cfg.start_position == "AT_TIMESTAMP":
            params["Timestamp"] = cfg.start_timestamp
        return params

    def _idle_delay(self, response: Mapping[str, Any]) -> float:
        caught_up = not response.get("MillisBehindLatest")
        cfg = self._src.config
        return cfg.poll_interval if caught_up else cfg.min_call_interval

    def _last_sequence(self, records: list[dict[str, Any]]) -> str:
        return str(records[-1]["SequenceNumber"])

    def _to_batch(self, records: list[dict[str, Any]]) -> pa.RecordBatch:
        src = self._src
        seqs = pa.array([r["SequenceNumber"] for r in records], pa.string())
        keys = pa.array([r.get("PartitionKey") for r in records], pa.string())
        shard = pa.array([self._shard] * len(records), pa.string())
        return decode_messages(
            src.format,
            src.error_policy,
            pa.array([r["Data"] for r in records], pa.binary()),
            pa.record_batch({"shard_id": shard, "sequence_number": seqs, "partition_key": keys}),
            src.config.metadata_columns,
            src.METADATA,
            {
                "_shard_id": lambda: shard,
                "_sequence_number": lambda: seqs,
                "_partition_key": lambda: keys,
                "_approximate_arrival_timestamp": lambda: [
                    r.get("ApproximateArrivalTimestamp") for r in records
                ],
            },
        )
