"""``AsyncBatchWriter``: batching, concurrency and retries for every request-based sink.

This is Flink's ``AsyncSinkWriter``, vectorized. A connector (Kinesis, Firehose, DynamoDB,
Elasticsearch/OpenSearch, Prometheus, Pub/Sub, HTTP, ...) subclasses :class:`AsyncBatchWriter` and
writes only:

* :meth:`~AsyncBatchWriter.encode` ``(batch) -> entries``: one request entry per row, vectorized
  (usually an ``arrowflow._ext`` kernel returning a ``pa.BinaryArray``). *Entries* are any
  sequence-like object with ``len()`` and ``take(indices)``; Arrow arrays, numpy arrays and lists are
  handled out of the box, anything else overrides :meth:`~AsyncBatchWriter.slice_entries`,
  :meth:`~AsyncBatchWriter.take_entries` and :meth:`~AsyncBatchWriter.concat_entries`. Rows that
  cannot be encoded are reported by returning :class:`Encoded` (entries for the good rows plus the
  indices and errors of the bad ones), or by raising :class:`~arrowflow.errors.SerializationError`
  for the whole batch. Either way those rows go to the error policy.
* :meth:`~AsyncBatchWriter.entry_sizes` ``(entries) -> int64 array``: the byte size of each entry, as
  the remote system counts it. The default reads a binary/string array's offsets (no per-row Python).
* :meth:`~AsyncBatchWriter.submit` ``(entries) -> SubmitResult``: send ONE request, blocking (it runs
  in a worker thread), and report which entries failed, why, and whether each may be retried. A
  failure of the whole request is an exception; :meth:`~AsyncBatchWriter.classify` says whether it is
  retryable (default: :func:`arrowflow.retry.default_classify`).

What the writer does (limits in :class:`BatchingConfig`):

* ``write(batch)`` encodes the batch in the calling thread, rejects entries larger than
  ``max_record_bytes`` to the error policy (they are never sent), and appends the rest to the buffer
  as one chunk (entries + rows + sizes; no per-row objects). It **blocks** while the buffer holds
  ``max_buffered_rows`` rows or more (backpressure), until requests drain it. A batch is accepted
  whole, so the buffer may exceed the limit by one batch.
* A dispatcher thread cuts requests off the front of the buffer: at most ``max_request_rows``
  entries and ``max_request_bytes`` bytes each (greedy, with numpy ``cumsum``/``searchsorted`` over
  the sizes; a request may span several chunks). It sends a request when a full one is available,
  when the oldest buffered entry has waited ``max_time_in_buffer`` seconds, or while a ``flush()`` or
  ``close()`` is waiting; and only while fewer than ``max_in_flight`` requests are in flight.
* Each request runs in one of ``max_in_flight`` worker threads. Entries the remote system rejected
  as retryable (or all of them, when ``submit`` raised a retryable error) are re-sent, and only
  they, after an exponential backoff with full jitter, until they succeed, ``max_attempts`` is
  reached or ``max_retry_time`` would be exceeded. A request holds its in-flight slot while it backs
  off, which throttles the writer while the remote system is overloaded.
* Entries that fail fatally or run out of retries are mapped back to their original rows and handed
  to the error policy with their error text: ``"skip"`` counts them, a dead-letter sink receives the
  rows plus an ``error`` column, ``"fail"`` records the error. A recorded error is raised by every
  later ``write()`` and ``flush()`` (the writer keeps draining what it already accepted, so no thread
  is left running). Errors found inside ``write()`` itself (encoding, too-large records) are applied
  synchronously, so under ``"fail"`` that ``write()`` raises and keeps none of the batch.
* ``reset()`` (a pipeline restarting in-process after a failure) drops the entries not yet sent and
  a recorded error: the pipeline rewrites those rows from its last checkpoint.
* ``flush()`` blocks until every entry written so far is acknowledged or handed to the error policy,
  then flushes the dead-letter sink, then raises a recorded error, if any. ``close()`` flushes and
  stops the threads; it is idempotent, and a closed writer refuses ``write()``.

Ordering: requests leave in buffer order, but with ``max_in_flight > 1`` they complete in any order.
With ``max_in_flight == 1`` a request is finished (acknowledged, retried to the end, or given to the
policy) before the next one is sent, so entries reach the remote system in write order, except that
retried entries of a request arrive after the entries of that request that succeeded at once.

Threads are daemons and start on the first ``write()``; a writer that is never closed does not keep
the interpreter alive (and loses whatever it had buffered, like any process that dies unflushed).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import caller_stacklevel, check_choice, check_positive, check_type, deprecated_keywords
from .error_policy import ErrorPolicy, ErrorPolicyLike
from .errors import ArrowflowError, ConfigurationError, ConnectorError, SerializationError
from .retry import Retry, default_classify
from .sink import Sink

__all__ = [
    "LEGACY_BATCHING",
    "AsyncBatchWriter",
    "BatchingConfig",
    "Encoded",
    "Entries",
    "SubmitResult",
    "batch_column",
    "check_batching_limits",
    "legacy_batching",
]

C = TypeVar("C")

#: Request entries: one per row, sequence-like (``len()`` and ``take(indices)``).
Entries = Any

_EMPTY_INDEX = np.empty(0, dtype=np.int64)
_EMPTY_INDEX.flags.writeable = False
_UNSET = object()


@dataclass(frozen=True, kw_only=True)
class BatchingConfig:
    """Limits and retry settings of an :class:`AsyncBatchWriter`.

    * ``max_request_rows``: entries per request.
    * ``max_request_bytes``: bytes per request (sum of :meth:`AsyncBatchWriter.entry_sizes`);
      ``None`` = no limit.
    * ``max_record_bytes``: an entry larger than this is never sent; its row goes to the error
      policy. Defaults to ``max_request_bytes`` (an entry must fit into a request).
    * ``max_in_flight``: concurrent requests (the size of the worker pool).
    * ``max_buffered_rows``: ``write()`` blocks while this many rows wait to be sent.
    * ``max_time_in_buffer``: seconds an entry may wait for a full request before a partial one is
      sent; ``None`` = only full requests, ``flush()`` and ``close()`` send partial ones.
    * ``initial_backoff``, ``max_backoff``, ``backoff_multiplier``: retry ``n`` waits a uniform draw
      from ``[0, min(max_backoff, initial_backoff * backoff_multiplier ** (n - 1))]`` seconds.
    * ``max_attempts``: attempts per entry including the first (1 = never retry); ``None`` = no limit.
    * ``max_retry_time``: seconds since a request's first attempt after which its entries are not
      retried any more; ``None`` = no limit. At least one of the two limits must be set.
    """

    max_request_rows: int = 500
    max_request_bytes: int | None = 5 * 1024 * 1024
    max_record_bytes: int | None = None
    max_in_flight: int = 4
    max_buffered_rows: int = 10_000
    max_time_in_buffer: float | None = 5.0
    initial_backoff: float = 0.05
    max_backoff: float = 5.0
    backoff_multiplier: float = 2.0
    max_attempts: int | None = 10
    max_retry_time: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_request_rows", "max_in_flight", "max_buffered_rows"):
            value = getattr(self, name)
            check_type(name, value, int)
            check_positive(name, value)
        for name in ("max_request_bytes", "max_record_bytes"):
            value = getattr(self, name)
            check_type(name, value, int, allow_none=True)
            check_positive(name, value, allow_none=True)
        check_positive("max_time_in_buffer", self.max_time_in_buffer, allow_none=True)
        self.retry()  # the retry fields, checked where every retry policy is checked
        if (
            self.max_record_bytes is not None
            and self.max_request_bytes is not None
            and self.max_record_bytes > self.max_request_bytes
        ):
            raise ConfigurationError(
                f"max_record_bytes ({self.max_record_bytes}) must be <= max_request_bytes "
                f"({self.max_request_bytes}): a record must fit into one request",
                option="max_record_bytes",
            )

    def retry(self, classify: Callable[[BaseException], bool] = default_classify) -> Retry:
        """The retry fields as a :class:`~arrowflow.retry.Retry` (with ``classify``)."""
        return Retry(
            max_attempts=self.max_attempts,
            max_retry_time=self.max_retry_time,
            initial_backoff=self.initial_backoff,
            max_backoff=self.max_backoff,
            backoff_multiplier=self.backoff_multiplier,
            classify=classify,
        )

    @property
    def record_limit(self) -> int | None:
        """The effective per-entry byte limit (``max_record_bytes``, else ``max_request_bytes``)."""
        return self.max_record_bytes if self.max_record_bytes is not None else self.max_request_bytes


@dataclass(frozen=True)
class Encoded:
    """What :meth:`AsyncBatchWriter.encode` returns when some rows could not be encoded.

    ``entries`` holds one entry per *good* row, in row order; ``failed`` holds the row indices
    (into the batch) of the bad rows and ``errors`` one message per failed row, or one for all.
    """

    entries: Entries
    failed: Any = field(default_factory=lambda: _EMPTY_INDEX)
    errors: Sequence[str] | str = ()


@dataclass(frozen=True)
class SubmitResult:
    """The outcome of one request.

    ``failed`` are indices into the submitted entries; ``errors`` one message per failed entry (or
    one for all); ``retryable`` one flag per failed entry (or one for all). Build a success with
    :meth:`ok`. ``submit`` may also return ``None`` for success.
    """

    failed: Any = field(default_factory=lambda: _EMPTY_INDEX)
    errors: Sequence[str] | str = ()
    retryable: Any = True

    @classmethod
    def ok(cls) -> SubmitResult:
        return _OK

    @property
    def all_ok(self) -> bool:
        return len(self.failed) == 0


_OK = SubmitResult()


class _Chunk:
    """Entries of one written batch still waiting in the buffer; ``pos`` is the first unsent one."""

    __slots__ = ("cum", "entries", "n", "pos", "rows", "since", "sizes")

    def __init__(self, entries: Entries, rows: pa.RecordBatch, sizes: np.ndarray, since: float) -> None:
        self.entries = entries
        self.rows = rows
        self.sizes = sizes
        # cum[i] = bytes of entries [0, i): a request's byte budget becomes one searchsorted.
        self.cum = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(sizes, dtype=np.int64)))
        self.n = len(sizes)
        self.pos = 0
        self.since = since


class _Request:
    """One request: its entries, their sizes, and the original rows as zero-copy segments.

    ``bounds[k]`` is the index of the first entry of ``segments[k]``; ``bounds[-1]`` is the count.
    """

    __slots__ = ("bounds", "entries", "segments", "sizes")

    def __init__(
        self, entries: Entries, sizes: np.ndarray, segments: list[pa.RecordBatch], bounds: np.ndarray
    ) -> None:
        self.entries = entries
        self.sizes = sizes
        self.segments = segments
        self.bounds = bounds

    def __len__(self) -> int:
        return len(self.sizes)

    def row_groups(self, indices: np.ndarray) -> list[tuple[pa.RecordBatch, np.ndarray]]:
        """The rows of sorted entry ``indices``: ``(segment.take(local), positions in indices)``."""
        seg_of = np.searchsorted(self.bounds, indices, side="right") - 1
        out = []
        starts = np.flatnonzero(np.diff(seg_of, prepend=-1))
        ends = np.append(starts[1:], len(indices))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            k = int(seg_of[a])
            local = indices[a:b] - self.bounds[k]
            out.append((self.segments[k].take(pa.array(local)), np.arange(a, b)))
        return out


class AsyncBatchWriter(Sink):
    """Batching, bounded concurrency and retries for a request-based sink.

    Subclasses implement :meth:`encode` and :meth:`submit`, and usually :meth:`classify`; see the
    module docstring for the full contract (what blocks, ordering, failures).
    """

    name = "async-batch-writer"

    def __init__(
        self,
        batching: BatchingConfig | None = None,
        *,
        error_policy: ErrorPolicyLike = "fail",
        name: str | None = None,
        config: BatchingConfig | None = None,
    ) -> None:
        if config is not None:
            warnings.warn(
                "AsyncBatchWriter(config=...) is deprecated: pass batching=",
                DeprecationWarning,
                stacklevel=caller_stacklevel(),
            )
            if batching is not None:
                raise ConfigurationError("give batching, not also config", option="config")
            batching = config
        if batching is None:
            batching = BatchingConfig()
        check_type("batching", batching, BatchingConfig)
        if name is not None:
            self.name = name
        self.batching = batching
        self.error_policy = ErrorPolicy.resolve(error_policy, name=self.name)
        self._retry = batching.retry()
        self._backoff = self._retry.backoff()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._buffer: deque[_Chunk] = deque()
        self._buffered_rows = 0
        self._buffered_bytes = 0
        self._in_flight = 0
        self._flushers = 0
        self._stopping = False
        self._error: BaseException | None = None
        self._work: deque[_Request | None] = deque()
        self._threads: list[threading.Thread] = []
        self._counters = dict.fromkeys(
            (
                "rows_written",
                "bytes_written",
                "requests",
                "retries",
                "rows_retried",
                "rows_failed",
                "rows_rejected_too_large",
                "backpressure_waits",
            ),
            0,
        )

    @property
    def config(self) -> Any:
        """Deprecated alias of :attr:`batching` (0.1.0 called the writer's limits ``config``).

        A connector that keeps its own configuration object as ``self.config`` (the convention)
        assigns it, and then this returns that object; only reading the alias without such an
        assignment warns and returns :attr:`batching`. Removed once every connector is converted.
        """
        own = self.__dict__.get("_connector_config", _UNSET)
        if own is not _UNSET:
            return own
        warnings.warn(
            f"{type(self).__name__}.config is deprecated: the batching limits are .batching",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.batching

    @config.setter
    def config(self, value: Any) -> None:
        self.__dict__["_connector_config"] = value

    # ------------------------------------------------------------------ connector hooks

    @abstractmethod
    def encode(self, batch: pa.RecordBatch) -> Entries | Encoded:
        """Encode ``batch`` into one request entry per row (vectorized).

        Return the entries, or :class:`Encoded` when some rows could not be encoded, or raise
        :class:`~arrowflow.errors.SerializationError` when none could. Runs in the writing thread.
        """

    @abstractmethod
    def submit(self, entries: Entries) -> SubmitResult | None:
        """Send ONE request holding ``entries``; block until the remote system answers.

        Runs in a worker thread, up to ``max_in_flight`` at once. Return which entries failed
        (:class:`SubmitResult`), or :meth:`SubmitResult.ok` / ``None``. Raise when the whole request
        failed; :meth:`classify` decides whether it is retried.
        """

    def classify(self, exc: BaseException) -> bool:
        """True when a request that raised ``exc`` should be retried."""
        return default_classify(exc)

    def entry_sizes(self, entries: Entries) -> np.ndarray:
        """Byte size of each entry (int64). Default: binary/string arrays, from their offsets."""
        if isinstance(entries, pa.ChunkedArray):
            entries = entries.combine_chunks()
        if isinstance(entries, pa.Array):
            t = entries.type
            small = pa.types.is_binary(t) or pa.types.is_string(t)
            if small or pa.types.is_large_binary(t) or pa.types.is_large_string(t):
                n = len(entries)
                buf = entries.buffers()[1]
                if buf is None or n == 0:
                    return np.zeros(n, dtype=np.int64)
                # Sizes are the differences of the offsets buffer: no per-row work in Python.
                offsets: np.ndarray = np.frombuffer(
                    buf, dtype=np.int32 if small else np.int64, count=entries.offset + n + 1
                )
                return np.diff(offsets[entries.offset :]).astype(np.int64, copy=False)
            if pa.types.is_binary_view(t) or pa.types.is_string_view(t):
                n = len(entries)
                buf = entries.buffers()[1]
                if buf is None or n == 0:
                    return np.zeros(n, dtype=np.int64)
                # Each 16-byte view starts with its int32 length; a null slot's view is unspecified.
                views = np.frombuffer(buf, dtype=np.int32, count=(entries.offset + n) * 4)
                lengths = views.reshape(-1, 4)[entries.offset :, 0].astype(np.int64)
                if entries.null_count:
                    lengths[entries.is_null().to_numpy(zero_copy_only=False)] = 0
                return lengths
            if pa.types.is_fixed_size_binary(t):
                return np.full(len(entries), t.byte_width, dtype=np.int64)
        raise TypeError(
            f"{type(self).__name__}: the default entry_sizes() handles Arrow binary/string arrays; "
            f"override it for {type(entries).__name__}"
        )

    def slice_entries(self, entries: Entries, start: int, stop: int) -> Entries:
        """Entries ``[start, stop)``; zero-copy for Arrow and numpy."""
        if isinstance(entries, (pa.Array, pa.ChunkedArray)):
            return entries.slice(start, stop - start)
        if isinstance(entries, (np.ndarray, list, tuple)):
            return entries[start:stop]
        return entries.take(np.arange(start, stop, dtype=np.int64))

    def take_entries(self, entries: Entries, indices: np.ndarray) -> Entries:
        """The entries at ``indices`` (used to resend only the failed ones)."""
        if isinstance(entries, (pa.Array, pa.ChunkedArray)):
            return entries.take(pa.array(indices, pa.int64()))
        if isinstance(entries, np.ndarray):
            return entries[indices]
        if isinstance(entries, (list, tuple)):
            return [entries[i] for i in indices.tolist()]
        return entries.take(indices)

    def concat_entries(self, parts: list[Entries]) -> Entries:
        """Join the entries of several chunks into one request's entries."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        if isinstance(first, pa.ChunkedArray):
            return pa.chunked_array([c for p in parts for c in p.chunks], first.type).combine_chunks()
        if isinstance(first, pa.Array):
            return pa.concat_arrays(parts)
        if isinstance(first, np.ndarray):
            return np.concatenate(parts)
        if isinstance(first, (list, tuple)):
            return [e for p in parts for e in p]
        raise TypeError(f"{type(self).__name__}: override concat_entries() for {type(first).__name__}")

    # ------------------------------------------------------------------ Sink API

    def write(self, batch: pa.RecordBatch) -> None:
        """Encode ``batch`` and buffer its entries; blocks while the buffer is full.

        Raises a previously recorded delivery error (policy ``"fail"``), or the error of this batch's
        encoding / size check under ``"fail"`` (then nothing of the batch is kept).
        """
        if self._closed:
            raise ArrowflowError(f"{self.name}: write() after close()")
        self._raise_error()
        if batch.num_rows == 0:
            return
        rows, entries, sizes = self._prepare(batch)
        if len(sizes) == 0:
            return
        chunk = _Chunk(entries, rows, sizes, time.monotonic())
        limit = self.batching.max_buffered_rows
        with self._cond:
            self._ensure_started()
            if self._buffered_rows >= limit:
                self._counters["backpressure_waits"] += 1
                while self._buffered_rows >= limit and self._error is None:
                    self._cond.wait()
            if self._error is not None:
                raise self._error
            self._buffer.append(chunk)
            self._buffered_rows += chunk.n
            self._buffered_bytes += int(chunk.cum[-1])
            self._cond.notify_all()

    def flush(self) -> None:
        """Block until everything written so far is acknowledged or given to the error policy."""
        with self._cond:
            if self._threads:
                self._flushers += 1
                self._cond.notify_all()
                try:
                    while self._buffer or self._in_flight:
                        self._cond.wait()
                finally:
                    self._flushers -= 1
        self.error_policy.flush()
        self._raise_error()

    def reset(self) -> None:
        """Before a pipeline restarts in-process: drop the entries not yet sent and a recorded error.

        The restarted pipeline reads those rows again from its last checkpoint. Requests already in
        flight finish (they cannot be recalled); one that fails for good records its error again.
        """
        with self._cond:
            self._buffer.clear()
            self._buffered_rows = 0
            self._buffered_bytes = 0
            self._error = None
            self._cond.notify_all()

    def _close(self) -> None:
        with self._cond:
            self._stopping = True
            threads = self._threads
            self._cond.notify_all()
        # Joining after a completed flush only waits for threads to notice the stop flag.
        for t in threads:
            t.join()

    def metrics(self) -> dict[str, int]:
        """Counters: rows_written (acknowledged), bytes_written, requests (submit calls, retries
        included), retries (re-sent requests), rows_retried, rows_failed (to the error policy after
        encoding or delivery failed), rows_rejected_too_large (also to the policy), backpressure_waits
        (writes that had to wait), in_flight and buffered_rows (current)."""
        with self._lock:
            out = dict(self._counters)
            out["in_flight"] = self._in_flight
            out["buffered_rows"] = self._buffered_rows
        return out

    # ------------------------------------------------------------------ write path

    def _prepare(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, Entries, np.ndarray]:
        """Encode, size, and reject what cannot be sent. Returns the rows kept with their entries."""
        n = batch.num_rows
        try:
            encoded = self.encode(batch)
        except SerializationError as exc:
            self._to_policy_sync(batch, f"{type(exc).__name__}: {exc}", exc, "rows_failed")
            return batch.slice(0, 0), None, _EMPTY_INDEX
        if isinstance(encoded, Encoded):
            entries = encoded.entries
            failed = np.asarray(encoded.failed, dtype=np.int64).reshape(-1)
            if len(failed):
                order = np.argsort(failed, kind="stable")
                failed = failed[order]
                if failed[0] < 0 or failed[-1] >= n or not (np.diff(failed) > 0).all():
                    raise ArrowflowError(
                        f"{self.name}: encode() reported invalid or duplicate failed row indices"
                    )
                errors: Sequence[str] | str = encoded.errors
                if not isinstance(errors, str):
                    if len(errors) != len(failed):
                        raise ArrowflowError(
                            f"{self.name}: encode() reported {len(failed)} failed rows "
                            f"and {len(errors)} errors"
                        )
                    errors = [errors[i] for i in order.tolist()]
                self._to_policy_sync(
                    batch.take(pa.array(failed)),
                    errors,
                    SerializationError(
                        f"{self.name}: {len(failed)} row(s) could not be encoded: "
                        f"{errors if isinstance(errors, str) else errors[0]}"
                    ),
                    "rows_failed",
                )
                keep = np.ones(n, dtype=bool)
                keep[failed] = False
                batch = batch.filter(pa.array(keep))
        else:
            entries = encoded
        if len(entries) != batch.num_rows:
            raise ArrowflowError(
                f"{self.name}: encode() returned {len(entries)} entries for {batch.num_rows} rows"
            )
        sizes = np.asarray(self.entry_sizes(entries), dtype=np.int64)
        if sizes.shape != (batch.num_rows,):
            raise ArrowflowError(
                f"{self.name}: entry_sizes() returned {sizes.shape} for {batch.num_rows} entries"
            )
        limit = self.batching.record_limit
        if limit is not None:
            big = sizes > limit
            if big.any():
                idx = np.flatnonzero(big)
                big_sizes = pa.array(sizes[idx])
                errors = pc.binary_join_element_wise(
                    "record of ",
                    pc.cast(big_sizes, pa.string()),
                    f" bytes exceeds max_record_bytes={limit}",
                    "",
                )
                self._to_policy_sync(
                    batch.take(pa.array(idx)),
                    errors,
                    ConnectorError(
                        f"{self.name}: {len(idx)} record(s) exceed max_record_bytes={limit} "
                        f"(largest {int(sizes[idx].max())} bytes)"
                    ),
                    "rows_rejected_too_large",
                )
                keep_idx = np.flatnonzero(~big)
                batch = batch.take(pa.array(keep_idx))
                entries = self.take_entries(entries, keep_idx)
                sizes = sizes[keep_idx]
        return batch, entries, sizes

    def _to_policy_sync(
        self, rows: pa.RecordBatch, errors: Sequence[str] | pa.Array | str, exc: BaseException, counter: str
    ) -> None:
        with self._lock:
            self._counters[counter] += rows.num_rows
        self.error_policy.handle(rows, errors, exception=exc)

    # ------------------------------------------------------------------ threads

    def _ensure_started(self) -> None:
        """Start the dispatcher and workers (caller holds the lock)."""
        if self._threads:
            return
        threads = [threading.Thread(target=self._dispatch_loop, name=f"{self.name}-dispatch", daemon=True)]
        threads += [
            threading.Thread(target=self._worker_loop, name=f"{self.name}-worker-{i}", daemon=True)
            for i in range(self.batching.max_in_flight)
        ]
        self._threads = threads
        for t in threads:
            t.start()

    def _dispatch_loop(self) -> None:
        cfg = self.batching
        max_bytes = cfg.max_request_bytes
        while True:
            with self._cond:
                while True:
                    if self._buffer and self._in_flight < cfg.max_in_flight:
                        full = self._buffered_rows >= cfg.max_request_rows or (
                            max_bytes is not None and self._buffered_bytes >= max_bytes
                        )
                        timeout = None
                        if full or self._flushers or self._stopping:
                            break
                        if cfg.max_time_in_buffer is not None:
                            timeout = self._buffer[0].since + cfg.max_time_in_buffer - time.monotonic()
                            if timeout <= 0:
                                break
                        self._cond.wait(timeout)
                    elif self._stopping and not self._buffer and not self._in_flight:
                        # Workers exit on the None sentinels.
                        self._work.extend([None] * cfg.max_in_flight)
                        self._cond.notify_all()
                        return
                    else:
                        self._cond.wait()
                try:
                    request = self._cut_request()
                except BaseException as exc:  # a connector hook (concat) failed: surface, don't hang
                    self._drop_buffer(exc)
                    continue
                self._in_flight += 1
                self._work.append(request)
                self._cond.notify_all()

    def _cut_request(self) -> _Request:
        """Take the next request off the front of the buffer (caller holds the lock)."""
        cfg = self.batching
        rows_left = cfg.max_request_rows
        bytes_left = cfg.max_request_bytes
        entries: list[Entries] = []
        sizes: list[np.ndarray] = []
        segments: list[pa.RecordBatch] = []
        while self._buffer and rows_left > 0:
            chunk = self._buffer[0]
            pos = chunk.pos
            k = min(rows_left, chunk.n - pos)
            if bytes_left is not None:
                # Largest k with cum[pos + k] - cum[pos] <= bytes_left.
                fit = int(np.searchsorted(chunk.cum, chunk.cum[pos] + bytes_left, side="right")) - 1 - pos
                k = min(k, fit)
            if k <= 0:
                break
            entries.append(self.slice_entries(chunk.entries, pos, pos + k))
            sizes.append(chunk.sizes[pos : pos + k])
            segments.append(chunk.rows.slice(pos, k))
            nbytes = int(chunk.cum[pos + k] - chunk.cum[pos])
            rows_left -= k
            if bytes_left is not None:
                bytes_left -= nbytes
            self._buffered_rows -= k
            self._buffered_bytes -= nbytes
            chunk.pos = pos + k
            if chunk.pos == chunk.n:
                self._buffer.popleft()
        # Every entry is <= record_limit <= max_request_bytes, so a request is never empty.
        counts = np.array([len(s) for s in sizes], dtype=np.int64)
        bounds = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(counts)))
        return _Request(self.concat_entries(entries), np.concatenate(sizes), segments, bounds)

    def _drop_buffer(self, exc: BaseException) -> None:
        """Unrecoverable dispatcher failure: record it, and unblock everyone (caller holds the lock)."""
        if self._error is None:
            self._error = exc
        lost = self._buffered_rows
        self._buffer.clear()
        self._buffered_rows = 0
        self._buffered_bytes = 0
        self._counters["rows_failed"] += lost
        self._cond.notify_all()

    def _worker_loop(self) -> None:
        while True:
            with self._cond:
                while not self._work:
                    self._cond.wait()
                request = self._work.popleft()
            if request is None:
                return
            try:
                self._deliver(request)
            except BaseException as exc:  # a bug in a hook or here: never lose it silently
                self._record_error(exc)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _deliver(self, request: _Request) -> None:
        """Send ``request`` until every entry is acknowledged or handed to the error policy."""
        started = time.monotonic()
        attempt = 1
        while True:
            n = len(request)
            cause: BaseException | None = None
            try:
                result = self.submit(request.entries)
            except Exception as exc:
                cause = exc
                failed = np.arange(n, dtype=np.int64)
                retryable = np.full(n, bool(self.classify(exc)))
                errors: list[str] | str = f"{type(exc).__name__}: {exc}"
            else:
                failed, errors, retryable = self._normalize(result, n)
            ok_bytes = int(request.sizes.sum()) - int(request.sizes[failed].sum())
            with self._lock:
                self._counters["requests"] += 1
                self._counters["rows_written"] += n - len(failed)
                self._counters["bytes_written"] += ok_bytes
            if len(failed) == 0:
                return
            fatal = ~retryable
            if fatal.any():
                self._fail(request, failed[fatal], _pick(errors, fatal), cause, "failed fatally")
            again = failed[retryable]
            if len(again) == 0:
                return
            again_errors = _pick(errors, retryable)
            delay = self._backoff.delay(attempt)
            if self._retry.exhausted(attempt, time.monotonic() - started, delay):
                elapsed = time.monotonic() - started
                self._fail(
                    request,
                    again,
                    again_errors,
                    cause,
                    f"retries exhausted after {attempt} attempt(s) in {elapsed:.3f}s",
                )
                return
            time.sleep(delay)
            request = _subset(self, request, again)
            attempt += 1
            with self._lock:
                self._counters["retries"] += 1
                self._counters["rows_retried"] += len(again)

    def _normalize(
        self, result: SubmitResult | None, n: int
    ) -> tuple[np.ndarray, list[str] | str, np.ndarray]:
        """Validate a :class:`SubmitResult` against a request of ``n`` entries; sort by index."""
        if result is None:
            return _EMPTY_INDEX, [], np.zeros(0, dtype=bool)
        if not isinstance(result, SubmitResult):
            raise ArrowflowError(f"{self.name}: submit() returned {type(result).__name__}, not SubmitResult")
        failed = np.asarray(result.failed, dtype=np.int64).reshape(-1)
        k = len(failed)
        if k == 0:
            return _EMPTY_INDEX, [], np.zeros(0, dtype=bool)
        retryable = np.asarray(result.retryable, dtype=bool).reshape(-1)
        if retryable.size == 1:
            retryable = np.full(k, bool(retryable[0]))
        errors: list[str] | str = result.errors if isinstance(result.errors, str) else list(result.errors)
        if len(retryable) != k or (not isinstance(errors, str) and len(errors) != k):
            raise ArrowflowError(
                f"{self.name}: submit() reported {k} failed entries with {len(retryable)} retryable "
                f"flags and {1 if isinstance(errors, str) else len(errors)} errors"
            )
        order = np.argsort(failed, kind="stable")
        failed = failed[order]
        if failed[0] < 0 or failed[-1] >= n or (k > 1 and not (np.diff(failed) > 0).all()):
            raise ArrowflowError(f"{self.name}: submit() reported invalid or duplicate failed indices")
        if not isinstance(errors, str):
            errors = [errors[i] for i in order.tolist()]
        return failed, errors, retryable[order]

    def _fail(
        self,
        request: _Request,
        indices: np.ndarray,
        errors: list[str] | str,
        cause: BaseException | None,
        what: str,
    ) -> None:
        """Hand the rows of entry ``indices`` to the error policy (worker thread)."""
        first = errors if isinstance(errors, str) else errors[0]
        if isinstance(errors, str):
            text: list[str] | str = f"{what}: {errors}"
        else:
            text = [f"{what}: {e}" for e in errors]
        exc = ConnectorError(f"{self.name}: {len(indices)} row(s) {what}: {first}")
        if cause is not None:
            exc.__cause__ = cause
        for rows, positions in request.row_groups(indices):
            seg_errors = text if isinstance(text, str) else [text[i] for i in positions.tolist()]
            try:
                self.error_policy.handle(rows, seg_errors, exception=exc)
            except BaseException as raised:
                self._record_error(raised)
        # Counted after the policy ran: once rows_failed shows them, a "fail" error is recorded.
        with self._lock:
            self._counters["rows_failed"] += len(indices)

    def _record_error(self, exc: BaseException) -> None:
        with self._cond:
            if self._error is None:
                self._error = exc
            self._cond.notify_all()

    def _raise_error(self) -> None:
        error = self._error
        if error is not None:
            raise error


