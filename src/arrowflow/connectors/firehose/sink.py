"""Kinesis Data Firehose sink: PutRecordBatch.

Contract (on :class:`~arrowflow.writer.AsyncBatchWriter`):

* ``write(batch)`` encodes the rows with a format (default JSON, the compiled kernel); with
  ``newline_delimited=True`` (default) each record ends with ``\\n`` so the objects Firehose
  concatenates into S3 are NDJSON. Each record's wire JSON (``{"Data":"<base64>"}``) is built by
  the JSON kernel: no Python object per row.
* Requests hold at most 500 records and 4 MiB; a record over 1000 KiB goes to the error policy
  (as do rows the format cannot encode).
* ``FailedPutCount > 0``: only the failed records are re-sent, with full-jitter backoff, when their
  error is ``ServiceUnavailableException`` / ``InternalFailure`` / throttling; other per-record
  errors go to the error policy. Throttled or failed whole requests are retried.
* Guarantee: at-least-once (``flush()`` at each checkpoint); Firehose may itself duplicate records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import REQUIRED, resolve_config
from ...error_policy import ErrorPolicyLike
from ...formats import Format, Json
from ...writer import BatchingConfig, Encoded, SubmitResult
from .._aws.common import binary_payloads, record_outcomes
from .._aws.config import THROTTLING_CODES, AwsConfig
from .._aws.sink import AwsSink
from .config import FIREHOSE_BATCHING, FirehoseSinkConfig

__all__ = ["FirehoseSink"]

_RETRYABLE_RECORD_CODES = frozenset({"ServiceUnavailableException", "InternalFailure"}) | THROTTLING_CODES


class FirehoseSink(AwsSink[FirehoseSinkConfig]):
    """Writes batches to a Firehose delivery stream with PutRecordBatch (see the module docstring).

    ``aws`` holds the boto3 options (:class:`~arrowflow.connectors.aws.AwsConfig` or a dict of its
    fields); ``client`` is an existing boto3 Firehose client.
    """

    name = "firehose"
    service = "firehose"
    operation = "put_record_batch"
    lean_answer = ("FailedPutCount", "RequestResponses")

    def __init__(
        self,
        config: FirehoseSinkConfig | None = None,
        *,
        delivery_stream_name: str = REQUIRED,
        newline_delimited: bool = True,
        format: Format | None = None,
        batching: BatchingConfig = FIREHOSE_BATCHING,
        aws: AwsConfig | Mapping[str, Any] | None = None,
        client: Any = None,
        error_policy: ErrorPolicyLike = "fail",
        name: str | None = None,
        **deprecated: Any,
    ) -> None:
        config = resolve_config(FirehoseSinkConfig, config, locals(), **deprecated)
        super().__init__(config, aws=aws, client=client, error_policy=error_policy, name=name)
        self.format = config.format if config.format is not None else Json()
        self._prefix = (
            '{"DeliveryStreamName":' + json.dumps(config.delivery_stream_name) + ',"Records":['
        ).encode()
        self._suffix = b"]}"

    def encode(self, batch: pa.RecordBatch) -> pa.StructArray | Encoded:
        from ..._ext.json_encode import encode_rows

        encoded = self.format.encode(batch)
        payloads = binary_payloads(encoded)
        failed = np.asarray(encoded.failed, dtype=np.int64)
        if len(failed):
            keep = np.ones(batch.num_rows, dtype=bool)
            keep[failed] = False
            payloads = payloads.filter(pa.array(keep))
        if self.config.newline_delimited:
            payloads = pc.binary_join_element_wise(payloads, pa.scalar(b"\n"), pa.scalar(b""))
        records = pa.record_batch({"Data": payloads})
        entries = encode_rows(records, terminator=b",")  # the comma separates the array members
        sizes = pc.binary_length(payloads).cast(pa.int64())
        out = pa.StructArray.from_arrays([entries, sizes], names=["json", "size"])
        if len(failed):
            return Encoded(
                entries=out, failed=failed, errors=list(encoded.errors) or "format encoding failed"
            )
        return out

    def submit(self, entries: pa.StructArray) -> SubmitResult | None:
        response = self._send(
            self._body(entries),
            DeliveryStreamName=self.config.delivery_stream_name,
            Records=[{"Data": b""}],
        )
        return record_outcomes(
            response,
            len(entries),
            _RETRYABLE_RECORD_CODES,
            records_key="RequestResponses",
            failed_key="FailedPutCount",
        )
