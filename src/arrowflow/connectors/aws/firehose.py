"""Kinesis Data Firehose: :class:`FirehoseSink` (PutRecordBatch).

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import check_type
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError
from ...formats import Format, Json
from ...writer import BatchingConfig, Encoded, SubmitResult
from ._common import binary_payloads, check_sink_limits, record_outcomes, resolve_config, sink_batching
from ._sink import AwsSink
from .config import THROTTLING_CODES, AwsConfig

__all__ = ["FirehoseSink", "FirehoseSinkConfig"]

_RETRYABLE_RECORD_CODES = frozenset({"ServiceUnavailableException", "InternalFailure"}) | THROTTLING_CODES


@dataclass(frozen=True, kw_only=True)
class FirehoseSinkConfig:
    """Options of :class:`FirehoseSink`: ``delivery_stream_name``, ``newline_delimited`` and the
    request limits / retries (defaults: the PutRecordBatch limits)."""

    delivery_stream_name: str
    newline_delimited: bool = True
    max_records_per_request: int = 500
    max_request_bytes: int = 4 * 1024 * 1024
    max_record_bytes: int = 1000 * 1024
    max_in_flight: int = 4
    max_buffered_rows: int = 20_000
    flush_interval: float | None = 1.0
    max_retries: int = 10
    initial_backoff: float = 0.1
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        check_type("delivery_stream_name", self.delivery_stream_name, str)
        if not self.delivery_stream_name:
            raise ConfigurationError("delivery_stream_name must not be empty", option="delivery_stream_name")
        check_type("newline_delimited", self.newline_delimited, bool)
        check_sink_limits(
            self,
            count_option="max_records_per_request",
            count_limit=500,
            size_option="max_record_bytes",
            api="PutRecordBatch",
        )

    def batching(self) -> BatchingConfig:
        return sink_batching(
            self, max_request_rows=self.max_records_per_request, max_record_bytes=self.max_record_bytes
        )


class FirehoseSink(AwsSink[FirehoseSinkConfig]):
    """Writes batches to a Firehose delivery stream with PutRecordBatch (see the module docstring)."""

    name = "firehose"
    service = "firehose"
    operation = "put_record_batch"
    lean_answer = ("FailedPutCount", "RequestResponses")

    def __init__(
        self,
        config: FirehoseSinkConfig | None = None,
        *,
        format: Format | None = None,
        aws: AwsConfig | Mapping[str, Any] | None = None,
        client: Any = None,
        error_policy: ErrorPolicyLike = "fail",
        name: str | None = None,
        **options: Any,
    ) -> None:
        config = resolve_config(FirehoseSinkConfig, config, options)
        super().__init__(config, aws=aws, client=client, error_policy=error_policy, name=name)
        self.format = format if format is not None else Json()
        check_type("format", self.format, Format)
        self._prefix = (
            '{"DeliveryStreamName":' + json.dumps(config.delivery_stream_name) + ',"Records":['
        ).encode()
        self._suffix = b"]}"

    def encode(self, batch: pa.RecordBatch) -> pa.StructArray | Encoded:
        from ..._ext.json import encode_rows

        encoded = self.format.encode(batch)
        payloads = binary_payloads(encoded)
        failed = np.asarray(encoded.failed, dtype=np.int64)
        if len(failed):
            keep = np.ones(batch.num_rows, dtype=bool)
            keep[failed] = False
            payloads = payloads.filter(pa.array(keep))
        if self.sink_config.newline_delimited:
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
        response = self._raw_call().call(
            self._body(entries),
            DeliveryStreamName=self.sink_config.delivery_stream_name,
            Records=[{"Data": b""}],
        )
        return record_outcomes(
            response,
            len(entries),
            _RETRYABLE_RECORD_CODES,
            records_key="RequestResponses",
            failed_key="FailedPutCount",
        )
