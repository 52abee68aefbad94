"""Prometheus remote-write sink (Flink's Prometheus connector): batches of samples -> ``WriteRequest``.

A row is one sample: a metric name (a column or a constant), labels (string columns, a
``map<string, string>`` column and constant labels), a float value and a timestamp (a timestamp
column of any unit, or integer milliseconds). :class:`PrometheusSink` is an
:class:`~arrowflow.writer.AsyncBatchWriter` whose entries are samples:

* ``write(batch)`` sorts the batch by timestamp (stable, vectorized), then the compiled kernel
  :mod:`arrowflow._ext.remote_write` encodes every row's labels (sorted by name, empty values
  dropped, names validated). Rows without a metric name, with an invalid or duplicate label name, or
  with a null value/timestamp go to the error policy and are never sent.
* Each request (``max_request_rows`` samples, default 500, or a partial one after
  ``max_time_in_buffer``) groups its samples per series (``dictionary_encode`` of the encoded labels),
  orders them by timestamp within a series (numpy ``lexsort``), encodes one remote-write 1.0
  ``WriteRequest`` in the kernel, compresses it with snappy (``cramjam``, raw block format) and POSTs
  it with the remote-write headers over a keep-alive ``http.client`` connection per worker thread.

Ordering: Prometheus rejects a sample older than the newest one of its series (unless the server has
an out-of-order window). The sink orders samples within a batch; across batches, ordering is the
user's job (key the stream so that a series' samples arrive in time order), as in Flink. The default
``max_in_flight=1`` keeps requests in order.

Responses (as Flink's sink classifies them):

* 2xx: written.
* 429 and 5xx, and network errors: retried with exponential backoff and full jitter (30 ms -> 5 s,
  ``max_attempts`` 10 by default); when retries run out the samples go to the error policy
  (``"fail"`` stops the pipeline; ``"skip"`` = Flink's discard-and-continue, counted; or a
  dead-letter sink).
* 400: the request is malformed or holds rejected samples (out of order, duplicate): it is discarded
  and counted (``requests_rejected`` / ``samples_rejected`` in :meth:`metrics`, a rate-limited
  warning) and the sink goes on. Not retried: resending would fail the same way.
* 401, 403, 404 and any other status: fatal. The samples go to the error policy and the error is
  raised by the next ``write()``/``flush()`` whatever the policy (the endpoint or credentials are
  wrong; continuing would discard everything).

Guarantee: at-least-once (a request retried after a lost response may be written twice; Prometheus
ignores an identical duplicate sample).
Auth: ``signer`` is called with the headers dict and the compressed body of every attempt and may
add headers (:class:`BasicAuth`, :class:`BearerToken`, or any callable, e.g. SigV4).
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..._ext import load
from ...config import REQUIRED, ConfigAttributes, resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError, SerializationError
from ...writer import AsyncBatchWriter, BatchingConfig, Encoded, Entries, SubmitResult, batch_column
from .config import PROMETHEUS_BATCHING, PrometheusSinkConfig, RequestSigner

log = logging.getLogger("arrowflow.prometheus")

_ENTRY_FIELDS = ("labels", "value", "timestamp")
# Per-sample protobuf overhead beyond its labels: Sample tag+len, double, tag + varint timestamp.
_SAMPLE_BYTES = 18


class _HttpStatus(ConnectorError):
    def __init__(self, status: int, body: bytes) -> None:
        text = body[:500].decode("utf-8", "replace").strip()
        super().__init__(f"HTTP {status}: {text}", retryable=status == 429 or status >= 500)
        self.status = status


#: The constructor's default of a mapping option (read-only: one object serves every sink).
_NONE: Mapping[str, str] = MappingProxyType({})


class PrometheusSink(ConfigAttributes, AsyncBatchWriter):
    """Writes samples to a Prometheus remote-write endpoint. See the module docstring."""

    name = "prometheus"

    def __init__(
        self,
        config: PrometheusSinkConfig | None = None,
        *,
        url: str = REQUIRED,
        metric_name: str | None = None,
        metric_column: str | None = None,
        label_columns: Sequence[str] | Mapping[str, str] = (),
        labels_column: str | None = None,
        static_labels: Mapping[str, str] = _NONE,
        value_column: str = "value",
        timestamp_column: str = "timestamp",
        batching: BatchingConfig = PROMETHEUS_BATCHING,
        request_timeout: float = 10.0,
        signer: RequestSigner | None = None,
        headers: Mapping[str, str] = _NONE,
        sort_by_timestamp: bool = True,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        config = resolve_config(PrometheusSinkConfig, config, locals())
        super().__init__(config.batching, error_policy=error_policy, name="prometheus")
        self.config = config
        self._kernel = load("remote_write")
        try:
            import cramjam
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("PrometheusSink needs cramjam: pip install 'arrowflow[prometheus]'") from exc
        self._snappy = cramjam.snappy
        parsed = urllib.parse.urlsplit(config.url)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or ""
        self._port = parsed.port
        self._path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()
        self._labels_spec: list[tuple[bytes, str | bytes]] = []
        if config.metric_name is not None:
            self._labels_spec.append((b"__name__", config.metric_name.encode()))
        else:
            assert config.metric_column is not None
            self._labels_spec.append((b"__name__", config.metric_column))
        for label, column in config.label_map.items():
            self._labels_spec.append((label.encode(), column))
        for label, value in config.static_labels.items():
            self._labels_spec.append((label.encode(), value.encode()))
        self._rejected = {"requests_rejected": 0, "samples_rejected": 0}
        self._last_warning = 0.0

    # ------------------------------------------------------------------ encode (writing thread)

    @property
    def settings(self) -> PrometheusSinkConfig:
        """0.1.0's name of :attr:`config`."""
        return self.config  # type: ignore[no-any-return]

    def write(self, batch: pa.RecordBatch) -> None:
        """Sort ``batch`` by timestamp (stable) and buffer its samples; see AsyncBatchWriter.write."""
        super().write(self.sort_batch(batch))

    def sort_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` in timestamp order (stable); returned as is when already ordered or disabled."""
        if not self.config.sort_by_timestamp or batch.num_rows < 2:
            return batch
        ts = self._column(batch, self.config.timestamp_column)
        if ts.null_count == 0 and (pa.types.is_integer(ts.type) or pa.types.is_timestamp(ts.type)):
            raw = np.asarray(ts.cast(pa.int64()) if pa.types.is_timestamp(ts.type) else ts)
            if bool((raw[1:] >= raw[:-1]).all()):
                return batch
        return batch.take(pc.sort_indices(ts))  # stable; nulls last (they fail in encode)

    @staticmethod
    def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
        return batch_column(batch, name, who="prometheus")

    def _timestamps_ms(self, batch: pa.RecordBatch) -> pa.Array:
        ts = self._column(batch, self.config.timestamp_column)
        t = ts.type
        if pa.types.is_timestamp(t):
            # Truncates sub-millisecond precision: remote write carries milliseconds.
            return pc.cast(pc.cast(ts, pa.timestamp("ms", t.tz), safe=False), pa.int64())
        if pa.types.is_integer(t):
            return pc.cast(ts, pa.int64())
        raise SerializationError(
            f"prometheus: {self.config.timestamp_column!r} must be a timestamp or integer "
            f"milliseconds, got {t}"
        )

    def encode(self, batch: pa.RecordBatch) -> Entries | Encoded:
        """One entry per sample: ``struct<labels: dictionary<int32, large_binary>, value, timestamp>``.

        The labels of a sample are an index into the encoded series of its batch. Without a
        ``labels_column`` the series are found first (each label column dictionary-encoded, the
        codes combined into one integer key, hashed) and only one row per series goes through the
        label kernel; with a map column every row is encoded, then dictionary-encoded.
        """
        n = batch.num_rows
        columns: list[tuple[bytes, Any]] = []
        for label, source in self._labels_spec:
            columns.append((label, source if isinstance(source, bytes) else self._column(batch, source)))
        raw_value = self._column(batch, self.config.value_column)
        if not (pa.types.is_integer(raw_value.type) or pa.types.is_floating(raw_value.type)):
            raise SerializationError(
                f"prometheus: {self.config.value_column!r} must be numeric, got {raw_value.type}"
            )
        values = pc.cast(raw_value, pa.float64())
        stamps = self._timestamps_ms(batch)
        try:
            series = self._series_ids(n, columns) if self.config.labels_column is None else None
            if series is not None:
                ids, first = series
                reps = [(k, v if isinstance(v, bytes) else v.take(first)) for k, v in columns]
                table, series_errs, _ = self._kernel.encode_labels(len(first), reps)
                errs = series_errs[ids]
                labels = pa.DictionaryArray.from_arrays(pa.array(ids, pa.int32()), table)
            else:
                label_map = self._column(batch, self.config.labels_column or "")
                per_row, errs, _ = self._kernel.encode_labels(n, columns, label_map)
                labels = pc.dictionary_encode(per_row)
        except TypeError as exc:
            raise SerializationError(f"prometheus: {exc}") from exc
        invalid = errs != 0
        if values.null_count or stamps.null_count:
            nulls = np.asarray(pc.or_(pc.is_null(values), pc.is_null(stamps)))
            errs = np.where(nulls & ~invalid, np.int8(-1), errs)
            invalid = invalid | nulls
        entries = pa.StructArray.from_arrays(
            [labels, values.fill_null(0.0), stamps.fill_null(0)], names=list(_ENTRY_FIELDS)
        )
        if not invalid.any():
            return entries
        failed = np.flatnonzero(invalid)
        messages = dict(self._kernel.ERRORS)
        messages[-1] = "null value or timestamp"
        errors = [messages[int(code)] for code in errs[failed]]  # error path only
        return Encoded(entries.filter(pa.array(~invalid)), failed, errors)

    @staticmethod
    def _series_ids(n: int, columns: list[tuple[bytes, Any]]) -> tuple[np.ndarray, np.ndarray] | None:
        """``(series id per row, first row of each series)``, or None if the key would overflow."""
        key = np.zeros(n, dtype=np.int64)
        radix = 1
        for _, values in columns:
            if isinstance(values, bytes):
                continue
            encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
            codes = np.asarray(encoded.indices.fill_null(-1), dtype=np.int64) + 1  # 0 = null
            size = len(encoded.dictionary) + 1
            if radix * size >= 2**62:
                return None
            key += codes * radix
            radix *= size
        if radix == 1:
            return np.zeros(n, dtype=np.int64), np.zeros(1 if n else 0, dtype=np.int64)
        unique = pc.dictionary_encode(pa.array(key))
        ids = np.asarray(unique.indices, dtype=np.int64)
        first = np.empty(len(unique.dictionary), dtype=np.int64)
        # Reversed fancy assignment: the last write wins, so each series keeps its first row.
        first[ids[::-1]] = np.arange(n - 1, -1, -1, dtype=np.int64)
        return ids, first

    def entry_sizes(self, entries: Entries) -> np.ndarray:
        """Encoded labels plus the per-sample protobuf bytes (an upper bound of its share)."""
        labels = entries.field(0)
        table = labels.dictionary
        offsets = np.frombuffer(table.buffers()[1], dtype=np.int64, count=table.offset + len(table) + 1)
        lengths = np.diff(offsets[table.offset :])
        return lengths[np.asarray(labels.indices, dtype=np.int64)] + _SAMPLE_BYTES

    # ------------------------------------------------------------------ submit (worker threads)

    def encode_request(self, entries: Entries) -> bytes:
        """The uncompressed ``WriteRequest`` of ``entries``: series grouped, samples by timestamp."""
        labels = entries.field(0)
        ids = np.asarray(labels.indices, dtype=np.int64)
        stamps = np.asarray(entries.field(2))
        table = labels.dictionary
        if len(stamps) < 2 or (stamps[1:] >= stamps[:-1]).all():
            # Already in time order (write() sorts each batch): a stable sort by series suffices,
            # and numpy's stable sort of int16 keys is a linear radix sort.
            keys = ids.astype(np.int16) if len(table) < 2**15 else ids
            order = np.argsort(keys, kind="stable")
        else:
            order = np.lexsort((stamps, ids))
        return self._kernel.encode_write_request(table, ids, np.asarray(entries.field(1)), stamps, order)

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.config.request_timeout)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def submit(self, entries: Entries) -> SubmitResult | None:
        """POST one snappy-compressed WriteRequest; classify the answer (see the module docstring)."""
        body = bytes(self._snappy.compress_raw(self.encode_request(entries)))
        headers: dict[str, str] = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
            "User-Agent": "arrowflow-prometheus",
            **self.config.headers,
        }
        if self.config.signer is not None:
            self.config.signer(headers, body)
        conn = self._connection()
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise ConnectorError(f"prometheus: {type(exc).__name__}: {exc}", retryable=True) from exc
        status = response.status
        if response.will_close:
            self._drop_connection()
        if 200 <= status < 300:
            return None
        error = _HttpStatus(status, answer)
        if status == 400:
            self._count_rejected(len(entries), error)
            return None
        if not error.retryable:
            # The endpoint or credentials are wrong: stop whatever the error policy says.
            self._record_error(error)
        raise error

    def _count_rejected(self, samples: int, error: ConnectorError) -> None:
        with self._lock:
            self._rejected["requests_rejected"] += 1
            self._rejected["samples_rejected"] += samples
            total = self._rejected["samples_rejected"]
            now = time.monotonic()
            warn = now - self._last_warning >= 5.0
            if warn:
                self._last_warning = now
        if warn:
            log.warning("prometheus: request of %d samples rejected (%d so far): %s", samples, total, error)

    def metrics(self) -> dict[str, int]:
        """AsyncBatchWriter counters plus ``requests_rejected`` / ``samples_rejected`` (HTTP 400).

        ``rows_written`` counts samples in acknowledged requests, including rejected ones.
        """
        out = super().metrics()
        with self._lock:
            out.update(self._rejected)
        return out

    def _close(self) -> None:
        super()._close()
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
