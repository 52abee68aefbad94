"""The single-process pipeline runner: bounded queues, aligned checkpoints, delivery guarantees.

Threads and queues::

    reader thread --q(queue_size)--> operator thread --q(queue_size)--> writer thread
        (split readers, round robin;     (Operator.process / flush)        (Sink.write, checkpoints)
         discovery, barriers)

The operator thread exists only when there are operators. The caller's thread supervises: it refreshes
progress and metrics, handles signals, and re-raises the first error of any stage. Every blocking
``put``/``get`` uses a short timeout and checks the abort flag, so a failing stage never leaves the
others hanging; a full queue blocks its producer (backpressure). A batch travels through the queues
as ``(batch, nbytes)``, its size measured once by the stage that made it.

Checkpoints (Flink-style barriers, aligned by draining a FIFO pipeline):

1. The reader thread records ``snapshot()`` of every split reader - the position after the last batch
   it has put into the queue - and puts a barrier behind those batches. It keeps reading: everything
   after the barrier belongs to the next checkpoint. At most one checkpoint is in flight.
2. The operator thread, on the barrier, calls ``flush()`` on each operator in order (passing what a
   flush returns through the following operators) and forwards the barrier.
3. The writer thread, on the barrier, calls ``sink.flush()`` (or ``prepare_commit()`` for a two-phase
   sink), writes the checkpoint {splits, positions, finished splits, committables} atomically to the
   store, then ``sink.commit(committables)``, and reports the checkpoint complete.
4. The reader thread then calls ``reader.commit(position)`` for every split, and closes readers of
   finished splits.

Event time (:mod:`arrowflow.pipeline.eventtime`). With a ``WatermarkStrategy`` the reader thread keeps
a watermark per split (updated with every batch) and, at most every ``watermark_interval`` seconds
(Flink's periodic watermark emission; ``0``, or watermark alignment: after every batch) and before
every barrier, recomputes the
pipeline watermark (minimum over active splits, idleness included) and puts a ``_Watermark`` item into
the queue, behind the batches read so far, when it advanced. Rows are late when they are behind the
watermark last emitted. A split paused by watermark alignment is not read. When a bounded source is
exhausted (not on a stop or ``max_rows``) the reader emits ``MAX_WATERMARK`` before the final barrier,
with or without a strategy. The operator thread hands a watermark to each operator in order
(``on_watermark``; what it emits runs through the following operators first), then forwards what the
last operator passes on; the writer thread gives it to ``sink.on_watermark``. Operators with a
``timer_interval`` get ``on_processing_time`` calls from the operator thread even when no item arrives.

Operator state. At a barrier, after ``flush()``, the operator thread writes ``snapshot_state()`` of every
stateful operator as Arrow IPC files under the checkpoint directory and attaches the references to the
barrier; the writer stores them, with the reader's watermark state, in the checkpoint. On restart
``restore_state`` gets them back before the first batch, and the reader re-emits the restored watermark.

Without a ``checkpoint_dir`` step 3 skips the store (a checkpoint is then just a sink flush/commit
that lets sources acknowledge upstream). ``guarantee="none"`` takes no periodic checkpoints: only the
final one at the end of the run, which flushes the sink and acknowledges the sources.

A crash anywhere leaves the last complete checkpoint in the store. On start, the runner plans splits,
adds splits known only to the checkpoint, skips finished ones, reopens the rest from their saved
positions and calls ``sink.recover(committables)`` on a two-phase sink before anything is written
(after ``sink.attach_state_dir(<checkpoint_dir>/sink-state)``, a directory the sink may keep local
state in, such as the Kafka sink's journal of its open transaction).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from ..config import check_choice, check_positive, check_type
from ..errors import CheckpointError, ConfigurationError
from ..ops.base import Operator
from ..sink import Sink, TwoPhaseSink
from ..source import Position, Source, Split, SplitReader
from ..time import MAX_WATERMARK, MIN_WATERMARK
from .checkpoint import Checkpoint, CheckpointStore
from .eventtime import EventTime, SourceEventTime
from .metrics import MetricsServer, RunMetrics, StageStats
from .signals import stop_on_signals

__all__ = ["GUARANTEES", "RunConfig", "RunResult", "execute"]

Guarantee = Literal["at-least-once", "exactly-once", "none"]
GUARANTEES: tuple[str, ...] = ("at-least-once", "exactly-once", "none")

#: How long a blocked ``put``/``get`` waits before re-checking the abort flag.
_POLL = 0.05
#: How long the caller waits for stage threads after an abort before giving up on them.
_ABORT_JOIN = 5.0


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Options of :meth:`arrowflow.Pipeline.run` (see there)."""

    checkpoint_dir: str | os.PathLike[str] | None = None
    checkpoint_interval: float = 10.0
    guarantee: str = "at-least-once"
    max_rows: int | None = None
    progress: bool = True
    metrics_port: int | None = None
    max_batch_rows: int = 65536
    read_timeout: float = 0.2
    queue_size: int = 4
    stop_event: threading.Event | None = None
    watermark_interval: float = 0.2

    def __post_init__(self) -> None:
        check_choice("guarantee", self.guarantee, GUARANTEES)
        check_type("checkpoint_dir", self.checkpoint_dir, (str, os.PathLike), allow_none=True)
        check_positive("checkpoint_interval", self.checkpoint_interval)
        check_type("max_rows", self.max_rows, int, allow_none=True)
        if self.max_rows is not None and (isinstance(self.max_rows, bool) or self.max_rows < 0):
            raise ConfigurationError(f"max_rows must be >= 0, got {self.max_rows!r}", option="max_rows")
        check_type("progress", self.progress, bool)
        check_type("metrics_port", self.metrics_port, int, allow_none=True)
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError(f"metrics_port out of range: {self.metrics_port}", option="metrics_port")
        for name in ("max_batch_rows", "queue_size"):
            value = getattr(self, name)
            check_type(name, value, int)
            check_positive(name, value)
        check_positive("read_timeout", self.read_timeout)
        check_type("watermark_interval", self.watermark_interval, (int, float))
        if isinstance(self.watermark_interval, bool) or self.watermark_interval < 0:
            raise ConfigurationError(
                f"watermark_interval must be >= 0 seconds, got {self.watermark_interval!r}",
                option="watermark_interval",
            )
        check_type("stop_event", self.stop_event, threading.Event, allow_none=True)
        if self.guarantee == "none" and self.checkpoint_dir is not None:
            raise ConfigurationError(
                "guarantee='none' takes no checkpoints; drop checkpoint_dir or choose another guarantee",
                option="checkpoint_dir",
            )
        if self.guarantee == "exactly-once" and self.checkpoint_dir is None:
            raise ConfigurationError(
                "guarantee='exactly-once' needs checkpoint_dir (where positions and committables are stored)",
                option="checkpoint_dir",
            )


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What a run did.

    ``rows``/``bytes``/``batches`` count what the source emitted (``bytes`` is Arrow ``nbytes``);
    ``rows_written`` etc. what reached the sink (after filters). ``checkpoints`` counts completed
    checkpoints, including the final one (without a ``checkpoint_dir`` a checkpoint is a sink flush).
    ``stopped`` is True when the run ended on a stop request (signal, ``stop()``, ``stop_event``).
    ``lag`` is the last sum of ``SplitReader.lag()`` over splits that report it (``None``: none do).

    Event time (see :mod:`arrowflow.time`; ``None``/empty without watermarks): ``watermark`` is the
    pipeline watermark at the end in int64 microseconds since the epoch (``MAX_WATERMARK`` when a
    bounded input was read to its end; :func:`arrowflow.time.to_datetime` makes it a ``datetime``),
    ``split_watermarks`` the watermark of each split, ``event_time_lag``/``split_event_time_lag``
    wall-clock time minus those watermarks in seconds, ``late_rows`` the rows that were behind the
    pipeline watermark when read (a window's late rows are in its :class:`StageStats`).
    """

    rows: int
    bytes: int
    batches: int
    rows_written: int
    bytes_written: int
    batches_written: int
    checkpoints: int
    last_checkpoint_id: int | None
    checkpoint_seconds_last: float
    checkpoint_seconds_total: float
    duration: float
    stopped: bool
    lag: int | None = None
    stages: tuple[StageStats, ...] = ()
    sink_metrics: dict[str, int] = field(default_factory=dict)
    watermark: int | None = None
    split_watermarks: dict[str, int] = field(default_factory=dict)
    event_time_lag: float | None = None
    split_event_time_lag: dict[str, float | None] = field(default_factory=dict)
    late_rows: int = 0

    def stage(self, name: str) -> StageStats:
        """The first stage called ``name`` (``"source"``, an operator's name, ``"sink"``)."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


@dataclass(frozen=True)
class _Barrier:
    checkpoint_id: int
    final: bool
    started: float
    splits: tuple[Split, ...]
    positions: dict[str, Position]
    finished: tuple[str, ...]
    watermarks: Mapping[str, Any] = field(default_factory=dict)
    operator_state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Watermark:
    """The pipeline watermark advanced to ``value`` (int64 microseconds); travels in order with batches."""

    value: int


class _End:
    """Marks the end of the stream (after the final barrier)."""


_END = _End()


class _Aborted(Exception):
    """Raised inside a stage thread when another stage failed; the thread just exits."""


class _Run:
    """One execution of a pipeline. Created and driven by :func:`execute`."""

    def __init__(
        self,
        source: Source,
        operators: Sequence[Operator],
        sink: Sink,
        config: RunConfig,
        stop: threading.Event,
        event_time: EventTime | None = None,
    ) -> None:
        self.source = source
        self.ops = list(operators)
        self.sink = sink
        self.cfg = config
        self.stop = stop
        self.abort = threading.Event()
        self.writer_done = threading.Event()
        self.error: BaseException | None = None
        self._error_lock = threading.Lock()
        self.stopped = False
        self.two_phase = isinstance(sink, TwoPhaseSink)
        self.store = (
            CheckpointStore(config.checkpoint_dir)
            if config.checkpoint_dir is not None and config.guarantee != "none"
            else None
        )
        self.metrics = RunMetrics(
            stages=[StageStats("source"), *(StageStats(op.name) for op in self.ops), StageStats("sink")]
        )
        self.q_ops: queue.Queue[Any] | None = queue.Queue(config.queue_size) if self.ops else None
        self.q_sink: queue.Queue[Any] = queue.Queue(config.queue_size)
        self.completed: queue.SimpleQueue[int] = queue.SimpleQueue()
        # Reader-thread state (touched by the caller's thread only before start and after join).
        self.splits: dict[str, Split] = {}
        self.readers: dict[str, SplitReader] = {}
        self.retiring: dict[str, SplitReader] = {}
        self.positions: dict[str, Position] = {}
        self.finished: set[str] = set()
        self.pending: dict[int, tuple[dict[str, Position], set[str]]] = {}
        self.in_flight: int | None = None
        self.next_id = 1
        self.metrics_server: MetricsServer | None = None
        self.event_time = SourceEventTime(event_time, self.metrics)
        self.next_watermark = 0.0
        #: The last watermark the writer handed to the sink.
        self.sink_watermark: int | None = None

    # -- helpers -----------------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        with self._error_lock:
            if self.error is None:
                self.error = exc
        self.abort.set()

    def stop_requested(self) -> bool:
        ev = self.cfg.stop_event
        if self.stop.is_set() or (ev is not None and ev.is_set()):
            self.stopped = True
            return True
        return False

    def put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            try:
                q.put(item, timeout=_POLL)
                return
            except queue.Full:
                if self.abort.is_set():
                    raise _Aborted() from None

    def get(self, q: queue.Queue[Any]) -> Any:
        while True:
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                if self.abort.is_set():
                    raise _Aborted() from None

    def poll(self, q: queue.Queue[Any], timeout: float) -> Any:
        """Like :meth:`get` but returns ``None`` after ``timeout`` seconds without an item."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return q.get(timeout=max(min(_POLL, deadline - time.monotonic()), 0.001))
            except queue.Empty:
                if self.abort.is_set():
                    raise _Aborted() from None
                if time.monotonic() >= deadline:
                    return None

    def guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except _Aborted:
                pass
            except BaseException as exc:
                self.fail(exc)

        return run

    # -- restore -----------------------------------------------------------------------------------

    def restore(self) -> None:
        """Plan splits, merge in the checkpoint, open readers, recover the sink. Runs before threads."""
        checkpoint = self.store.load() if self.store is not None else None
        if self.store is not None:
            self.store.discard_incomplete_state(checkpoint.checkpoint_id if checkpoint is not None else 0)
        for s in self.source.plan():
            self.splits[s.split_id] = s
        committables: list[Any] = []
        if checkpoint is not None:
            for s in checkpoint.splits:
                self.splits.setdefault(s.split_id, s)
            self.positions = dict(checkpoint.positions)
            self.finished = set(checkpoint.finished)
            self.next_id = checkpoint.checkpoint_id + 1
            self.metrics.last_checkpoint_id = checkpoint.checkpoint_id
            committables = list(checkpoint.committables)
            self.event_time.restore(checkpoint.watermarks)
            for sid in self.finished:
                self.event_time.finish_split(sid)  # read to its end before: never holds the watermark
        self.restore_operators(checkpoint)
        if self.two_phase and self.store is not None:
            # Also on a fresh start: lets the sink discard output of a run that died before its first
            # checkpoint.
            assert isinstance(self.sink, TwoPhaseSink)
            self.sink.attach_state_dir(self.store.directory / "sink-state")
            self.sink.recover(committables)
        for sid, s in self.splits.items():
            if sid not in self.finished:
                self.readers[sid] = self.source.open(s, self.positions.get(sid))
                self.event_time.add_split(sid)

    def restore_operators(self, checkpoint: Checkpoint | None) -> None:
        """Give every operator its state from ``checkpoint`` - an empty one when it has none there, so
        an operator reused for another start (an in-process restart) never keeps state from after it."""
        refs = dict(checkpoint.operator_state) if checkpoint is not None else {}
        for key, ref in refs.items():
            index = int(key)
            if index >= len(self.ops) or self.ops[index].name != ref.get("operator"):
                have = self.ops[index].name if index < len(self.ops) else "nothing"
                raise CheckpointError(
                    f"the checkpoint holds state of operator {ref.get('operator')!r} at position {index}; "
                    f"this pipeline has {have} there (a changed pipeline cannot resume this checkpoint)"
                )
        for index, op in enumerate(self.ops):
            ref = refs.get(str(index))
            op.restore_state(self.store.read_state(ref) if ref is not None and self.store is not None else {})

    # -- reader thread -----------------------------------------------------------------------------

    def reader_loop(self) -> None:
        cfg = self.cfg
        out = self.q_ops if self.q_ops is not None else self.q_sink
        stats = self.metrics.stages[0]
        interval = cfg.checkpoint_interval if cfg.guarantee != "none" else None
        now = time.monotonic()
        next_checkpoint = now + interval if interval is not None else None
        disc_every = self.source.discovery_interval
        next_discovery = now + disc_every if disc_every is not None else None
        next_lag = now
        rows_left = cfg.max_rows
        et = self.event_time
        et.open()
        if et.enabled and self.metrics.watermark not in (None, MIN_WATERMARK):
            self.put(out, _Watermark(self.metrics.watermark))  # restored: downstream starts from it
        exhausted = False
        while True:
            if self.abort.is_set():
                raise _Aborted()
            self.drain_completions()
            if self.stop_requested() or rows_left == 0:
                break
            if self.source.bounded and not self.readers:
                exhausted = True
                break
            got = False
            readable = 0
            timeout = cfg.read_timeout / max(len(self.readers), 1)
            for sid, reader in list(self.readers.items()):
                if not reader.finished and not et.paused(sid):
                    readable += 1
                    limit = cfg.max_batch_rows if rows_left is None else min(cfg.max_batch_rows, rows_left)
                    t0 = time.perf_counter()
                    batch = reader.read_batch(limit, timeout)
                    stats.busy_seconds += time.perf_counter() - t0
                    if batch is not None and batch.num_rows:
                        if batch.num_rows > limit:  # a reader that ignored max_rows
                            batch = batch.slice(0, limit)
                        got = True
                        n = batch.num_rows
                        if rows_left is not None:
                            rows_left -= n
                        self.emit_batch(out, sid, batch)
                if reader.finished:
                    self.retire(sid, reader)
                if rows_left == 0 or self.abort.is_set():
                    break
            now = time.monotonic()
            if now >= self.next_watermark:
                self.emit_watermark(out)
            if now >= next_lag:
                self.update_lag()
                next_lag = now + 1.0
            if next_discovery is not None and now >= next_discovery:
                self.discover()
                next_discovery = now + (disc_every or 0.0)
            if next_checkpoint is not None and self.in_flight is None and now >= next_checkpoint:
                self.emit_barrier(out, final=False)
                next_checkpoint = now + (interval or 0.0)
            if not got and not readable:
                # Nothing to read from (an idle unbounded source without splits, or every split paused
                # by watermark alignment): don't spin.
                self.abort.wait(min(cfg.read_timeout, _POLL))
        self.update_lag()
        if exhausted:
            # The whole input was read: every event time is complete (windows and partitions close).
            et.end_of_input()
            self.put(out, _Watermark(MAX_WATERMARK))
        self.emit_barrier(out, final=True)
        self.put(out, _END)

    def emit_batch(self, out: queue.Queue[Any], split_id: str, batch: pa.RecordBatch) -> None:
        """Count a batch a split returned, apply event time to it, queue it, then any new watermark."""
        m, stats = self.metrics, self.metrics.stages[0]
        n = batch.num_rows
        m.rows += n
        # nbytes walks every buffer of a sliced batch (~3 us a column): measured once here and carried
        # with the batch, so the writer need not repeat it.
        nbytes = batch.nbytes
        m.bytes += nbytes
        m.batches += 1
        kept = self.event_time.on_batch(split_id, batch)
        stats.late_rows = m.late_rows
        if kept is None:
            return
        if kept is not batch:
            n, nbytes = kept.num_rows, kept.nbytes
        stats.batches_out += 1
        stats.rows_out += n
        self.put(out, (kept, nbytes))
        if not self.cfg.watermark_interval or self.event_time.aligned:
            # Alignment decides on pauses with every batch: a split must not run far past its drift.
            self.emit_watermark(out)

    def emit_watermark(self, out: queue.Queue[Any]) -> None:
        """Queue the pipeline watermark, behind the batches read so far, if it advanced."""
        self.next_watermark = time.monotonic() + self.cfg.watermark_interval
        wm = self.event_time.poll()
        if wm is not None:
            self.put(out, _Watermark(wm))

    def retire(self, sid: str, reader: SplitReader) -> None:
        """A bounded split ended: remember its final position; close it once a checkpoint commits it."""
        self.positions[sid] = reader.snapshot()
        self.finished.add(sid)
        self.event_time.finish_split(sid)
        self.retiring[sid] = reader
        del self.readers[sid]

    def discover(self) -> None:
        known = list(self.splits.values())
        for s in self.source.discover(known):
            if s.split_id not in self.splits:
                self.splits[s.split_id] = s
                self.readers[s.split_id] = self.source.open(s, self.positions.get(s.split_id))
                self.event_time.add_split(s.split_id)

    def update_lag(self) -> None:
        lags = [lag for lag in (r.lag() for r in self.readers.values()) if lag is not None]
        self.metrics.lag = sum(lags) if lags else None
        self.event_time.update_metrics()

    def emit_barrier(self, out: queue.Queue[Any], *, final: bool) -> None:
        positions = dict(self.positions)
        for sid, reader in self.readers.items():
            positions[sid] = reader.snapshot()
        self.emit_watermark(out)  # downstream sees the freshest watermark before the checkpoint
        self.event_time.flush()  # late rows before the barrier reach their dead-letter sink first
        barrier = _Barrier(
            checkpoint_id=self.next_id,
            final=final,
            started=time.monotonic(),
            splits=tuple(self.splits.values()),
            positions=positions,
            finished=tuple(sorted(self.finished)),
            watermarks=self.event_time.snapshot() or {},
        )
        self.next_id += 1
        self.pending[barrier.checkpoint_id] = (positions, set(self.retiring))
        self.in_flight = barrier.checkpoint_id
        self.put(out, barrier)

    def drain_completions(self) -> None:
        """Acknowledge upstream every checkpoint the writer has made durable (reader thread only)."""
        while True:
            try:
                cid = self.completed.get_nowait()
            except queue.Empty:
                return
            positions, retired = self.pending.pop(cid)
            for sid, pos in positions.items():
                reader = self.readers.get(sid) or self.retiring.get(sid)
                if reader is not None:
                    reader.commit(pos)
            for sid in retired:
                reader = self.retiring.pop(sid, None)
                if reader is not None:
                    reader.close()
            if self.in_flight == cid:
                self.in_flight = None

    # -- operator thread ---------------------------------------------------------------------------

    def ops_loop(self) -> None:
        assert self.q_ops is not None
        for op in self.ops:
            op.open()
        timers = [op.timer_interval for op in self.ops if op.timer_interval is not None]
        tick = min(timers) if timers else None
        next_tick = time.monotonic() + tick if tick is not None else None
        while True:
            if next_tick is None:
                item = self.get(self.q_ops)
            else:
                item = self.poll(self.q_ops, max(next_tick - time.monotonic(), 0.0))
                if time.monotonic() >= next_tick:
                    self.fire_timers()
                    next_tick = time.monotonic() + (tick or 0.0)
                if item is None:
                    continue
            if isinstance(item, tuple):
                self.push(0, [item[0]])
            elif isinstance(item, _Watermark):
                self.put(self.q_sink, _Watermark(self.advance_operators(item.value)))
            elif isinstance(item, _Barrier):
                self.put(self.q_sink, self.barrier_operators(item))
            else:  # _END: always preceded by the final barrier, which flushed everything
                self.put(self.q_sink, item)
                return

    def run_hook(self, index: int, call: Callable[[], Sequence[pa.RecordBatch]]) -> None:
        """Call an operator hook that may emit batches; send them through the following operators."""
        stage = self.metrics.stages[index + 1]
        t0 = time.perf_counter()
        emitted = [b for b in call() if b.num_rows]
        stage.busy_seconds += time.perf_counter() - t0
        stage.batches_out += len(emitted)
        stage.rows_out += sum(b.num_rows for b in emitted)
        stage.late_rows = self.ops[index].late_rows
        self.push(index + 1, emitted)

    def advance_operators(self, watermark: int) -> int:
        """Give ``watermark`` to each operator in order; the watermark the last one passes on."""
        for i, op in enumerate(self.ops):
            self.run_hook(i, lambda op=op, wm=watermark: op.on_watermark(wm))  # type: ignore[misc]
            watermark = op.forward_watermark(watermark)
        return watermark

    def fire_timers(self) -> None:
        now = time.time()
        for i, op in enumerate(self.ops):
            if op.timer_interval is not None:
                self.run_hook(i, lambda op=op: op.on_processing_time(now))  # type: ignore[misc]

    def barrier_operators(self, barrier: _Barrier) -> _Barrier:
        """Flush every operator (nothing stateless is held across a barrier), then snapshot state."""
        for i, op in enumerate(self.ops):
            self.run_hook(i, op.flush)
        if self.store is None:
            return barrier
        refs: dict[str, Any] = {}
        for i, op in enumerate(self.ops):
            t0 = time.perf_counter()
            tables = op.snapshot_state()
            if tables is not None:
                refs[str(i)] = self.store.write_state(barrier.checkpoint_id, i, op.name, tables)
            self.metrics.stages[i + 1].busy_seconds += time.perf_counter() - t0
        return dataclasses.replace(barrier, operator_state=refs) if refs else barrier

    def push(self, start: int, batches: list[pa.RecordBatch]) -> None:
        """Run ``batches`` through operators ``start..`` and queue the results for the writer."""
        for i in range(start, len(self.ops)):
            if not batches:
                return
            op, stage = self.ops[i], self.metrics.stages[i + 1]
            out: list[pa.RecordBatch] = []
            t0 = time.perf_counter()
            for b in batches:
                stage.batches_in += 1
                stage.rows_in += b.num_rows
                out.extend(r for r in op.process(b) if r.num_rows)
            stage.busy_seconds += time.perf_counter() - t0
            stage.batches_out += len(out)
            stage.rows_out += sum(b.num_rows for b in out)
            stage.late_rows = op.late_rows
            batches = out
        for b in batches:
            self.put(self.q_sink, (b, b.nbytes))

    # -- writer thread -----------------------------------------------------------------------------

    def writer_loop(self) -> None:
        stage, m = self.metrics.stages[-1], self.metrics
        while True:
            item = self.get(self.q_sink)
            if isinstance(item, tuple):
                batch, nbytes = item
                t0 = time.perf_counter()
                self.sink.write(batch)
                stage.busy_seconds += time.perf_counter() - t0
                n = batch.num_rows
                stage.batches_in += 1
                stage.rows_in += n
                m.rows_written += n
                m.bytes_written += nbytes
                m.batches_written += 1
            elif isinstance(item, _Barrier):
                self.checkpoint(item)
            elif isinstance(item, _Watermark):
                self.sink_watermark = item.value
                self.sink.on_watermark(item.value)
            else:
                self.writer_done.set()
                return

    def checkpoint(self, barrier: _Barrier) -> None:
        t0 = time.perf_counter()
        committables: list[Any] = []
        sink = self.sink
        if isinstance(sink, TwoPhaseSink):
            committables = list(sink.prepare_commit())
        else:
            sink.flush()
        stage = self.metrics.stages[-1]
        stage.busy_seconds += time.perf_counter() - t0
        if self.abort.is_set():
            # Aborting (another stage failed, or a second signal): never publish a checkpoint now.
            raise _Aborted()
        if self.store is not None:
            self.store.save(
                Checkpoint(
                    checkpoint_id=barrier.checkpoint_id,
                    splits=barrier.splits,
                    positions=barrier.positions,
                    finished=barrier.finished,
                    committables=committables,
                    timestamp=time.time(),
                    watermarks=barrier.watermarks,
                    operator_state=barrier.operator_state,
                )
            )
        if isinstance(sink, TwoPhaseSink):
            sink.commit(committables)
        m = self.metrics
        elapsed = time.monotonic() - barrier.started
        m.checkpoints += 1
        m.checkpoint_last_seconds = elapsed
        m.checkpoint_total_seconds += elapsed
        m.last_checkpoint_id = barrier.checkpoint_id
        self.completed.put(barrier.checkpoint_id)

    # -- supervision -------------------------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        self.stop.set()

    def refresh_sink_metrics(self) -> None:
        with contextlib.suppress(Exception):
            self.metrics.sink = dict(self.sink.metrics())

    def result(self, duration: float) -> RunResult:
        m = self.metrics
        return RunResult(
            rows=m.rows,
            bytes=m.bytes,
            batches=m.batches,
            rows_written=m.rows_written,
            bytes_written=m.bytes_written,
            batches_written=m.batches_written,
            checkpoints=m.checkpoints,
            last_checkpoint_id=m.last_checkpoint_id,
            checkpoint_seconds_last=m.checkpoint_last_seconds,
            checkpoint_seconds_total=m.checkpoint_total_seconds,
            duration=duration,
            stopped=self.stopped,
            lag=m.lag,
            stages=tuple(StageStats(**s.as_dict()) for s in m.stages),
            sink_metrics=dict(m.sink),
            watermark=m.watermark,
            split_watermarks=dict(m.split_watermarks),
            event_time_lag=m.event_time_lag,
            split_event_time_lag=dict(m.split_event_time_lag),
            late_rows=m.late_rows,
        )


def execute(
    source: Source,
    operators: Sequence[Operator],
    sink: Sink,
    config: RunConfig,
    *,
    stop: threading.Event,
    on_start: Callable[[_Run], None] | None = None,
    event_time: EventTime | None = None,
) -> RunResult:
    """Run the pipeline to its end (see the module docstring); re-raise the first stage error.

    ``stop`` requests a graceful stop (final checkpoint) from any thread; ``event_time`` carries the
    watermark strategy and late-rows policy.
    """
    if config.guarantee == "exactly-once" and not (sink.transactional or sink.idempotent):
        raise ConfigurationError(
            f"guarantee='exactly-once' needs a transactional or idempotent sink; "
            f"{type(sink).__name__} is neither (use guarantee='at-least-once')",
            option="guarantee",
        )
    if config.guarantee == "exactly-once" and not source.replayable:
        # A restart must get the rows after the checkpoint again, else rows in flight at a crash are
        # lost (or delivered twice) whatever the sink does.
        raise ConfigurationError(
            f"guarantee='exactly-once' needs a replayable source; {type(source).__name__} "
            f"({source.name!r}) is not: after a restart it does not deliver again exactly the rows "
            f"after the checkpoint (use guarantee='at-least-once')",
            option="guarantee",
        )
    started = time.monotonic()
    run = _Run(source, operators, sink, config, stop, event_time)
    threads: list[threading.Thread] = []
    progress: Any = None
    try:
        run.restore()
        if config.metrics_port is not None:
            run.metrics_server = MetricsServer(
                run.metrics, config.metrics_port, refresh_sink=run.refresh_sink_metrics
            )
        if config.progress:
            from .progress import ProgressLine

            progress = ProgressLine(run.metrics)
        # Daemon threads: a stage stuck in a component after an abort must not keep the process alive.
        stages = [("reader", run.reader_loop), ("ops", run.ops_loop), ("writer", run.writer_loop)]
        for name, loop in stages:
            if name != "ops" or run.ops:
                threads.append(
                    threading.Thread(target=run.guarded(loop), name=f"arrowflow-{name}", daemon=True)
                )
        if on_start is not None:
            on_start(run)
        with stop_on_signals(run.on_signal):
            for t in threads:
                t.start()
            next_refresh = 0.0
            while not run.writer_done.is_set() and not run.abort.is_set():
                run.writer_done.wait(0.1)
                now = time.monotonic()
                if now >= next_refresh:
                    run.refresh_sink_metrics()
                    next_refresh = now + 0.5
                if progress is not None:
                    progress.update()
    except BaseException as exc:
        run.fail(exc)
    finally:
        all_joined = _join(threads, None if run.error is None else _ABORT_JOIN)
        if run.error is None and not all_joined:  # pragma: no cover - a stage hung past the end
            run.fail(RuntimeError("a pipeline stage did not finish"))
        run.refresh_sink_metrics()
        if progress is not None:
            with contextlib.suppress(Exception):
                progress.close()
        if run.metrics_server is not None:
            run.metrics_server.close()
        _close_all(run, clean=run.error is None, threads_done=all_joined)
    if run.error is not None:
        raise run.error
    return run.result(time.monotonic() - started)


def _join(threads: list[threading.Thread], timeout: float | None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    for t in threads:
        if not t.is_alive() and t.ident is None:
            continue  # never started
        t.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
    return not any(t.is_alive() for t in threads)


def _close_all(run: _Run, *, clean: bool, threads_done: bool) -> None:
    """Close readers, operators and the sink. After a failure, never commit anything.

    If a stage thread is still stuck inside a component (after an abort), that component is left
    alone: closing it concurrently would be unsafe.
    """
    errors: list[BaseException] = []

    def attempt(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            errors.append(exc)

    if not threads_done:
        return
    attempt(run.event_time.close)
    if clean:
        # Checkpoints the reader thread had no chance to acknowledge (the final one at least).
        attempt(run.drain_completions)
    for reader in [*run.readers.values(), *run.retiring.values()]:
        attempt(reader.close)
    for op in run.ops:
        attempt(op.close)
    sink = run.sink
    if clean:
        attempt(sink.close)
    elif isinstance(sink, TwoPhaseSink):
        err = run.error
        attempt(lambda: sink.__exit__(type(err), err, None))
    else:
        attempt(sink.close)
    if errors:
        if clean:
            raise errors[0]
        if run.error is not None:
            add_note = getattr(run.error, "add_note", None)  # Python >= 3.11
            for e in errors:
                if add_note is not None:
                    add_note(f"arrowflow: while closing after the failure: {e!r}")
