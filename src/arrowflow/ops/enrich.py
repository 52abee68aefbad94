"""Asynchronous enrichment (Flink's Async I/O operator): :class:`Enrich`.

``Enrich(fn)`` calls an ``async def fn`` for every row (``per="row"``) or every batch
(``per="batch"``) on an asyncio loop that runs in a background thread, and appends the results as
new columns. How it behaves:

* **Requests.** ``per="row"``: ``fn(row_dict)`` per row (this boundary is inherently per row); the
  dicts, equal to ``batch.to_pylist()``'s, are built on the loop thread column-wise, a few hundred
  rows at a time, just before their requests start. ``fn`` returns a value, or a dict when
  ``output`` names several columns. ``per="batch"``: ``fn(batch)`` once per batch, returning a
  list/array of ``num_rows`` values (or a dict ``column -> values``).
* **Capacity / backpressure.** At most ``capacity`` requests are in flight (started and not yet
  finished, retries included): ``capacity`` worker coroutines each run one request at a time, in
  input order. ``process`` hands the batch to the loop in one thread-safe call and then blocks
  until fewer than ``capacity`` of the operator's requests are still waiting to start, so a slow
  service slows the pipeline instead of growing memory (beyond the requests in flight, about one
  batch waits, plus, when ``ordered``, finished batches held back behind an unfinished one).
* **Emission.** A batch is emitted, whole and with its rows in input order, once *all* its requests
  finished. ``ordered=True``: batches leave in input order (a finished batch waits for earlier ones).
  ``ordered=False``: batches leave in the order they finish. Rows of one batch are never split across
  output batches. ``process`` returns what is ready at that moment, without waiting.
* **Timeout and retries.** ``timeout`` bounds each attempt: a watchdog on the loop checks the
  running attempts every ``timeout / 8`` seconds (1 ms to 0.25 s) and cancels those past their
  deadline, which then fail with the built-in ``TimeoutError`` - between ``timeout`` and ``timeout``
  plus that period after they started (an ``fn`` that swallows the cancellation keeps its result).
  ``retry`` (a :class:`~arrowflow.retry.Retry`, the retry vocabulary of every part of arrowflow;
  ``None``, the default, = one attempt) re-runs a request whose exception ``retry.classify`` accepts
  (:func:`~arrowflow.retry.default_classify` unless set: ``ConnectorError.retryable``, HTTP
  408/425/429/5xx, ``OSError``; a ``ValueError``/``KeyError``/``TypeError`` from ``fn`` is a bug
  and fails at once). A timed-out attempt counts as one failed attempt with ``TimeoutError``, an
  ``OSError``, so ``default_classify`` retries it (a custom ``classify`` decides for itself). Retry
  ``k`` waits ``retry.backoff().delay(k)`` seconds: full jitter, a uniform draw from
  ``[0, min(max_backoff, initial_backoff * backoff_multiplier ** (k - 1))]``. No retry starts once
  ``retry.exhausted(attempt, elapsed, delay)`` says so: ``max_attempts`` attempts made (the first
  counts), or the wait would end more than ``max_retry_time`` seconds after the request's first
  attempt started. ``retry_on_result(result) -> bool`` (needs ``retry``) also re-runs a request
  whose *result* it rejects, under the same attempts, backoff and time limit. The 0.1.0
  :class:`RetryStrategy` still works as ``retry=`` (deprecated; it keeps its 0.1.0 behaviour).
* **Failure** (retries exhausted, a non-retryable exception, or a result still rejected by
  ``retry_on_result``): ``on_error="fail"`` raises :class:`EnrichError` from the next
  ``process``/``flush`` (the pipeline run then fails; a new run resumes from its last checkpoint);
  ``"drop"`` removes the row (or the whole batch for ``per="batch"``); ``("default", value)`` uses
  ``value``.
* **flush()** waits until every request has finished and returns all remaining batches; the runner
  calls it before each checkpoint, so no request is ever in flight across a checkpoint.
* **close()** cancels whatever is still running, runs ``teardown`` and stops the loop thread. It is
  idempotent; ``open()`` after ``close()`` starts a fresh loop.

``setup``/``teardown`` are optional ``async`` callables run on the loop thread at open/close, the
place to create and close an ``aiohttp.ClientSession`` shared by all requests.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import select
import selectors
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pyarrow as pa

from ..config import caller_stacklevel, check_choice, check_non_negative, check_positive
from ..errors import ConfigurationError, ConnectorError
from ..retry import ExponentialBackoff, Retry
from .base import Operator
from .columns import to_arrow_array

__all__ = ["Enrich", "EnrichError", "RetryStrategy"]


class EnrichError(ConnectorError):
    """An enrichment request failed and ``on_error="fail"``; ``__cause__`` is the last exception."""


def _always_retry(exc: BaseException) -> bool:
    return isinstance(exc, Exception)


@dataclass(frozen=True, kw_only=True)
class RetryStrategy:
    """Deprecated (0.1.0): pass ``Enrich(retry=Retry(...))``, and ``retry_on_result=`` to
    :class:`Enrich` itself.

    Still accepted as ``Enrich(retry=...)`` with a ``DeprecationWarning``, and it keeps its 0.1.0
    behaviour there (it is *not* converted to a :class:`~arrowflow.retry.Retry`): fixed or
    exponential delays without jitter, every ``Exception`` retried unless ``retry_on_exception``
    says otherwise, no ``max_retry_time``.

    When and how often to retry a request (Flink's ``AsyncRetryStrategies``).
    ``max_attempts`` counts the first attempt too (``1`` = no retry). The delay before retry ``k``
    (1-based) is ``min(delay * multiplier ** (k - 1), max_delay)``: ``multiplier=1`` is a fixed
    delay. ``retry_on_exception(exc)`` decides whether an exception is retried (default: every
    ``Exception``, timeouts included); ``retry_on_result(result)`` whether a result is retried
    (default: none). Use :meth:`fixed_delay` / :meth:`exponential_backoff` to build one.
    """

    max_attempts: int = 3
    delay: float = 0.1
    multiplier: float = 1.0
    max_delay: float = 60.0
    retry_on_exception: Callable[[BaseException], bool] | None = None
    retry_on_result: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigurationError(
                f"max_attempts must be an integer >= 1, got {self.max_attempts!r}", option="max_attempts"
            )
        check_non_negative("delay", self.delay)
        check_positive("max_delay", self.max_delay)
        if (
            isinstance(self.multiplier, bool)
            or not isinstance(self.multiplier, (int, float))
            or self.multiplier < 1
        ):
            raise ConfigurationError(f"multiplier must be >= 1, got {self.multiplier!r}", option="multiplier")
        for opt in ("retry_on_exception", "retry_on_result"):
            value = getattr(self, opt)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{opt} must be callable", option=opt)

    @classmethod
    def fixed_delay(
        cls,
        max_attempts: int,
        delay: float,
        *,
        retry_on_exception: Callable[[BaseException], bool] | None = None,
        retry_on_result: Callable[[Any], bool] | None = None,
    ) -> RetryStrategy:
        return cls(
            max_attempts=max_attempts,
            delay=delay,
            multiplier=1.0,
            retry_on_exception=retry_on_exception,
            retry_on_result=retry_on_result,
        )

    @classmethod
    def exponential_backoff(
        cls,
        max_attempts: int,
        initial_delay: float,
        max_delay: float,
        multiplier: float = 2.0,
        *,
        retry_on_exception: Callable[[BaseException], bool] | None = None,
        retry_on_result: Callable[[Any], bool] | None = None,
    ) -> RetryStrategy:
        return cls(
            max_attempts=max_attempts,
            delay=initial_delay,
            multiplier=multiplier,
            max_delay=max_delay,
            retry_on_exception=retry_on_exception,
            retry_on_result=retry_on_result,
        )

    def delay_before(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the second attempt)."""
        return float(min(self.delay * self.multiplier ** (retry - 1), self.max_delay))

    def should_retry_exception(self, exc: BaseException) -> bool:
        return (self.retry_on_exception or _always_retry)(exc)

    def should_retry_result(self, result: Any) -> bool:
        return self.retry_on_result is not None and bool(self.retry_on_result(result))


class _RetryPlan:
    """What :meth:`Enrich._call` asks after a failed attempt, from a :class:`~arrowflow.retry.Retry`
    or a deprecated :class:`RetryStrategy` (so the request loop has one code path for both)."""

    __slots__ = ("classify", "delay", "exhausted", "on_result")

    def __init__(
        self,
        classify: Callable[[BaseException], bool],
        delay: Callable[[int], float],
        exhausted: Callable[[int, float, float], bool],
        on_result: Callable[[Any], bool] | None,
    ) -> None:
        self.classify = classify  # exception -> retry it?
        self.delay = delay  # retry number (1 = the second attempt) -> seconds to wait first
        self.exhausted = exhausted  # (attempt, seconds since the first started, delay) -> give up?
        self.on_result = on_result  # result -> retry it? (None: results are never retried)


def _retry_plan(
    retry: Retry | RetryStrategy | None, retry_on_result: Callable[[Any], bool] | None
) -> _RetryPlan | None:
    """The plan of an already validated ``retry``/``retry_on_result`` pair; ``None``: one attempt."""
    if isinstance(retry, Retry):
        # One backoff (and so one random generator) per operator instance.
        backoff: ExponentialBackoff = retry.backoff()
        return _RetryPlan(retry.classify, backoff.delay, retry.exhausted, retry_on_result)
    if isinstance(retry, RetryStrategy):
        strategy = retry  # 0.1.0 semantics: no jitter, no time limit, every Exception by default

        def out_of_attempts(attempt: int, elapsed: float, delay: float) -> bool:
            return attempt >= strategy.max_attempts

        return _RetryPlan(
            strategy.should_retry_exception,
            strategy.delay_before,
            out_of_attempts,
            retry_on_result or strategy.retry_on_result,
        )
    return None


class _Failed(Exception):
    """Internal: a request failed for good (the cause is attached)."""


_DROP = object()  # the row (or batch) is removed
_DEFAULT = object()  # the row (or batch) takes the configured default value


class _Pending:
    """One input batch whose requests are queued or running.

    ``results``/``remaining``/``special``/``cursor`` are touched by the loop thread only; ``done`` and
    ``failure`` are set under the operator lock once the batch's last request finished (or failed).
    """

    __slots__ = ("batch", "cursor", "done", "failure", "remaining", "results", "seq", "special")

    def __init__(self, seq: int, batch: pa.RecordBatch, n_requests: int) -> None:
        self.seq = seq
        self.batch = batch
        self.results: list[Any] = [None] * n_requests
        self.remaining = n_requests
        #: Requests that ended in ``_DROP``/``_DEFAULT``; 0 lets ``_build`` use ``results`` as is.
        self.special = 0
        #: Requests already queued as ``(entry, index, arg)``; per="row" converts rows in chunks.
        self.cursor = 0
        self.done = n_requests == 0
        self.failure: BaseException | None = None


OnError = Any  # "fail" | "drop" | ("default", value)

#: Rows turned into dicts at a time (one column-wise conversion of a slice): large enough that the
#: per-call cost vanishes, small enough that a 64k-row batch never exists as 64k dicts at once.
_CHUNK_ROWS = 512
#: Timeouts below this are waited for by ``select`` (microseconds) instead of ``epoll`` (whole ms).
_PRECISE_BELOW = 0.005


class _PreciseEpollSelector(selectors.EpollSelector):
    """An epoll selector whose sub-5 ms timeouts are not rounded up to whole milliseconds.

    ``epoll_wait`` counts in milliseconds, so asyncio rounds every timeout up: with many
    concurrent 1 ms requests whose timers are spread over a millisecond, the loop keeps waking a
    full millisecond after the next timer is due (measured: ~43k instead of ~60k rows/s through
    ``Enrich`` with capacity 100 against a 1 ms ``asyncio.sleep``). For short timeouts
    this waits with ``select()`` on the epoll descriptor itself (microsecond resolution, readable
    when events are pending) and then collects the events without blocking.
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and 0 < timeout < _PRECISE_BELOW:
            fd = self._selector.fileno()  # type: ignore[attr-defined]
            if fd < 1024:  # FD_SETSIZE: select() cannot watch higher descriptors
                readable, _, _ = select.select([fd], [], [], timeout)
                if not readable:
                    return []  # timed out: no event was pending (what epoll_wait would say)
                timeout = 0
        return super().select(timeout)


def _new_loop() -> asyncio.AbstractEventLoop:
    """The operator's loop: asyncio's own selector loop with :class:`_PreciseEpollSelector` where
    epoll exists, unless the application installed its own event loop policy (uvloop, say)."""
    if not (hasattr(selectors, "EpollSelector") and hasattr(select, "epoll")):
        return asyncio.new_event_loop()
    # Event loop policies are deprecated from 3.14 on; before that, respect a custom one.
    if (
        sys.version_info < (3, 14)
        and type(asyncio.get_event_loop_policy()) is not asyncio.DefaultEventLoopPolicy
    ):
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop(_PreciseEpollSelector())


#: ``Task.uncancel`` (3.11+) lets a worker turn its own timeout cancellation into a ``TimeoutError``
#: and carry on; without it each attempt runs under ``asyncio.wait_for``.
_WATCHDOG = sys.version_info >= (3, 11)
_NO_DEADLINE = float("inf")


class _Slot:
    """A worker's attempt deadline, checked by the operator's watchdog (loop thread only)."""

    __slots__ = ("deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.deadline = _NO_DEADLINE
        self.expired = False


def _check_retry(retry: Any, retry_on_result: Any) -> None:
    """Validate ``Enrich``'s ``retry``/``retry_on_result`` (``ConfigurationError`` naming the option);
    a :class:`RetryStrategy` passes with a ``DeprecationWarning`` naming the user's line."""
    if isinstance(retry, RetryStrategy):
        warnings.warn(
            "Enrich(retry=RetryStrategy(...)) is deprecated: pass retry=Retry(...) "
            "(arrowflow.retry.Retry: full-jitter backoff, default_classify, max_retry_time) and "
            "Enrich(retry_on_result=...) for results",
            DeprecationWarning,
            stacklevel=caller_stacklevel(),
        )
        if retry_on_result is not None and retry.retry_on_result is not None:
            raise ConfigurationError(
                "give retry_on_result to Enrich or to the RetryStrategy, not both", option="retry_on_result"
            )
    elif retry is not None and not isinstance(retry, Retry):
        raise ConfigurationError(
            f"retry must be a Retry (arrowflow.retry.Retry) or None, got {type(retry).__name__}",
            option="retry",
        )
    if retry_on_result is not None:
        if not callable(retry_on_result):
            raise ConfigurationError(
                "retry_on_result must be callable(result) -> bool", option="retry_on_result"
            )
        if retry is None:
            raise ConfigurationError(
                "retry_on_result needs retry=Retry(...) (how often and how long to retry)",
                option="retry_on_result",
            )


class Enrich(Operator):
    """Flink-style asynchronous I/O over batches. See the module docstring for the full contract."""

    name = "enrich"

    def __init__(
        self,
        fn: Callable[[Any], Awaitable[Any]],
        *,
        per: str = "row",
        ordered: bool = True,
        capacity: int = 100,
        timeout: float | None = 5.0,
        retry: Retry | RetryStrategy | None = None,
        retry_on_result: Callable[[Any], bool] | None = None,
        on_error: OnError = "fail",
        output: str | Sequence[str] = "enriched",
        output_type: pa.DataType | Sequence[pa.DataType] | None = None,
        setup: Callable[[], Awaitable[None]] | None = None,
        teardown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError("fn must be an async callable", option="fn")
        check_choice("per", per, ("row", "batch"))
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigurationError(f"capacity must be an integer >= 1, got {capacity!r}", option="capacity")
        check_positive("timeout", timeout, allow_none=True)
        _check_retry(retry, retry_on_result)
        self._default: Any = None
        if isinstance(on_error, tuple) and len(on_error) == 2 and on_error[0] == "default":
            self._on_error = "default"
            self._default = on_error[1]
        elif on_error in ("fail", "drop"):
            self._on_error = on_error
        else:
            raise ConfigurationError(
                f"on_error must be 'fail', 'drop' or ('default', value), got {on_error!r}", option="on_error"
            )
        if isinstance(output, str):
            self._outputs: list[str] = [output]
            self._single = True
        else:
            self._outputs = list(output)
            self._single = False
            if not self._outputs or not all(isinstance(o, str) for o in self._outputs):
                raise ConfigurationError("output must be a column name or a list of names", option="output")
        if output_type is None or isinstance(output_type, pa.DataType):
            self._types: list[pa.DataType | None] = [output_type] * len(self._outputs)
        else:
            self._types = list(output_type)
            if len(self._types) != len(self._outputs):
                raise ConfigurationError("output_type needs one type per output column", option="output_type")
        self.fn = fn
        self.per = per
        self.ordered = ordered
        self.capacity = capacity
        self.timeout = timeout
        #: As given: a ``Retry``, a deprecated ``RetryStrategy`` or ``None`` (one attempt).
        self.retry = retry
        self.retry_on_result = retry_on_result
        self._plan = _retry_plan(retry, retry_on_result)
        self.setup = setup
        self.teardown = teardown
        #: Attempt deadlines are checked this often (see ``_watch``).
        self._watch_period = min(max((timeout or 1.0) / 8, 0.001), 0.25)
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._reset_state()

    # -- lifecycle ---------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        #: Batches handed to the loop and not yet emitted, by sequence number (caller side, locked).
        self._pending: collections.OrderedDict[int, _Pending] = collections.OrderedDict()
        self._seq = 0
        #: Sequence numbers of batches in the order their last request finished (unordered mode).
        self._completed: collections.deque[int] = collections.deque()
        self._error: BaseException | None = None
        # Loop side: batches whose requests are not all queued yet, the queued requests, and the
        # number of worker coroutines (each runs one request at a time, so workers <= capacity
        # bounds the requests in flight without a semaphore or a Task per request).
        self._work: collections.deque[_Pending] = collections.deque()
        self._queue: collections.deque[tuple[_Pending, int, Any]] = collections.deque()
        self._workers = 0
        self._tasks: set[asyncio.Future[None]] = set()
        self._slots: set[_Slot] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        # Requests handed to the loop (written by the caller only) and started (loop only): their
        # difference is the backlog ``process`` waits on; two counters, so neither side needs the
        # lock per request.
        self._submitted = 0
        self._started = 0
        #: The caller is blocked in ``process`` waiting for the backlog to shrink.
        self._waiting = False
        #: Requests made / retried / failed for good (metrics; read without the lock).
        self.requests = 0
        self.retries = 0
        self.failures = 0
        #: Seconds of backoff waited before retries, summed over requests (metric).
        self.retry_wait = 0.0

    def for_subtask(self, index: int, count: int) -> Enrich:
        """A twin with the same options and its own event loop (the default deep copy would copy the
        lock). A deprecated ``RetryStrategy`` is carried over without warning again."""
        twin = Enrich(
            self.fn,
            per=self.per,
            ordered=self.ordered,
            capacity=self.capacity,
            timeout=self.timeout,
            on_error=("default", self._default) if self._on_error == "default" else self._on_error,  # type: ignore[arg-type]
            output=self._outputs[0] if self._single else list(self._outputs),
            output_type=self._types[0] if self._single else list(self._types),  # type: ignore[arg-type]
            setup=self.setup,
            teardown=self.teardown,
        )
        twin.retry, twin.retry_on_result = self.retry, self.retry_on_result
        twin._plan = _retry_plan(self.retry, self.retry_on_result)
        return twin

    def open(self) -> None:
        if self._thread is not None:
            return
        self._reset_state()
        loop = _new_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name=f"arrowflow-{self.name}", daemon=True)
        thread.start()
        started.wait()
        self._loop, self._thread = loop, thread
        if self.setup is not None:
            asyncio.run_coroutine_threadsafe(_as_coroutine(self.setup()), loop).result()

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None

        async def shutdown() -> None:
            self._work.clear()
            self._queue.clear()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.teardown is not None:
                await self.teardown()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            with self._cond:
                self._pending.clear()
                self._cond.notify_all()

    # -- the loop side -----------------------------------------------------------------------------

    def _submit(self, entry: _Pending, n_requests: int) -> None:
        """Loop thread: queue a batch's requests and start workers for them, up to ``capacity``."""
        self._work.append(entry)
        spawn = min(self.capacity - self._workers, self._submitted - self._started)
        if spawn > 0 and self._watchdog is None and self.timeout is not None and _WATCHDOG:
            self._watchdog = asyncio.get_running_loop().call_later(self._watch_period, self._watch)
        for _ in range(spawn):
            self._workers += 1
            # The loop keeps only weak references to tasks: hold them until they finish.
            task = asyncio.ensure_future(self._worker())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _next_request(self) -> tuple[_Pending, int, Any] | None:
        """Loop thread: the next request to start, converting the next chunk of rows when needed."""
        queue = self._queue
        if not queue:
            work = self._work
            if not work:
                return None
            entry = work[0]
            start = entry.cursor
            if self.per == "row":
                end = min(start + _CHUNK_ROWS, entry.batch.num_rows)
                rows = _row_dicts(entry.batch.slice(start, end - start))
                queue.extend(zip(itertools.repeat(entry), range(start, end), rows))
            else:
                end = 1
                queue.append((entry, 0, entry.batch))
            entry.cursor = end
            if end >= len(entry.results):
                work.popleft()
        return queue.popleft()

    async def _worker(self) -> None:
        """Run queued requests one after another until none is left (or a request failed for good)."""
        task = asyncio.current_task()
        assert task is not None
        slot = _Slot(task)
        self._slots.add(slot)
        try:
            while self._error is None:
                try:
                    item = self._next_request()
                except Exception as exc:  # e.g. a value to_pylist cannot convert
                    self._fail(exc)
                    return
                if item is None:
                    return
                entry, index, arg = item
                self._started += 1
                if self._waiting and self._submitted - self._started < self.capacity:
                    with self._cond:
                        self._cond.notify_all()
                failure: BaseException | None = None
                try:
                    value = await self._call(arg, slot)
                except _Failed as exc:
                    failure, value = exc.__cause__ or exc, None
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # a bug in our own bookkeeping must still surface
                    failure, value = exc, None
                entry.results[index] = value
                if value is _DROP or value is _DEFAULT:
                    entry.special += 1
                entry.remaining -= 1
                if failure is not None:
                    if entry.failure is None:
                        entry.failure = failure
                    self._fail(failure)
                if entry.remaining == 0:
                    with self._cond:
                        entry.done = True
                        self._completed.append(entry.seq)
                        self._cond.notify_all()
        finally:
            self._slots.discard(slot)
            self._workers -= 1

    def _fail(self, exc: BaseException) -> None:
        """Loop thread: record the first failure; the caller raises it from ``process``/``flush``."""
        with self._cond:
            if self._error is None:
                self._error = exc
            self._cond.notify_all()

    def _watch(self) -> None:
        """Loop thread, every ``_watch_period``: cancel the attempts that passed their deadline.

        One periodic scan over at most ``capacity`` workers replaces a timer (and, before 3.12, a
        Task) per attempt; an attempt therefore times out between ``timeout`` and ``timeout +
        _watch_period`` after it started.
        """
        now = time.monotonic()
        for slot in self._slots:
            if slot.deadline <= now:
                slot.deadline = _NO_DEADLINE
                slot.expired = True
                slot.task.cancel()
        if self._workers and self._loop is not None:
            self._watchdog = self._loop.call_later(self._watch_period, self._watch)
        else:
            self._watchdog = None

    async def _call(self, arg: Any, slot: _Slot) -> Any:
        """One request with timeout and retries; returns the result, ``_DROP``/``_DEFAULT``, or raises
        ``_Failed``."""
        fn, timeout, plan = self.fn, self.timeout, self._plan
        attempt = 0
        first = 0.0
        while True:
            attempt += 1
            if attempt == 1 and plan is not None:
                first = time.monotonic()  # what max_retry_time counts from
            try:
                if timeout is None:
                    result = await fn(arg)
                elif _WATCHDOG:
                    slot.deadline = time.monotonic() + timeout
                    try:
                        result = await fn(arg)
                    except asyncio.CancelledError:
                        if not slot.expired:
                            raise
                        raise TimeoutError(f"enrich request timed out after {timeout} s") from None
                    finally:
                        slot.deadline = _NO_DEADLINE
                        if slot.expired:
                            # Our own cancellation (fn may even have swallowed it): take it back so
                            # the task is not left "cancelling" for the requests that follow.
                            slot.expired = False
                            cast(Any, slot.task).uncancel()  # Python >= 3.11 only
                else:  # pragma: no cover - Python 3.10
                    try:
                        result = await asyncio.wait_for(fn(arg), timeout)
                    except asyncio.TimeoutError:
                        # Not an OSError before 3.11: raise what 3.11+ raises, so that
                        # default_classify retries a timeout on every version.
                        raise TimeoutError(f"enrich request timed out after {timeout} s") from None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if (
                    plan is not None
                    and plan.classify(exc)
                    and await self._wait_to_retry(plan, attempt, first)
                ):
                    continue
                return self._give_up(exc)
            if plan is not None and plan.on_result is not None and plan.on_result(result):
                if await self._wait_to_retry(plan, attempt, first):
                    continue
                return self._give_up(
                    _Failed(f"result {result!r} still rejected by retry_on_result after {attempt} attempts")
                )
            return result

    async def _wait_to_retry(self, plan: _RetryPlan, attempt: int, first: float) -> bool:
        """After failed attempt number ``attempt``: wait the backoff and return True, or return False
        (without waiting) when the plan allows no further attempt."""
        delay = plan.delay(attempt)
        if plan.exhausted(attempt, time.monotonic() - first, delay):
            return False
        self.retries += 1
        self.retry_wait += delay
        await asyncio.sleep(delay)
        return True

    def _give_up(self, exc: BaseException) -> Any:
        self.failures += 1
        if self._on_error == "drop":
            return _DROP
        if self._on_error == "default":
            return _DEFAULT
        failed = _Failed(str(exc) or type(exc).__name__)
        failed.__cause__ = exc
        raise failed

    # -- the caller side ---------------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            err = self._error
            raise EnrichError(f"enrich request failed: {err!r}") from err

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if self._loop is None:
            self.open()
        self._raise_if_failed()
        if batch.num_rows == 0:
            return self._ready()
        loop = self._loop
        assert loop is not None
        n = batch.num_rows if self.per == "row" else 1
        with self._cond:
            entry = _Pending(self._seq, batch, n)
            self._seq += 1
            self._pending[entry.seq] = entry
            self._submitted += n
        self.requests += n
        # One thread-safe hand-over per batch; the loop turns rows into requests itself.
        loop.call_soon_threadsafe(self._submit, entry, n)
        with self._cond:
            # Backpressure: wait until fewer than ``capacity`` requests wait to start, so at most
            # about one batch is queued beyond the ``capacity`` requests in flight.
            while self._submitted - self._started >= self.capacity and self._error is None and self._loop:
                self._waiting = True
                self._cond.wait()
            self._waiting = False
        return self._ready()

    def _ready(self) -> list[pa.RecordBatch]:
        """Pop the batches that may leave now, and build their output columns."""
        done: list[_Pending] = []
        with self._cond:
            self._raise_if_failed()
            if self.ordered:
                while self._pending:
                    seq, entry = next(iter(self._pending.items()))
                    if not entry.done:
                        break
                    done.append(self._pending.pop(seq))
                self._completed.clear()
            else:
                while self._completed:
                    done.append(self._pending.pop(self._completed.popleft()))
        out = []
        for entry in done:
            built = self._build(entry)
            if built is not None and built.num_rows:
                out.append(built)
        return out

    def flush(self) -> Sequence[pa.RecordBatch]:
        if self._loop is None:
            return []
        with self._cond:
            while self._error is None and self._loop is not None:
                if all(entry.done for entry in self._pending.values()):
                    break
                self._cond.wait()
        return self._ready()

    # -- building output ---------------------------------------------------------------------------

    def _build(self, entry: _Pending) -> pa.RecordBatch | None:
        batch = entry.batch
        n = batch.num_rows
        if self.per == "batch":
            result = entry.results[0]
            if result is _DROP:
                return None
            if result is _DEFAULT:
                columns = self._default_columns(n)
            else:
                columns = self._columns_from_batch_result(result, n)
            return self._append(batch, columns)
        results = entry.results
        if entry.special:
            results = [self._default if r is _DEFAULT else r for r in results]
            keep = np.fromiter((r is not _DROP for r in results), dtype=bool, count=n)
            if not keep.all():
                batch = batch.filter(pa.array(keep))
                results = [r for r in results if r is not _DROP]
        columns = [results] if self._single else [[_get(r, name) for r in results] for name in self._outputs]
        arrays = [pa.array(col, type=t) for col, t in zip(columns, self._types, strict=True)]
        return self._append(batch, arrays)

    def _default_columns(self, n: int) -> list[pa.Array]:
        values = [self._default] if self._single else [_get(self._default, o) for o in self._outputs]
        return [
            pa.repeat(v if isinstance(v, pa.Scalar) else pa.scalar(v, type=t), n)
            for v, t in zip(values, self._types, strict=True)
        ]

    def _columns_from_batch_result(self, result: Any, n: int) -> list[pa.Array]:
        if self._single:
            parts = [result]
        else:
            if not isinstance(result, dict):
                raise TypeError(f"enrich fn must return a dict of {self._outputs} for several outputs")
            parts = [result[o] for o in self._outputs]
        arrays = []
        for values, t in zip(parts, self._types, strict=True):
            arr = to_arrow_array(values, n, what="enrich fn") if t is None else _typed(values, t, n)
            arrays.append(arr)
        return arrays

    def _append(self, batch: pa.RecordBatch, arrays: list[pa.Array]) -> pa.RecordBatch:
        for name, arr in zip(self._outputs, arrays, strict=True):
            idx = batch.schema.get_field_index(name)
            batch = batch.set_column(idx, name, arr) if idx >= 0 else batch.append_column(name, arr)
        return batch


_DATETIME_MIN = np.datetime64("0001-01-01T00:00:00", "us")
_DATETIME_MAX = np.datetime64("9999-12-31T23:59:59.999999", "us")


def _fast_pylist(column: pa.Array) -> list[Any] | None:
    """``column.to_pylist()`` through numpy for the types where both give the same Python values.

    pyarrow builds a scalar per value and, for timestamps, converts each through its own datetime
    code (~2.4 us a value; numpy's ``tolist`` takes ~0.08 us). Only null-free columns of integers,
    float32/64, booleans, strings and naive s/ms/us timestamps inside ``datetime``'s range qualify;
    anything else returns ``None`` (the caller falls back to ``to_pylist``).
    """
    if column.null_count:
        return None
    t = column.type
    if (
        pa.types.is_integer(t)
        or pa.types.is_float32(t)
        or pa.types.is_float64(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
    ):
        return column.to_numpy(zero_copy_only=False).tolist()  # type: ignore[no-any-return]
    if pa.types.is_timestamp(t) and t.tz is None and t.unit in ("s", "ms", "us") and len(column):
        values = column.to_numpy(zero_copy_only=False)
        # numpy gives ints instead of datetimes outside datetime's range; pyarrow would not.
        if values.min() >= _DATETIME_MIN and values.max() <= _DATETIME_MAX:
            return values.tolist()  # type: ignore[no-any-return]
    return None


def _row_dicts(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """``batch.to_pylist()``, equal value for value, built column-wise (see ``_fast_pylist``)."""
    names = batch.schema.names
    if not names:
        return [{} for _ in range(batch.num_rows)]
    columns = []
    for column in batch.columns:
        values = _fast_pylist(column)
        columns.append(column.to_pylist() if values is None else values)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable


def _get(result: Any, name: str) -> Any:
    if result is None:
        return None
    if isinstance(result, dict):
        return result.get(name)
    raise TypeError(
        f"enrich fn must return a dict with keys for several outputs, got {type(result).__name__}"
    )


def _typed(values: Any, t: pa.DataType, n: int) -> pa.Array:
    arr = to_arrow_array(values, n, what="enrich fn")
    return arr if arr.type == t else arr.cast(t)
