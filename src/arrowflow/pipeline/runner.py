"""The single-process pipeline runner: bounded channels, aligned checkpoints, restarts, parallel subtasks.

Tasks and channels (:mod:`arrowflow.pipeline.channels`), for ``parallelism=N``::

    reader 0 --> [operators 0] --> ... --> writer 0        (a sink that runs in parallel: N writers)
    reader 1 --> [operators 1] --> ... --> writer 1
        ...            \\  hash by key  /                    (a sink that cannot: one writer fed by all)

Each task is a thread. Reader ``i`` reads its share of the splits (assigned round robin by split id
at start; a split found by discovery goes to the reader with the fewest); each subtask runs its own
copy of the operator chain (:meth:`Operator.for_subtask`). The chain is cut in front of every keyed
operator (``key_columns``: windows, ``key_by``): there every subtask routes each row to the subtask
that owns its key (murmur2 of the key, modulo N; the partition kernel and a vectorized split of the
batch). Without operators the readers feed the writers directly. Each two-phase sink instance of a
parallel sink (:meth:`Sink.for_subtask`) prepares its own share. With ``parallelism=1`` this is the
plain ``reader -> operators -> writer`` chain of three threads (two without operators). The caller's
thread supervises: it refreshes progress and metrics, handles signals, and re-raises the first error
of any task. Every blocking put/get checks the abort flag, so a failing task never leaves the others
hanging; a full channel blocks its producer (backpressure). A batch travels as ``(batch, nbytes)``.

Checkpoints (Flink's aligned barriers; a :class:`_Coordinator` per attempt):

1. Every ``checkpoint_interval`` (when the previous checkpoint has completed) the coordinator
   triggers checkpoint ``n``. Each reader records ``snapshot()`` of each of its split readers - the
   position after the last batch it has sent - hands its part (splits, positions, finished splits,
   event-time state) to the coordinator and sends barrier ``n`` behind those batches on every
   channel. It keeps reading: everything after the barrier belongs to the next checkpoint.
2. A task with several input channels *aligns*: a channel that delivered barrier ``n`` is blocked
   until all have. The operator task then calls ``flush()`` on each operator in order (passing what a
   flush returns through the following operators), writes ``snapshot_state()`` of every stateful
   operator as Arrow IPC files (keyed by operator index and subtask), and forwards the barrier.
3. Each writer, on the aligned barrier, calls ``sink.flush()`` (or ``prepare_commit()`` for a two-phase
   sink) and hands its committables to the coordinator. The last writer writes the checkpoint
   {splits, positions, finished splits, committables, watermarks, operator state, parallelism}
   atomically to the store, then commits the sink(s): one ``commit`` of every instance's committables
   when any instance can commit them (files: all files before any partition marker), else each
   instance its own. A two-phase writer waits for that before writing again.
4. The readers then call ``reader.commit(position)`` for their splits, and close readers of finished
   splits.

Event time (:mod:`arrowflow.pipeline.eventtime`). With a ``WatermarkStrategy`` the readers share one
watermark tracker (a watermark per split, updated with every batch). At most every
``watermark_interval`` seconds (Flink's periodic emission; ``0``, or watermark alignment: after every
batch) and before every barrier, a reader recomputes the pipeline watermark (minimum over active
splits, idleness included) and sends it when it is above what it sent last. Rows are late when they
are behind the pipeline watermark. A split paused by alignment is not read. A task's watermark is the
minimum over its input channels; an operator task hands it to each operator in order
(``on_watermark``; what it emits runs through the following operators first) and sends on what the
last operator passes; a writer gives it to ``sink.on_watermark``. A reader whose splits of a bounded
source are all read sends ``MAX_WATERMARK`` on its channels; once every reader has, the run ends with
the final checkpoint (not on a stop or ``max_rows``: then windows stay open in the checkpoint).
Operators with a ``timer_interval`` get ``on_processing_time`` calls even when no item arrives.

Without a ``checkpoint_dir`` step 3 skips the store (a checkpoint is then just a sink flush/commit that
lets sources acknowledge upstream). ``guarantee="none"`` takes no periodic checkpoints: only the final
one at the end of the run, which flushes the sink and acknowledges the sources.

Start and restart. On start the runner plans splits, adds splits known only to the checkpoint, skips
finished ones, reopens the rest from their saved positions, gives every operator its state from the
checkpoint (an empty one without), and calls ``sink.recover(committables)`` on a two-phase sink before
anything is written (after ``sink.attach_state_dir(<checkpoint_dir>/sink-state)``). A checkpoint taken
with another parallelism is redistributed: split positions follow the splits, keyed operator state
follows the keys (:meth:`Operator.rescale_state`); state that is not keyed, and a sink whose
transactions only their own instance can commit when the checkpoint had more instances, are refused
with a :class:`~arrowflow.errors.CheckpointError`.

A failure stops every task. With ``restart=`` a retryable failure (:mod:`arrowflow.pipeline.restart`)
is followed, after the strategy's delay, by a new attempt in the same process: split readers and
operators are closed, the sink is ``reset()`` (a two-phase sink aborts its open transaction), and the
start above runs again from the last completed checkpoint. Without a ``checkpoint_dir`` a restart
reads every split again from where this run started (at-least-once). Anything else, or a strategy that
gives up, ends the run: a two-phase sink is aborted, nothing after the last checkpoint is committed,
and the error is raised.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from ..config import check_choice, check_positive, check_type
from ..errors import CheckpointError, ConfigurationError
from ..ops.base import Operator
from ..ops.partition import KeyRouter
from ..sink import Sink, TwoPhaseSink
from ..source import Position, Source, Split, SplitReader
from ..time import MAX_WATERMARK, MIN_WATERMARK
from .channels import END, POLL, Aborted, Barrier, Gate, Inputs, Output, Watermark
from .checkpoint import Checkpoint, CheckpointStore
from .eventtime import EventTime, SourceEventTime, merge_snapshots
from .metrics import MetricsServer, RunMetrics, StageStats
from .restart import NoRestart, RestartHistory, RestartStrategy, resolve_restart
from .signals import stop_on_signals

__all__ = ["GUARANTEES", "RunConfig", "RunResult", "execute"]

log = logging.getLogger("arrowflow.pipeline")

Guarantee = Literal["at-least-once", "exactly-once", "none"]
GUARANTEES: tuple[str, ...] = ("at-least-once", "exactly-once", "none")

#: How long the caller waits for task threads after an abort before giving up on them.
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
    restart: Any = None
    parallelism: int = 1

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
        for name in ("max_batch_rows", "queue_size", "parallelism"):
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
        object.__setattr__(self, "restart", resolve_restart(self.restart))
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
    With restarts the counters include every attempt (rows read again after a restart count again).

    Event time (see :mod:`arrowflow.time`; ``None``/empty without watermarks): ``watermark`` is the
    pipeline watermark at the end in int64 microseconds since the epoch (``MAX_WATERMARK`` when a
    bounded input was read to its end; :func:`arrowflow.time.to_datetime` makes it a ``datetime``),
    ``split_watermarks`` the watermark of each split, ``event_time_lag``/``split_event_time_lag``
    wall-clock time minus those watermarks in seconds, ``late_rows`` the rows that were behind the
    pipeline watermark when read (a window's late rows are in its :class:`StageStats`).

    ``restarts``: in-process restarts (``run(restart=...)``); ``restart_causes`` the error that caused
    each (``"ExceptionType: message"``). ``parallelism``: the number of parallel subtasks.
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
    restarts: int = 0
    restart_causes: tuple[str, ...] = ()
    parallelism: int = 1

    def stage(self, name: str) -> StageStats:
        """The first stage called ``name`` (``"source"``, an operator's name, ``"sink"``)."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


# -- planning ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    """Operators ``start..stop`` of the chain, run by one task per subtask. ``key``: the columns rows
    are routed by on their way in (``None``: they stay in their subtask)."""

    start: int
    stop: int
    key: tuple[str, ...] | None


def _segments(ops: Sequence[Operator], parallelism: int) -> list[_Segment]:
    """The chain cut in front of every keyed operator (one segment without parallel subtasks)."""
    if not ops:
        return []
    if parallelism == 1:
        return [_Segment(0, len(ops), None)]
    keyed = [i for i, op in enumerate(ops) if op.key_columns is not None]
    starts = sorted({0, *keyed})
    bounds = [*starts, len(ops)]
    return [
        _Segment(lo, hi, ops[lo].key_columns if lo in keyed else None)
        for lo, hi in itertools.pairwise(bounds)
    ]


def _state_key(index: int, subtask: int, parallelism: int) -> str:
    return str(index) if parallelism == 1 else f"{index}.{subtask}"


@dataclass
class _Tally:
    """Counters of one task (thread): written by it alone, summed by the supervisor."""

    stages: dict[int, StageStats]
    rows: int = 0
    bytes: int = 0
    batches: int = 0
    rows_written: int = 0
    bytes_written: int = 0
    batches_written: int = 0
    lag: int | None = None


@dataclass
class _ReaderPart:
    splits: list[Split]
    positions: dict[str, Position]
    finished: list[str]
    watermarks: Mapping[str, Any] | None


@dataclass
class _Parts:
    """What the tasks handed in for one checkpoint."""

    started: float
    readers: dict[int, _ReaderPart] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    sinks: dict[int, list[Any]] = field(default_factory=dict)


# -- the coordinator -----------------------------------------------------------------------------------


class _Coordinator:
    """Checkpoint triggers, the parts of each checkpoint, completion; the end of the run; ``max_rows``.

    Thread-safe: every reader, operator task and writer of an attempt calls it.
    """

    def __init__(self, att: _Attempt, next_id: int, readers: int, writers: int) -> None:
        cfg = att.exe.cfg
        self.att = att
        self.cond = threading.Condition()
        #: The last checkpoint triggered / completed (ids grow across runs of one checkpoint_dir).
        self.trigger_id = next_id - 1
        self.completed_id = next_id - 1
        self.final_id: int | None = None
        self.interval = cfg.checkpoint_interval if cfg.guarantee != "none" else None
        self.next_time = time.monotonic() + self.interval if self.interval is not None else None
        self.parts: dict[int, _Parts] = {}
        self.readers = readers
        self.writers = writers
        self.rows_left = cfg.max_rows
        self.reserved = 0
        self.exhausted: set[int] = set()
        self.stopped = False

    # -- triggers ------------------------------------------------------------------------------------

    def _trigger(self) -> None:
        self.trigger_id += 1
        self.parts[self.trigger_id] = _Parts(started=time.monotonic())

    def poll_trigger(self, now: float) -> None:
        """Trigger a periodic checkpoint when it is due and none is in flight."""
        if self.next_time is None or now < self.next_time:
            return
        with self.cond:
            if self.final_id is None and self.completed_id == self.trigger_id and now >= self.next_time:
                self._trigger()
                self.next_time = now + (self.interval or 0.0)

    def request_final(self, *, stopped: bool = False) -> None:
        """End the run: trigger the final checkpoint (once)."""
        with self.cond:
            if self.final_id is None:
                self._trigger()
                self.final_id = self.trigger_id
                self.stopped = stopped

    def next_barrier(self, last: int) -> tuple[int, bool] | None:
        """The barrier a reader that sent ``last`` sends next, and whether it is the final one."""
        with self.cond:
            if last < self.trigger_id:
                return last + 1, last + 1 == self.final_id
            return None

    # -- end of input and max_rows -------------------------------------------------------------------

    def try_exhaust(self, reader: _Reader) -> bool:
        """Mark ``reader`` as done with a bounded input, unless a split was just assigned to it."""
        with self.cond:
            if reader.inbox:
                return False
            self.exhausted.add(reader.index)
            return True

    def all_exhausted(self) -> bool:
        with self.cond:
            return len(self.exhausted) == self.readers

    def assign(self, split: Split, readers: Sequence[_Reader]) -> bool:
        """Give a discovered split to the reader with the fewest (never one done with its input)."""
        with self.cond:
            open_ = [r for r in readers if r.index not in self.exhausted]
            if not open_:
                return False
            target = min(open_, key=lambda r: (len(r.readers) + len(r.inbox), r.index))
            target.inbox.append(split)
            return True

    def reserve(self, want: int) -> int:
        """Rows a reader may read now under ``max_rows`` (``want`` without a limit)."""
        if self.rows_left is None:
            return want
        with self.cond:
            n = min(want, self.rows_left)
            self.rows_left -= n
            self.reserved += n
            return n

    def settle(self, reserved: int, used: int) -> None:
        if self.rows_left is None:
            return
        with self.cond:
            self.reserved -= reserved
            self.rows_left += reserved - used

    def budget_spent(self) -> bool:
        with self.cond:
            return self.rows_left == 0 and self.reserved == 0

    # -- parts and completion ------------------------------------------------------------------------

    def reader_part(self, cid: int, index: int, part: _ReaderPart) -> None:
        with self.cond:
            self.parts[cid].readers[index] = part

    def state_part(self, cid: int, key: str, ref: Any) -> None:
        with self.cond:
            self.parts[cid].state[key] = ref

    def sink_part(self, cid: int, index: int, committables: list[Any]) -> None:
        """A writer's part; the last one completes the checkpoint in its thread (after the one before)."""
        abort = self.att.abort
        with self.cond:
            parts = self.parts[cid]
            parts.sinks[index] = committables
            if len(parts.sinks) < self.writers:
                return
            while self.completed_id < cid - 1:
                if abort.is_set():
                    raise Aborted()
                self.cond.wait(POLL)
        self._complete(cid, parts)

    def wait_complete(self, cid: int) -> None:
        abort = self.att.abort
        with self.cond:
            while self.completed_id < cid:
                if abort.is_set():
                    raise Aborted()
                self.cond.wait(POLL)

    def _complete(self, cid: int, parts: _Parts) -> None:
        att = self.att
        exe = att.exe
        if att.abort.is_set():
            # Aborting (another task failed, or a second signal): never publish a checkpoint now.
            raise Aborted()
        splits: dict[str, Split] = {}
        positions: dict[str, Position] = {}
        finished: list[str] = []
        for index in sorted(parts.readers):
            part = parts.readers[index]
            splits.update((s.split_id, s) for s in part.splits)
            positions.update(part.positions)
            finished.extend(part.finished)
        per_sink = [parts.sinks[i] for i in range(self.writers)]
        flat = [c for share in per_sink for c in share]
        if exe.store is not None:
            exe.store.save(
                Checkpoint(
                    checkpoint_id=cid,
                    splits=tuple(splits.values()),
                    positions=positions,
                    finished=tuple(sorted(finished)),
                    committables=flat,
                    timestamp=time.time(),
                    watermarks=merge_snapshots([p.watermarks for p in parts.readers.values()]),
                    operator_state=dict(parts.state),
                    parallelism=exe.n,
                    sink_committables=per_sink if self.writers > 1 else None,
                )
            )
        if exe.two_phase:
            sinks = exe.sinks
            if len(sinks) > 1 and isinstance(sinks[0], TwoPhaseSink) and sinks[0].commits_from_any_instance:
                # One commit of every instance's output: a FileSink renames all files before writing
                # any partition marker, so no marker appears before another subtask's files.
                sinks[0].commit(flat)
            else:
                for sink, share in zip(sinks, per_sink, strict=True):
                    sink.commit(share)  # type: ignore[attr-defined]
        m = exe.metrics
        elapsed = time.monotonic() - parts.started
        with self.cond:
            m.checkpoints += 1
            m.checkpoint_last_seconds = elapsed
            m.checkpoint_total_seconds += elapsed
            m.last_checkpoint_id = cid
            self.completed_id = cid
            del self.parts[cid]
            self.cond.notify_all()


# -- tasks ---------------------------------------------------------------------------------------------


class _Reader:
    """Reader task ``index``: its splits, their readers and positions, its barriers and watermarks."""

    def __init__(self, att: _Attempt, index: int, out: Output) -> None:
        self.att = att
        self.index = index
        self.out = out
        self.splits: dict[str, Split] = {}
        self.readers: dict[str, SplitReader] = {}
        self.retiring: dict[str, SplitReader] = {}
        self.positions: dict[str, Position] = {}
        self.finished: set[str] = set()
        self.pending: dict[int, tuple[dict[str, Position], set[str]]] = {}
        #: Splits assigned by discovery, opened by this task.
        self.inbox: deque[Split] = deque()
        self.last_barrier = 0
        self.last_watermark = MIN_WATERMARK
        self.next_watermark = 0.0
        self.exhausted = False
        self.tally = _Tally(stages={0: StageStats("source")})
        self.stats = self.tally.stages[0]

    def run(self) -> None:
        att, cfg = self.att, self.att.exe.cfg
        coord, et = att.coord, att.et
        self.last_barrier = coord.completed_id
        if att.restored_watermark is not None:
            self.send_watermark(att.restored_watermark)  # restored: downstream starts from it
        next_lag = time.monotonic()
        while True:
            if att.abort.is_set():
                raise Aborted()
            self.drain_completions()
            while self.inbox:
                self.open_split(self.inbox.popleft())
            if self.send_barriers():
                return
            got, readable = False, 0
            if coord.final_id is None:
                if att.stop_requested():
                    coord.request_final(stopped=True)
                    continue
                got, readable = self.read_round()
                if (
                    att.exe.source.bounded
                    and not self.readers
                    and not self.exhausted
                    and coord.try_exhaust(self)
                ):
                    # This reader's share of the input is read: its channels get the final watermark
                    # (after the last one its splits made).
                    self.emit_watermark()
                    self.exhausted = True
                    self.send_watermark(MAX_WATERMARK)
                    if coord.all_exhausted():
                        et.end_of_input()
                        coord.request_final()
                    continue
            now = time.monotonic()
            if now >= self.next_watermark:
                self.emit_watermark()
            if now >= next_lag:
                self.update_lag()
                next_lag = now + 1.0
            att.maybe_discover(now)
            coord.poll_trigger(now)
            if not got and not readable:
                # Nothing to read from (no split, every split paused by alignment, the share read, the
                # end requested): don't spin.
                att.abort.wait(min(cfg.read_timeout, POLL))

    def read_round(self) -> tuple[bool, int]:
        """One ``read_batch`` per readable split; ``(got rows, splits readable)``."""
        att, cfg = self.att, self.att.exe.cfg
        coord, et = att.coord, att.et
        got, readable = False, 0
        timeout = cfg.read_timeout / max(len(self.readers), 1)
        for sid, reader in list(self.readers.items()):
            if not reader.finished and not et.paused(sid):
                limit = coord.reserve(cfg.max_batch_rows)
                if not limit:
                    if coord.budget_spent():
                        coord.request_final()
                    break
                readable += 1
                n = 0
                try:
                    t0 = time.perf_counter()
                    batch = reader.read_batch(limit, timeout)
                    self.stats.busy_seconds += time.perf_counter() - t0
                    if batch is not None and batch.num_rows:
                        if batch.num_rows > limit:  # a reader that ignored max_rows
                            batch = batch.slice(0, limit)
                        n = batch.num_rows
                finally:
                    coord.settle(limit, n)
                if n:
                    got = True
                    self.emit_batch(sid, batch)  # type: ignore[arg-type]
            if reader.finished:
                self.retire(sid, reader)
            if att.abort.is_set():
                break
        return got, readable

    def open_split(self, split: Split) -> None:
        sid = split.split_id
        self.splits[sid] = split
        self.readers[sid] = self.att.exe.source.open(split, self.positions.get(sid))
        self.att.et.add_split(sid)

    def emit_batch(self, split_id: str, batch: pa.RecordBatch) -> None:
        """Count a batch a split returned, apply event time to it, send it, then any new watermark."""
        t, stats = self.tally, self.stats
        n = batch.num_rows
        # nbytes walks every buffer of a sliced batch (~3 us a column): measured once here and carried
        # with the batch, so the writer need not repeat it.
        nbytes = batch.nbytes
        t.rows += n
        t.bytes += nbytes
        t.batches += 1
        et = self.att.et
        kept = et.on_batch(split_id, batch)
        if kept is None:
            return
        if kept is not batch:
            n, nbytes = kept.num_rows, kept.nbytes
        stats.batches_out += 1
        stats.rows_out += n
        self.out.data(kept, nbytes)
        if not self.att.exe.cfg.watermark_interval or et.aligned:
            # Alignment decides on pauses with every batch: a split must not run far past its drift.
            self.emit_watermark()

    def emit_watermark(self) -> None:
        """Send the pipeline watermark, behind the batches sent so far, if it is above the last sent."""
        self.next_watermark = time.monotonic() + self.att.exe.cfg.watermark_interval
        wm = self.att.et.advance()
        if wm is not None and wm > self.last_watermark:
            self.send_watermark(wm)

    def send_watermark(self, value: int) -> None:
        self.last_watermark = max(self.last_watermark, value)
        self.out.control(Watermark(value))

    def send_barriers(self) -> bool:
        """Send every barrier triggered since the last one; True after the final one (and the end)."""
        coord = self.att.coord
        while True:
            nxt = coord.next_barrier(self.last_barrier)
            if nxt is None:
                return False
            cid, final = nxt
            self.send_barrier(cid, final)
            self.last_barrier = cid
            if final:
                self.update_lag()
                self.out.control(END)
                return True

    def send_barrier(self, cid: int, final: bool) -> None:
        positions = dict(self.positions)
        for sid, reader in self.readers.items():
            positions[sid] = reader.snapshot()
        et = self.att.et
        if not self.exhausted:
            self.emit_watermark()  # downstream sees the freshest watermark before the checkpoint
        et.flush()  # late rows before the barrier reach their dead-letter sink first
        part = _ReaderPart(
            splits=list(self.splits.values()),
            positions=positions,
            finished=sorted(self.finished),
            watermarks=et.snapshot_splits(self.splits, self.last_watermark),
        )
        self.att.coord.reader_part(cid, self.index, part)
        self.pending[cid] = (positions, set(self.retiring))
        self.out.control(Barrier(cid, final))

    def drain_completions(self) -> None:
        """Acknowledge upstream every checkpoint that is durable (this task's splits only)."""
        done = self.att.coord.completed_id
        for cid in sorted(c for c in self.pending if c <= done):
            positions, retired = self.pending.pop(cid)
            for sid, pos in positions.items():
                reader = self.readers.get(sid) or self.retiring.get(sid)
                if reader is not None:
                    reader.commit(pos)
            for sid in retired:
                reader = self.retiring.pop(sid, None)
                if reader is not None:
                    reader.close()

    def retire(self, sid: str, reader: SplitReader) -> None:
        """A bounded split ended: remember its final position; close it once a checkpoint commits it."""
        self.positions[sid] = reader.snapshot()
        self.finished.add(sid)
        self.att.et.finish_split(sid)
        self.retiring[sid] = reader
        del self.readers[sid]

    def update_lag(self) -> None:
        lags = [lag for lag in (r.lag() for r in self.readers.values()) if lag is not None]
        self.tally.lag = sum(lags) if lags else None
        self.att.et.update_metrics()

    def close(self) -> list[BaseException]:
        errors: list[BaseException] = []
        for reader in [*self.readers.values(), *self.retiring.values()]:
            try:
                reader.close()
            except Exception as exc:
                errors.append(exc)
        return errors


class _OpTask:
    """Operators ``seg.start..seg.stop`` of subtask ``subtask``: barrier alignment, watermarks, state."""

    def __init__(
        self, att: _Attempt, seg: _Segment, subtask: int, ops: Sequence[Operator], gate: Gate, out: Output
    ) -> None:
        self.att = att
        self.seg = seg
        self.subtask = subtask
        self.ops = list(ops)
        self.gate = gate
        self.out = out
        self.inputs = Inputs(gate.channels)
        self.tally = _Tally(stages={seg.start + 1 + i: StageStats(op.name) for i, op in enumerate(ops)})
        self.stats = [self.tally.stages[seg.start + 1 + i] for i in range(len(ops))]

    def run(self) -> None:
        for op in self.ops:
            op.open()
        timers = [op.timer_interval for op in self.ops if op.timer_interval is not None]
        tick = min(timers) if timers else None
        next_tick = time.monotonic() + tick if tick is not None else None
        while True:
            if next_tick is None:
                got = self.gate.get()
            else:
                got = self.gate.get(max(next_tick - time.monotonic(), 0.0))
                if time.monotonic() >= next_tick:
                    self.fire_timers()
                    next_tick = time.monotonic() + (tick or 0.0)
                if got is None:
                    continue
            assert got is not None
            ch, item = got
            if isinstance(item, tuple):
                self.push(0, [item[0]])
            elif isinstance(item, Watermark):
                wm = self.inputs.watermark(ch, item.value)
                if wm is not None:
                    self.out.control(Watermark(self.advance_operators(wm)))
            elif isinstance(item, Barrier):
                if self.inputs.barrier(ch, item, self.gate):
                    self.barrier_operators(item)
                    self.out.control(item)
            elif self.inputs.end(ch):  # END: every channel sent its final barrier before it
                self.out.control(END)
                return

    def run_hook(self, i: int, call: Callable[[], Sequence[pa.RecordBatch]]) -> None:
        """Call an operator hook that may emit batches; send them through the following operators."""
        stage = self.stats[i]
        t0 = time.perf_counter()
        emitted = [b for b in call() if b.num_rows]
        stage.busy_seconds += time.perf_counter() - t0
        stage.batches_out += len(emitted)
        stage.rows_out += sum(b.num_rows for b in emitted)
        stage.late_rows = self.ops[i].late_rows
        self.push(i + 1, emitted)

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

    def barrier_operators(self, barrier: Barrier) -> None:
        """Flush every operator (nothing stateless is held across a barrier), then snapshot state."""
        for i, op in enumerate(self.ops):
            self.run_hook(i, op.flush)
        store = self.att.exe.store
        if store is None:
            return
        n = self.att.exe.n
        for i, op in enumerate(self.ops):
            t0 = time.perf_counter()
            tables = op.snapshot_state()
            if tables is not None:
                index = self.seg.start + i
                key = _state_key(index, self.subtask, n)
                ref = store.write_state(barrier.checkpoint_id, key, op.name, tables)
                self.att.coord.state_part(barrier.checkpoint_id, key, ref)
            self.stats[i].busy_seconds += time.perf_counter() - t0

    def push(self, start: int, batches: list[pa.RecordBatch]) -> None:
        """Run ``batches`` through operators ``start..`` and send the results on."""
        for i in range(start, len(self.ops)):
            if not batches:
                return
            op, stage = self.ops[i], self.stats[i]
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
            self.out.data(b, b.nbytes)


class _Writer:
    """Writer ``index``: one sink instance fed by its gate's channels."""

    def __init__(self, att: _Attempt, index: int, sink: Sink, gate: Gate, stage: int) -> None:
        self.att = att
        self.index = index
        self.sink = sink
        self.gate = gate
        self.inputs = Inputs(gate.channels)
        self.tally = _Tally(stages={stage: StageStats("sink")})
        self.stats = self.tally.stages[stage]

    def run(self) -> None:
        stage, t, sink = self.stats, self.tally, self.sink
        while True:
            got = self.gate.get()
            assert got is not None
            ch, item = got
            if isinstance(item, tuple):
                batch, nbytes = item
                t0 = time.perf_counter()
                sink.write(batch)
                stage.busy_seconds += time.perf_counter() - t0
                n = batch.num_rows
                stage.batches_in += 1
                stage.rows_in += n
                t.rows_written += n
                t.bytes_written += nbytes
                t.batches_written += 1
            elif isinstance(item, Barrier):
                if self.inputs.barrier(ch, item, self.gate):
                    self.checkpoint(item)
            elif isinstance(item, Watermark):
                wm = self.inputs.watermark(ch, item.value)
                if wm is not None:
                    sink.on_watermark(wm)
            elif self.inputs.end(ch):
                self.att.writer_finished()
                return

    def checkpoint(self, barrier: Barrier) -> None:
        t0 = time.perf_counter()
        committables: list[Any] = []
        sink = self.sink
        two_phase = isinstance(sink, TwoPhaseSink)
        if two_phase:
            committables = list(sink.prepare_commit())  # type: ignore[attr-defined]
        else:
            sink.flush()
        self.stats.busy_seconds += time.perf_counter() - t0
        if self.att.abort.is_set():
            raise Aborted()
        coord = self.att.coord
        coord.sink_part(barrier.checkpoint_id, self.index, committables)
        if two_phase:
            # Nothing may be written before the commit (a Kafka producer has one transaction open).
            coord.wait_complete(barrier.checkpoint_id)


# -- one attempt ---------------------------------------------------------------------------------------


class _Attempt:
    """One execution of the pipeline, from the last checkpoint to the end or the first failure."""

    def __init__(self, exe: _Execution) -> None:
        self.exe = exe
        cfg, n = exe.cfg, exe.n
        self.abort = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._error_lock = threading.Lock()
        self.et = SourceEventTime(exe.event_time, exe.metrics)
        self.restored_watermark: int | None = None
        self.threads: list[threading.Thread] = []
        self.threads_done = True
        self._writers_left = len(exe.sinks)
        self._lock = threading.Lock()
        self.known: dict[str, Split] = {}
        self._discovery_lock = threading.Lock()
        every = exe.source.discovery_interval
        self.discovery_every = every
        self.next_discovery = time.monotonic() + every if every is not None else None
        # Topology: a gate per receiving task, an output per sending task (see the module docstring).
        cap = cfg.queue_size
        segs = exe.segments
        seg_gates = [[Gate(1 if seg.key is None else n, cap, self.abort) for _ in range(n)] for seg in segs]
        w = len(exe.sinks)
        writer_gates = [Gate(1 if w == n else n, cap, self.abort) for _ in range(w)]

        def output(k: int, s: int) -> Output:
            """The output of subtask ``s``'s task in front of segment ``k`` (past the last: the writers)."""
            if k < len(segs):
                seg = segs[k]
                if seg.key is None:
                    return Output(seg_gates[k], s, "forward")
                return Output(seg_gates[k], s, "hash", KeyRouter(seg.key, n))
            return Output(writer_gates, s, "forward" if w == n else "merge")

        self.readers = [_Reader(self, s, output(0, s)) for s in range(n)]
        self.op_tasks = [
            _OpTask(self, seg, s, exe.chains[s][seg.start : seg.stop], seg_gates[k][s], output(k + 1, s))
            for k, seg in enumerate(segs)
            for s in range(n)
        ]
        sink_stage = len(exe.templates) + 1
        self.writers = [
            _Writer(self, i, sink, writer_gates[i], sink_stage) for i, sink in enumerate(exe.sinks)
        ]
        self.tallies = [
            *(r.tally for r in self.readers),
            *(t.tally for t in self.op_tasks),
            *(w.tally for w in self.writers),
        ]
        self.coord = _Coordinator(self, 1, n, w)

    # -- helpers -----------------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        with self._error_lock:
            if self.error is None:
                self.error = exc
        self.abort.set()

    def stop_requested(self) -> bool:
        return self.exe.stop_requested()

    def writer_finished(self) -> None:
        with self._lock:
            self._writers_left -= 1
            if self._writers_left == 0:
                self.done.set()

    def guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Aborted:
                pass
            except BaseException as exc:
                self.fail(exc)

        return run

    def maybe_discover(self, now: float) -> None:
        """Ask the source for new splits when due (one reader at a time) and assign them."""
        if self.next_discovery is None or now < self.next_discovery:
            return
        if not self._discovery_lock.acquire(blocking=False):
            return
        try:
            if now < self.next_discovery:
                return
            for s in self.exe.source.discover(list(self.known.values())):
                if s.split_id not in self.known and self.coord.assign(s, self.readers):
                    self.known[s.split_id] = s
            self.next_discovery = time.monotonic() + (self.discovery_every or 0.0)
        finally:
            self._discovery_lock.release()

    # -- restore -----------------------------------------------------------------------------------

    def restore(self) -> None:
        """Plan splits, merge in the checkpoint, restore operators, recover the sink, open readers."""
        exe = self.exe
        store = exe.store
        checkpoint = store.load() if store is not None else None
        if store is not None:
            store.discard_incomplete_state(checkpoint.checkpoint_id if checkpoint is not None else 0)
        splits: dict[str, Split] = {s.split_id: s for s in exe.source.plan()}
        positions: dict[str, Position] = {}
        finished: set[str] = set()
        next_id = 1
        if checkpoint is not None:
            for s in checkpoint.splits:
                splits.setdefault(s.split_id, s)
            positions = dict(checkpoint.positions)
            finished = set(checkpoint.finished)
            next_id = checkpoint.checkpoint_id + 1
            exe.metrics.last_checkpoint_id = checkpoint.checkpoint_id
            self.et.restore(checkpoint.watermarks)
            for sid in finished:
                self.et.finish_split(sid)  # read to its end before: never holds the watermark
        elif exe.start_positions is not None:
            # A restart without a checkpoint store: every split again from where this run began.
            for s in exe.start_splits.values():
                splits.setdefault(s.split_id, s)
            positions = dict(exe.start_positions)
        self.coord = _Coordinator(self, next_id, exe.n, len(exe.sinks))
        self.restore_operators(checkpoint)
        self.recover_sinks(checkpoint)
        self.known = dict(splits)
        for k, sid in enumerate(sorted(splits)):
            reader = self.readers[k % exe.n]
            reader.splits[sid] = splits[sid]
            if sid in finished:
                reader.finished.add(sid)
                if sid in positions:
                    reader.positions[sid] = positions[sid]
            else:
                if sid in positions:
                    reader.positions[sid] = positions[sid]
                reader.readers[sid] = exe.source.open(splits[sid], positions.get(sid))
                self.et.add_split(sid)
        if store is None and exe.start_positions is None and not isinstance(exe.strategy, NoRestart):
            exe.start_splits = dict(splits)
            exe.start_positions = {
                sid: r.snapshot() for reader in self.readers for sid, r in reader.readers.items()
            }
        if self.et.enabled and self.et.current != MIN_WATERMARK:
            self.restored_watermark = self.et.current

    def restore_operators(self, checkpoint: Checkpoint | None) -> None:
        """Give every operator of every subtask its state from ``checkpoint`` - an empty one when it has
        none there, so an operator reused for another start (an in-process restart) never keeps state
        from after it. A checkpoint of another parallelism is redistributed by key (or refused)."""
        exe = self.exe
        ops, n = exe.templates, exe.n
        refs = dict(checkpoint.operator_state) if checkpoint is not None else {}
        old_n = checkpoint.parallelism if checkpoint is not None else n
        by_index: dict[int, dict[int, Any]] = {}
        for key, ref in refs.items():
            head, _, tail = key.partition(".")
            index, sub = int(head), int(tail) if tail else 0
            if index >= len(ops) or ops[index].name != ref.get("operator"):
                have = ops[index].name if index < len(ops) else "nothing"
                raise CheckpointError(
                    f"the checkpoint holds state of operator {ref.get('operator')!r} at position {index}; "
                    f"this pipeline has {have} there (a changed pipeline cannot resume this checkpoint)"
                )
            by_index.setdefault(index, {})[sub] = ref

        def read(ref: Any) -> Mapping[str, pa.Table]:
            assert exe.store is not None
            return exe.store.read_state(ref)

        for index in range(len(ops)):
            parts = by_index.get(index, {})
            if old_n == n:
                for s in range(n):
                    ref = parts.get(s)
                    exe.chains[s][index].restore_state(read(ref) if ref is not None else {})
                continue
            tables = [read(ref) for _, ref in sorted(parts.items())]
            for s in range(n):
                op = exe.chains[s][index]
                if not tables:
                    op.restore_state({})
                elif op.key_columns is None:
                    raise CheckpointError(
                        f"the checkpoint was taken with parallelism {old_n}; operator {op.name!r} at "
                        f"position {index} keeps state that is not keyed, which cannot be redistributed to "
                        f"parallelism {n} (resume with parallelism={old_n})"
                    )
                else:
                    op.rescale_state(tables, KeyRouter(op.key_columns, n).keep(s))

    def recover_sinks(self, checkpoint: Checkpoint | None) -> None:
        """Let a two-phase sink finish what the checkpoint prepared (also on a fresh start: it may
        discard output of a run that died before its first checkpoint)."""
        exe = self.exe
        if not exe.two_phase or exe.store is None:
            return
        sinks: list[TwoPhaseSink] = exe.sinks  # type: ignore[assignment]
        for sink in sinks:
            sink.attach_state_dir(exe.store.directory / "sink-state")
        flat = list(checkpoint.committables) if checkpoint is not None else []
        per = checkpoint.sink_committables if checkpoint is not None else None
        old = [list(c) for c in per] if per is not None else [flat]
        if len(old) > len(sinks) and not sinks[0].commits_from_any_instance:
            raise CheckpointError(
                f"the checkpoint holds the output of {len(old)} {type(sinks[0]).__name__} instances; only "
                f"the instance that prepared it can commit it, and this run has {len(sinks)} (resume "
                f"with parallelism={len(old)})"
            )
        if len(sinks) == 1:
            sinks[0].recover(flat)
        elif len(old) == len(sinks):
            for sink, share in zip(sinks, old, strict=True):
                sink.recover(share)
        elif sinks[0].commits_from_any_instance:
            sinks[0].recover(flat)
            for sink in sinks[1:]:
                sink.recover([])
        else:  # more instances than before: each old one's share goes to the instance of its index
            for i, sink in enumerate(sinks):
                sink.recover(old[i] if i < len(old) else [])

    # -- running -----------------------------------------------------------------------------------

    def run(self, progress: Any) -> BaseException | None:
        """Restore, run the tasks to the end; the first error (tasks stopped, readers and operators
        closed, the sink left to the caller), or ``None``."""
        exe = self.exe
        try:
            self.restore()
            many = exe.n > 1
            for s, reader in enumerate(self.readers):
                self.threads.append(self._thread(reader.run, f"reader-{s}" if many else "reader"))
            for task in self.op_tasks:
                name = f"ops{task.seg.start}-{task.subtask}" if many else "ops"
                self.threads.append(self._thread(task.run, name))
            for i, writer in enumerate(self.writers):
                self.threads.append(self._thread(writer.run, f"writer-{i}" if many else "writer"))
            exe.current_tallies = self.tallies
            exe.tallies.extend(self.tallies)
            for t in self.threads:
                t.start()
            next_refresh = 0.0
            while not self.done.is_set() and not self.abort.is_set():
                self.done.wait(0.1)
                now = time.monotonic()
                exe.refresh(sink=now >= next_refresh)
                if now >= next_refresh:
                    next_refresh = now + 0.5
                if progress is not None:
                    progress.update()
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.threads_done = _join(self.threads, None if self.error is None else _ABORT_JOIN)
            if self.error is None and not self.threads_done:  # pragma: no cover - a task hung past the end
                self.fail(RuntimeError("a pipeline task did not finish"))
            self.close(clean=self.error is None)
        return self.error

    def _thread(self, fn: Callable[[], None], name: str) -> threading.Thread:
        # Daemon threads: a task stuck in a component after an abort must not keep the process alive.
        return threading.Thread(target=self.guarded(fn), name=f"arrowflow-{name}", daemon=True)

    def close(self, *, clean: bool) -> None:
        """Close split readers and operators (the sink is the caller's). After a failure, never
        acknowledge anything; a component a stuck task may still be in is left alone."""
        if not self.threads_done:
            return
        errors: list[BaseException] = []
        try:
            self.et.close()
        except Exception as exc:
            errors.append(exc)
        for reader in self.readers:
            if clean:
                try:
                    # Checkpoints the reader had no chance to acknowledge (the final one at least).
                    reader.drain_completions()
                except Exception as exc:
                    errors.append(exc)
            errors.extend(reader.close())
        for chain in self.exe.chains:
            for op in chain:
                try:
                    op.close()
                except Exception as exc:
                    errors.append(exc)
        if not errors:
            return
        if clean:
            self.fail(errors[0])
            return
        note = getattr(self.error, "add_note", None)  # Python >= 3.11
        if note is not None:
            for e in errors:
                note(f"arrowflow: while closing after the failure: {e!r}")


# -- the whole run ---------------------------------------------------------------------------------------


class _Execution:
    """One ``run()``: its metrics, operator copies and sink instances, and the restart loop."""

    def __init__(
        self,
        source: Source,
        operators: Sequence[Operator],
        sink: Sink,
        config: RunConfig,
        stop: threading.Event,
        event_time: EventTime | None,
    ) -> None:
        self.source = source
        self.templates = list(operators)
        self.cfg = config
        self.stop = stop
        self.event_time = event_time
        self.n = config.parallelism
        self.strategy: RestartStrategy = config.restart
        self.store = (
            CheckpointStore(config.checkpoint_dir)
            if config.checkpoint_dir is not None and config.guarantee != "none"
            else None
        )
        self.metrics = RunMetrics(
            stages=[StageStats("source"), *(StageStats(op.name) for op in self.templates), StageStats("sink")]
        )
        self.segments = _segments(self.templates, self.n)
        # Subtask 0 runs the pipeline's own operators; the others run copies made before any open().
        self.chains: list[list[Operator]] = [self.templates] + [
            [op.for_subtask(s, self.n) for op in self.templates] for s in range(1, self.n)
        ]
        self.sinks = self._sink_instances(sink)
        self.two_phase = isinstance(sink, TwoPhaseSink)
        self.tallies: list[_Tally] = []
        self.current_tallies: list[_Tally] = []
        self.history = RestartHistory()
        self.restart_causes: list[str] = []
        self.start_positions: dict[str, Position] | None = None
        self.start_splits: dict[str, Split] = {}
        self.metrics_server: MetricsServer | None = None
        self.attempt: _Attempt | None = None

    def _sink_instances(self, sink: Sink) -> list[Sink]:
        if self.n == 1:
            return [sink]
        twins = [sink.for_subtask(s, self.n) for s in range(1, self.n)]
        if any(t is None for t in twins):
            return [sink]  # cannot run in parallel: one writer fed by every subtask
        out = [sink, *(t for t in twins if t is not None)]
        if isinstance(sink, TwoPhaseSink) and len({id(s) for s in out}) != len(out):
            raise ConfigurationError(
                f"{type(sink).__name__}.for_subtask() must return a new instance (a two-phase sink "
                "commits per instance)",
                option="parallelism",
            )
        return out

    @property
    def distinct_sinks(self) -> list[Sink]:
        seen: dict[int, Sink] = {}
        for s in self.sinks:
            seen.setdefault(id(s), s)
        return list(seen.values())

    def stop_requested(self) -> bool:
        ev = self.cfg.stop_event
        return self.stop.is_set() or (ev is not None and ev.is_set())

    def on_signal(self, signum: int) -> None:
        self.stop.set()

    # -- metrics -----------------------------------------------------------------------------------

    def refresh(self, *, sink: bool = True) -> None:
        """Sum the tasks' counters (every attempt's) into the run's metrics."""
        m, tallies, current = self.metrics, list(self.tallies), list(self.current_tallies)
        m.rows = sum(t.rows for t in tallies)
        m.bytes = sum(t.bytes for t in tallies)
        m.batches = sum(t.batches for t in tallies)
        m.rows_written = sum(t.rows_written for t in tallies)
        m.bytes_written = sum(t.bytes_written for t in tallies)
        m.batches_written = sum(t.batches_written for t in tallies)
        lags = [t.lag for t in current if t.lag is not None]
        m.lag = sum(lags) if lags else None
        last = len(m.stages) - 1
        for i, stage in enumerate(m.stages):
            parts = [t.stages[i] for t in tallies if i in t.stages]
            stage.batches_in = sum(p.batches_in for p in parts)
            stage.rows_in = sum(p.rows_in for p in parts)
            stage.batches_out = sum(p.batches_out for p in parts)
            stage.rows_out = sum(p.rows_out for p in parts)
            stage.busy_seconds = sum(p.busy_seconds for p in parts)
            if i == 0:
                stage.late_rows = m.late_rows
            elif i < last:
                # A late-row count is a running total of the operator (restored with its state).
                stage.late_rows = sum(t.stages[i].late_rows for t in current if i in t.stages)
        if sink:
            self.refresh_sink_metrics()

    def refresh_sink_metrics(self) -> None:
        with contextlib.suppress(Exception):
            total: dict[str, int] = {}
            for s in self.distinct_sinks:
                for k, v in s.metrics().items():
                    total[k] = total.get(k, 0) + v
            self.metrics.sink = total

    def result(self, duration: float) -> RunResult:
        m = self.metrics
        att = self.attempt
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
            stopped=att is not None and att.coord.stopped,
            lag=m.lag,
            stages=tuple(StageStats(**s.as_dict()) for s in m.stages),
            sink_metrics=dict(m.sink),
            watermark=m.watermark,
            split_watermarks=dict(m.split_watermarks),
            event_time_lag=m.event_time_lag,
            split_event_time_lag=dict(m.split_event_time_lag),
            late_rows=m.late_rows,
            restarts=len(self.restart_causes),
            restart_causes=tuple(self.restart_causes),
            parallelism=self.n,
        )

    # -- the run -----------------------------------------------------------------------------------

    def run(self, on_start: Callable[[_Execution], None] | None) -> RunResult:
        started = time.monotonic()
        progress: Any = None
        try:
            if self.cfg.metrics_port is not None:
                self.metrics_server = MetricsServer(
                    self.metrics, self.cfg.metrics_port, refresh_sink=self.refresh
                )
            if self.cfg.progress:
                from .progress import ProgressLine

                progress = ProgressLine(self.metrics)
            if on_start is not None:
                on_start(self)
            with stop_on_signals(self.on_signal):
                self._attempts(progress)
        except BaseException:
            self.refresh()
            raise
        finally:
            if progress is not None:
                with contextlib.suppress(Exception):
                    progress.close()
            if self.metrics_server is not None:
                self.metrics_server.close()
        self.refresh()
        return self.result(time.monotonic() - started)

    def _attempts(self, progress: Any) -> None:
        """Attempts until one ends cleanly, or a failure is not restarted (then it is raised)."""
        while True:
            att = _Attempt(self)
            self.attempt = att
            self.history.attempt_started = time.monotonic()
            error = att.run(progress)
            self.refresh()
            if error is None:
                self._close_sinks(None)
                return
            if not att.threads_done:
                _note(error, "arrowflow: a pipeline task did not stop; the pipeline cannot restart")
                raise error  # the sink may still be in use: leave it alone
            delay = self._restart_delay(error)
            if delay is None:
                self._close_sinks(error)
                raise error
            self.restart_causes.append(f"{type(error).__name__}: {error}")
            log.warning(
                "arrowflow: the pipeline failed (%s: %s); restart %d in %.2f s (%s)",
                type(error).__name__,
                error,
                len(self.restart_causes),
                delay,
                self.strategy.describe(),
            )
            if self._wait(delay):
                _note(error, "arrowflow: stopped while waiting to restart after this failure")
                self._close_sinks(error)
                raise error
            self.history.restarts += 1
            self.history.consecutive += 1
            try:
                for s in self.distinct_sinks:
                    s.reset()
            except BaseException as exc:
                _note(exc, f"arrowflow: resetting the sink for a restart after {error!r} failed")
                self._close_sinks(exc)
                raise

    def _restart_delay(self, error: BaseException) -> float | None:
        """Seconds until the next attempt, or ``None`` when ``error`` ends the run."""
        now = time.monotonic()
        self.history.failures.append(now)
        if isinstance(self.strategy, NoRestart) or self.stop_requested():
            return None
        if not self.strategy.retryable(error):
            if self.restart_causes:
                _note(error, f"arrowflow: not retryable; {len(self.restart_causes)} restart(s) before it")
            return None
        delay = self.strategy.delay(self.history, now)
        if delay is None:
            _note(
                error,
                f"arrowflow: gave up after {len(self.restart_causes)} restart(s) "
                f"({self.strategy.describe()})",
            )
        return delay

    def _wait(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; True if a stop was requested meanwhile."""
        deadline = time.monotonic() + delay
        while True:
            if self.stop_requested():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.stop.wait(min(left, POLL))

    def _close_sinks(self, error: BaseException | None) -> None:
        """At the end: close every sink instance; after a failure abort two-phase ones, commit nothing."""
        errors: list[BaseException] = []
        for sink in self.distinct_sinks:
            try:
                if error is not None and isinstance(sink, TwoPhaseSink):
                    sink.__exit__(type(error), error, None)
                else:
                    sink.close()
            except Exception as exc:
                errors.append(exc)
        if not errors:
            return
        if error is None:
            raise errors[0]
        for e in errors:
            _note(error, f"arrowflow: while closing after the failure: {e!r}")


def _note(exc: BaseException, text: str) -> None:
    add_note = getattr(exc, "add_note", None)  # Python >= 3.11
    if add_note is not None:
        add_note(text)


def execute(
    source: Source,
    operators: Sequence[Operator],
    sink: Sink,
    config: RunConfig,
    *,
    stop: threading.Event,
    on_start: Callable[[Any], None] | None = None,
    event_time: EventTime | None = None,
) -> RunResult:
    """Run the pipeline to its end (see the module docstring); re-raise the first error that is not
    restarted.

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
    return _Execution(source, operators, sink, config, stop, event_time).run(on_start)


def _join(threads: list[threading.Thread], timeout: float | None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    for t in threads:
        if not t.is_alive() and t.ident is None:
            continue  # never started
        t.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
    return not any(t.is_alive() for t in threads)
