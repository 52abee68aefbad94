"""Kinesis Data Streams sink: PutRecords.

Contract (on :class:`~arrowflow.writer.AsyncBatchWriter`):

* ``write(batch)`` encodes the rows with a format (default JSON, the compiled kernel), takes the
  partition key from a column, from a function over the batch, or random keys, and builds each
  record's wire JSON (``{"Data":"<base64>","PartitionKey":"..."}``) with the JSON kernel: no Python
  object per row. A request body is a zero-copy run of those entries.
* Requests hold at most ``batching.max_request_rows`` (500) records and ``max_request_bytes`` (5 MiB)
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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError
from ...formats import Format, Json
from ...writer import BatchingConfig, Encoded, SubmitResult
from .._aws.common import binary_payloads, record_outcomes, resolve_keys
from .._aws.config import THROTTLING_CODES, AwsConfig
from .._aws.sink import AwsSink
from .config import KINESIS_BATCHING, KinesisSinkConfig

__all__ = ["KinesisSink"]

log = logging.getLogger("arrowflow.kinesis")

_RETRYABLE_RECORD_CODES = (
    frozenset({"ProvisionedThroughputExceededException", "InternalFailure"}) | THROTTLING_CODES
)


class KinesisSink(AwsSink[KinesisSinkConfig]):
    """Writes batches to a Kinesis data stream with PutRecords (see the module docstring).

    ``aws`` holds the boto3 options (:class:`~arrowflow.connectors.aws.AwsConfig` or a dict of its
    fields); ``client`` is an existing boto3 Kinesis client (not closed by the sink; its own retries
    should be off).
    """

    name = "kinesis"
    service = "kinesis"
    operation = "put_records"
    lean_answer = ("FailedRecordCount", "Records")

    def __init__(
        self,
        config: KinesisSinkConfig | None = None,
        *,
        stream_name: str | None = None,
        stream_arn: str | None = None,
        partition_key_column: str | None = None,
        partition_key: Callable[[pa.RecordBatch], Any] | None = None,
        explicit_hash_key_column: str | None = None,
        format: Format | None = None,
        batching: BatchingConfig = KINESIS_BATCHING,
        aws: AwsConfig | Mapping[str, Any] | None = None,
        client: Any = None,
        error_policy: ErrorPolicyLike = "fail",
        name: str | None = None,
        **deprecated: Any,
    ) -> None:
        config = resolve_config(KinesisSinkConfig, config, locals(), **deprecated)
        super().__init__(config, aws=aws, client=client, error_policy=error_policy, name=name)
        self.format = config.format if config.format is not None else Json()
        head = json.dumps(config.target, separators=(",", ":"))[:-1]
        self._prefix = (head + ',"Records":[').encode()
        self._suffix = b"]}"

    # -- AsyncBatchWriter hooks ----------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> pa.StructArray | Encoded:
        from ..._ext.json_encode import encode_rows

        cfg = self.config
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
        response = self._send(
            self._body(entries), Records=[{"Data": b"", "PartitionKey": "_"}], **self.config.target
        )
        return record_outcomes(
            response,
            len(entries),
            _RETRYABLE_RECORD_CODES,
            records_key="Records",
            failed_key="FailedRecordCount",
        )
