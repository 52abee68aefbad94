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
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import check_positive, check_type
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError
from ...formats import Format, Json
from ...writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult
from ._common import contiguous_bytes
from .config import THROTTLING_CODES, AwsConfig, RawJsonCall, is_retryable_aws_error
from .kinesis import record_outcomes

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
        for name in (
            "max_records_per_request",
            "max_request_bytes",
            "max_record_bytes",
            "max_in_flight",
            "max_buffered_rows",
        ):
            check_type(name, getattr(self, name), int)
            check_positive(name, getattr(self, name))
        if self.max_records_per_request > 500:
            raise ConfigurationError(
                "max_records_per_request must be <= 500 (PutRecordBatch limit)",
                option="max_records_per_request",
            )
        check_type("max_retries", self.max_retries, int)
        if self.max_retries < 0:
            raise ConfigurationError("max_retries must be >= 0", option="max_retries")
        check_positive("flush_interval", self.flush_interval, allow_none=True)
        check_positive("initial_backoff", self.initial_backoff)
        check_positive("max_backoff", self.max_backoff)

    def batching(self) -> BatchingConfig:
        return BatchingConfig(
            max_request_rows=self.max_records_per_request,
            max_request_bytes=self.max_request_bytes,
            max_record_bytes=min(self.max_record_bytes, self.max_request_bytes),
            max_in_flight=self.max_in_flight,
            max_buffered_rows=self.max_buffered_rows,
            max_time_in_buffer=self.flush_interval,
            initial_backoff=self.initial_backoff,
            max_backoff=max(self.max_backoff, self.initial_backoff),
            max_attempts=self.max_retries + 1,
        )


class FirehoseSink(AsyncBatchWriter):
    """Writes batches to a Firehose delivery stream with PutRecordBatch (see the module docstring)."""

    name = "firehose"

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
        if config is None:
            config = FirehoseSinkConfig(**options)
        elif options:
            raise ConfigurationError("give either config or individual options", option="config")
        check_type("config", config, FirehoseSinkConfig)
        super().__init__(config.batching(), error_policy=error_policy, name=name)
        self.sink_config = config
        self.format = format if format is not None else Json()
        check_type("format", self.format, Format)
        self.aws = AwsConfig.coerce(aws)
        self._client = client
        self._client_lock = threading.Lock()
        self._raw: RawJsonCall | None = None
        self._prefix = (
            '{"DeliveryStreamName":' + json.dumps(config.delivery_stream_name) + ',"Records":['
        ).encode()
        self._suffix = b"]}"

    def __repr__(self) -> str:
        return f"FirehoseSink(config={self.sink_config!r}, aws={self.aws!r})"

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = self.aws.client("firehose", max_pool_connections=self.config.max_in_flight)
        return self._client

    @property
    def client(self) -> Any:
        """The boto3 Firehose client (created on first use)."""
        with self._client_lock:
            return self._get_client()

    def _raw_call(self) -> RawJsonCall:
        with self._client_lock:
            if self._raw is None:
                self._raw = RawJsonCall(self._get_client(), "put_record_batch")
            return self._raw

    def encode(self, batch: pa.RecordBatch) -> pa.StructArray | Encoded:
        from ..._ext.json import encode_rows

        encoded = self.format.encode(batch)
        payloads = encoded.payloads
        if isinstance(payloads, pa.ChunkedArray):
            payloads = payloads.combine_chunks()
        if not pa.types.is_binary(payloads.type):
            payloads = pc.cast(payloads, pa.binary())
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

    def entry_sizes(self, entries: pa.StructArray) -> np.ndarray:
        return np.asarray(pc.struct_field(entries, "size").to_numpy(zero_copy_only=False), dtype=np.int64)

    def submit(self, entries: pa.StructArray) -> SubmitResult | None:
        n = len(entries)
        body = self._prefix + contiguous_bytes(pc.struct_field(entries, "json"), trim=1) + self._suffix
        response = self._raw_call().call(
            body, DeliveryStreamName=self.sink_config.delivery_stream_name, Records=[{"Data": b""}]
        )
        return record_outcomes(
            response, n, _RETRYABLE_RECORD_CODES, records_key="RequestResponses", failed_key="FailedPutCount"
        )

    def classify(self, exc: BaseException) -> bool:
        return is_retryable_aws_error(exc)