def _pick(errors: list[str] | str, mask: np.ndarray) -> list[str] | str:
    if isinstance(errors, str):
        return errors
    return [e for e, m in zip(errors, mask.tolist(), strict=True) if m]


def _subset(writer: AsyncBatchWriter, request: _Request, indices: np.ndarray) -> _Request:
    """A request of the entries at sorted ``indices`` of ``request`` (for a retry)."""
    groups = request.row_groups(indices)
    segments = [rows for rows, _ in groups]
    counts = np.array([len(pos) for _, pos in groups], dtype=np.int64)
    bounds = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(counts)))
    return _Request(writer.take_entries(request.entries, indices), request.sizes[indices], segments, bounds)


def batch_column(batch: pa.RecordBatch, name: str, *, who: str) -> pa.Array:
    """The column ``name`` of ``batch`` (for an :meth:`AsyncBatchWriter.encode` that reads named
    columns). A missing column raises :class:`SerializationError` naming ``who`` (the connector), the
    column and the batch's columns, so the batch goes to the error policy."""
    index = batch.schema.get_field_index(name)
    if index < 0:
        raise SerializationError(f"{who}: column {name!r} is missing (have {batch.schema.names})")
    return batch.column(index)


# -- per-system limits and the 0.1.0 batching keywords ----------------------------------------------


