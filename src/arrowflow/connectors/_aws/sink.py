"""The plumbing the AWS sinks share: their boto3 client, made on first use, and the raw JSON call
that sends a request body built from pre-encoded entries."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import ConfigAttributes, check_type
from ...error_policy import ErrorPolicyLike
from ...writer import AsyncBatchWriter, BatchingConfig, check_batching_limits
from .common import contiguous_bytes
from .config import AwsConfig, RawJsonCall, is_retryable_aws_error

__all__ = ["AWS_LEGACY_BATCHING", "ApiLimits", "AwsSink", "put_batching"]

#: 0.1.0's request and retry options of the AWS sinks (now in ``batching``).
AWS_LEGACY_BATCHING = (
    "max_records_per_request",
    "max_request_bytes",
    "max_record_bytes",
    "max_in_flight",
    "max_buffered_rows",
    "flush_interval",
    "max_retries",
    "initial_backoff",
    "max_backoff",
)


@dataclass(frozen=True)
class ApiLimits:
    """The hard limits of a batch-write API (``api`` names it in errors): stated once, used for the
    sink's default batching and to check a configured one."""

    api: str
    max_request_rows: int
    max_request_bytes: int
    max_record_bytes: int

    @property
    def sizes(self) -> dict[str, int]:
        """The limits as :class:`~arrowflow.writer.BatchingConfig` fields."""
        return {
            "max_request_rows": self.max_request_rows,
            "max_request_bytes": self.max_request_bytes,
            "max_record_bytes": self.max_record_bytes,
        }

    def apply(self, config: Any) -> None:
        """For a frozen sink configuration's ``__post_init__``: ``config.batching`` must be a
        ``BatchingConfig`` within the limits (:func:`~arrowflow.writer.check_batching_limits`; a
        byte limit left ``None`` becomes the API's); the checked value is stored back."""
        check_type("batching", config.batching, BatchingConfig)
        limited = check_batching_limits(config.batching, api=self.api, **self.sizes)
        object.__setattr__(config, "batching", limited)


def put_batching(limits: ApiLimits) -> BatchingConfig:
    """The batching of a batch-put sink (PutRecords, PutRecordBatch) unless configured: the API's
    limits, 4 requests in flight, 20,000 rows buffered, 1 s in the buffer, up to 11 attempts with
    0.1 s -> 5 s backoff."""
    return BatchingConfig(
        **limits.sizes, max_buffered_rows=20_000, max_time_in_buffer=1.0, initial_backoff=0.1, max_attempts=11
    )


class _SinkConfig(Protocol):
    @property
    def batching(self) -> BatchingConfig: ...


C = TypeVar("C", bound=_SinkConfig)


class AwsSink(ConfigAttributes, AsyncBatchWriter, Generic[C]):
    """An :class:`AsyncBatchWriter` sending one boto3 ``operation`` of ``service`` per request.

    ``config`` is the sink's own configuration; ``aws`` the boto3 options (:class:`AwsConfig` or a
    dict of its fields); ``client`` an existing boto3 client (not closed by the sink; its own
    retries should be off), else one is made on first use with a pool of ``max_in_flight``
    connections. A request body is ``_prefix`` + the entries' ``json`` (each ending with a comma,
    the last one dropped) + ``_suffix``; :meth:`entry_sizes` reads the entries' ``size`` field
    unless a subclass counts otherwise. Every error :func:`is_retryable_aws_error` accepts is
    retried.

    A request that failed on its connection (botocore's connection errors: reset, refused, no
    answer within ``botocore_config``'s ``read_timeout`` / ``connect_timeout``) leaves that
    connection closed, and the retry opens a new one: :meth:`metrics` counts them as
    ``reconnects``, and those that timed out also as ``timeouts`` (a silent endpoint is noticed by
    the timeout instead of hanging the pipeline; botocore's default is 60 s).
    """

    service: ClassVar[str]
    operation: ClassVar[str]
    #: ``(failed count key, per-record results key)`` of the operation's answer, when it has them:
    #: answers without failures skip botocore's parsing of the results (see :class:`RawJsonCall`).
    lean_answer: ClassVar[tuple[str, str] | None] = None

    def __init__(
        self,
        config: C,
        *,
        aws: AwsConfig | Mapping[str, Any] | None,
        client: Any,
        error_policy: ErrorPolicyLike,
        name: str | None,
    ) -> None:
        super().__init__(config.batching, error_policy=error_policy, name=name)
        self.config = config
        self.aws = AwsConfig.coerce(aws)
        self._client = client
        self._client_lock = threading.Lock()
        self._raw: RawJsonCall | None = None
        self._prefix = b""
        self._suffix = b""
        self._drops = {"reconnects": 0, "timeouts": 0}

    @property
    def sink_config(self) -> C:
        """0.1.0's name of :attr:`config`."""
        return self.config  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r}, aws={self.aws!r})"

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = self.aws.client(self.service, max_pool_connections=self.batching.max_in_flight)
        return self._client

    @property
    def client(self) -> Any:
        """The boto3 client of the sink's service (created on first use)."""
        with self._client_lock:
            return self._get_client()

    def _raw_call(self) -> RawJsonCall:
        with self._client_lock:
            if self._raw is None:
                self._raw = RawJsonCall(self._get_client(), self.operation, lean_answer=self.lean_answer)
            return self._raw

    def _send(self, body: bytes, **dummy_params: Any) -> Any:
        """One request with ``body`` (:class:`RawJsonCall`), counting a lost connection."""
        try:
            return self._raw_call().call(body, **dummy_params)
        except Exception as exc:
            from botocore import exceptions as bx

            # botocore wraps the transport's failures into HTTPClientError (reset, closed, read
            # timeout) and ConnectionError (refused, connect timeout).
            if isinstance(exc, (bx.HTTPClientError, bx.ConnectionError, OSError)):
                with self._client_lock:
                    self._drops["reconnects"] += 1
                    if isinstance(exc, (bx.ReadTimeoutError, bx.ConnectTimeoutError, TimeoutError)):
                        self._drops["timeouts"] += 1
            raise

    def metrics(self) -> dict[str, int]:
        """:meth:`AsyncBatchWriter.metrics` plus ``reconnects`` and ``timeouts`` (see the class
        docstring)."""
        out = super().metrics()
        with self._client_lock:
            out.update(self._drops)
        return out

    def entry_sizes(self, entries: pa.StructArray) -> np.ndarray:
        """The entries' ``size`` field: the bytes the service counts per record."""
        return np.asarray(pc.struct_field(entries, "size").to_numpy(zero_copy_only=False), dtype=np.int64)

    def _body(self, entries: pa.StructArray) -> bytes:
        """The request body holding ``entries``."""
        return self._prefix + contiguous_bytes(pc.struct_field(entries, "json"), trim=1) + self._suffix

    def classify(self, exc: BaseException) -> bool:
        return is_retryable_aws_error(exc)