def check_batching_limits(
    batching: BatchingConfig,
    *,
    api: str,
    max_request_rows: int | None = None,
    max_request_bytes: int | None = None,
    max_record_bytes: int | None = None,
) -> BatchingConfig:
    """``batching`` checked against a remote API's hard limits (``api`` names it in errors).

    A value above a limit is a :class:`ConfigurationError` naming ``batching.<field>``. A
    ``max_request_bytes`` or ``max_record_bytes`` left at ``None`` means "the API's limit": the
    returned config has the limit filled in (a record never exceeds a request).
    """
    changes: dict[str, Any] = {}
    for name, limit in (
        ("max_request_rows", max_request_rows),
        ("max_request_bytes", max_request_bytes),
        ("max_record_bytes", max_record_bytes),
    ):
        if limit is None:
            continue
        value = getattr(batching, name)
        if value is None:
            changes[name] = limit
        elif value > limit:
            raise ConfigurationError(
                f"batching.{name}={value} exceeds the {api} limit of {limit}", option=f"batching.{name}"
            )
    if changes.get("max_record_bytes") is not None:
        request = changes.get("max_request_bytes", batching.max_request_bytes)
        if request is not None:
            changes["max_record_bytes"] = min(changes["max_record_bytes"], request)
    return dataclasses.replace(batching, **changes) if changes else batching


#: 0.1.0's per-connector batching keywords and the :class:`BatchingConfig` field each became.
#: ``max_retries=n`` is ``max_attempts=n + 1``; ``backoff="constant"`` is ``backoff_multiplier=1``
#: with ``max_backoff=initial_backoff``.
LEGACY_BATCHING: dict[str, str] = {
    "max_records_per_request": "max_request_rows",
    "max_actions": "max_request_rows",
    "max_items_per_request": "max_request_rows",
    "request_rows": "max_request_rows",
    "batch_size": "max_request_rows",
    "max_bytes": "max_request_bytes",
    "max_request_bytes": "max_request_bytes",
    "max_record_bytes": "max_record_bytes",
    "max_item_bytes": "max_record_bytes",
    "max_in_flight": "max_in_flight",
    "max_in_flight_requests": "max_in_flight",
    "max_buffered_rows": "max_buffered_rows",
    "flush_interval": "max_time_in_buffer",
    "batch_interval": "max_time_in_buffer",
    "max_retries": "max_attempts",
    "initial_backoff": "initial_backoff",
    "max_backoff": "max_backoff",
    "backoff": "backoff_multiplier",
}


def _check_legacy(name: str, value: Any) -> None:
    """A 0.1.0 keyword's value, checked as 0.1.0 checked it (the error names the old keyword)."""
    if name == "max_retries":
        check_type(name, value, int)
        if value < 0:
            raise ConfigurationError(f"{name} must be >= 0, got {value!r}", option=name)
    elif name == "backoff":
        check_choice(name, value, ("exponential", "constant"))
    elif name in ("flush_interval", "batch_interval"):
        check_positive(name, value, allow_none=True)
    elif name in ("initial_backoff", "max_backoff"):
        check_positive(name, value)
    else:
        # None: "the default" (0.1.0's max_buffered_rows, and max_in_flight where it depended on
        # other options); folding keeps the base's value.
        optional = name in ("max_buffered_rows", "max_in_flight")
        check_type(name, value, int, allow_none=optional)
        check_positive(name, value, allow_none=optional)


def fold_legacy_batching(base: BatchingConfig, legacy: Mapping[str, Any]) -> BatchingConfig:
    """``base`` with 0.1.0 batching keywords (:data:`LEGACY_BATCHING`) applied, as 0.1.0 read them:
    a backoff range whose maximum is below its start is widened, a record limit above the request
    limit is cut to it, and ``max_buffered_rows=None`` / ``max_in_flight=None`` keep ``base``'s."""
    changes: dict[str, Any] = {}
    for name, value in legacy.items():
        _check_legacy(name, value)
        target = LEGACY_BATCHING[name]
        if name == "max_retries":
            changes[target] = value + 1
        elif name == "backoff":
            changes[target] = 1.0 if value == "constant" else 2.0
        elif value is not None or target == "max_time_in_buffer":
            changes[target] = value
    folded = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)} | changes
    if legacy.get("backoff") == "constant" or folded["max_backoff"] < folded["initial_backoff"]:
        folded["max_backoff"] = folded["initial_backoff"]
    request, record = folded["max_request_bytes"], folded["max_record_bytes"]
    if request is not None and record is not None and record > request:
        folded["max_record_bytes"] = request
    return BatchingConfig(**folded)


def _legacy_value(batching: BatchingConfig, name: str) -> Any:
    value = getattr(batching, LEGACY_BATCHING[name])
    if name == "max_retries":
        return None if value is None else value - 1
    if name == "backoff":
        return "constant" if value == 1 else "exponential"
    return value


def legacy_batching(
    *names: str, default: Callable[[Mapping[str, Any]], BatchingConfig] | None = None
) -> Callable[[type[C]], type[C]]:
    """Class decorator of a connector's configuration dataclass: accept 0.1.0's batching keywords.

    Each of ``names`` (keys of :data:`LEGACY_BATCHING`) is still accepted by the constructor, with a
    ``DeprecationWarning``, and folded into the dataclass's ``batching`` field (on top of the value
    given, or of the field's default, the per-system default); giving ``batching`` too is a
    :class:`ConfigurationError` (``batching=None``, 0.1.0's "the default", is not giving it).
    ``default(options)``, when the per-system default depends on the other options given (old
    keywords included), is the base instead of the field's default. Reading ``config.<name>`` still
    works (a read-only view of ``batching``). Apply it on top of ``@dataclass``.
    """
    unknown = set(names) - set(LEGACY_BATCHING)
    if unknown:
        raise ValueError(f"not 0.1.0 batching keywords: {sorted(unknown)}")

    def decorate(cls: type[C]) -> type[C]:
        field_default: Any = {f.name: f for f in dataclasses.fields(cls)}["batching"].default  # type: ignore[arg-type]

        def fold(kwargs: dict[str, Any], legacy: dict[str, Any]) -> None:
            for name, value in legacy.items():
                _check_legacy(name, value)
            base = kwargs.get("batching")
            if base is not None and base is not field_default and base != field_default:
                raise ConfigurationError(
                    f"give batching or the deprecated {', '.join(legacy)}, not both",
                    option=next(iter(legacy)),
                )
            base = default(kwargs | legacy) if default is not None else field_default
            check_type("batching", base, BatchingConfig)
            kwargs["batching"] = fold_legacy_batching(base, legacy)

        def advice(legacy: Sequence[str]) -> str:
            return f"batching=BatchingConfig(...) ({', '.join(LEGACY_BATCHING[n] for n in legacy)})"

        return deprecated_keywords(*names, advice=advice, fold=fold, read=_legacy_property)(cls)

    return decorate


def _legacy_property(self: Any, name: str) -> Any:
    return _legacy_value(self.batching, name)
