"""Scale-out on Ray Data: sources as datasources, sinks as datasinks, partitioned streaming pipelines.

One process is arrowflow's unit; past one machine the same connectors run on a Ray cluster. Three
entry points (also importable as :mod:`arrowflow.ray`):

* :func:`read` ``(source, parallelism=None) -> ray.data.Dataset`` for **bounded** sources. The source
  is planned once, on the driver; its splits are grouped into read tasks (at most ``parallelism``,
  balanced by the splits' known sizes). A read task runs on a worker: it opens a
  :class:`~arrowflow.source.SplitReader` per split of its group, in plan order, and yields each batch
  as a one-batch ``pyarrow.Table`` block until the split is finished. Row counts, byte sizes, input
  files and the schema are reported to Ray's planner where the source knows them (split ``params``
  ``rows``/``size``/``path``, :attr:`~arrowflow.source.Source.schema`). A failing read task fails the
  dataset (Ray may retry the task: a read task re-reads its splits from the start). An unbounded
  source is refused with :class:`~arrowflow.errors.ConfigurationError`: use :func:`run_partitioned`.
* :class:`Datasink` ``(sink_factory)`` for ``dataset.write_datasink(...)``. Every write task calls the
  picklable ``sink_factory()`` once, writes its blocks batch by batch, then flushes and closes the sink,
  and reports rows and Arrow bytes written. A :class:`~arrowflow.sink.TwoPhaseSink` is driven in two
  phases (``commit="driver"``, the default): each task only ``prepare_commit()`` s, and
  ``on_write_complete`` commits the committables of *all* tasks at once on the driver with a fresh sink
  from the factory, so the output appears only when the whole dataset was written. A failing task
  ``abort()`` s its own sink; ``on_write_failed`` calls ``recover([])`` on a fresh sink, which for
  :class:`~arrowflow.connectors.filesystem.FileSink` deletes every prepared-but-uncommitted file of its
  prefix (so give each job its own directory or prefix). Sinks whose committables only the preparing
  instance can commit (``commits_from_any_instance = False``: a transactional Kafka producer) need
  ``commit="task"`` (a task refuses ``"driver"`` with a ConfigurationError before writing): each task
  then commits its own output when it finishes, so a failed job may leave the output of finished tasks.
  Concurrent tasks must not share a Kafka ``transactional_id_prefix`` (they would fence each other):
  let the factory make one per task.
* :func:`run_partitioned` ``(pipeline_factory, splits=..., checkpoint_root=...)`` for **unbounded**
  sources (and long bounded ones that must survive worker loss). The splits are grouped into
  partitions; each partition runs one ordinary single-process arrowflow pipeline in a Ray actor, over
  only its splits, with its own checkpoint directory ``<checkpoint_root>/partition-<i>``. When an
  actor's process dies Ray restarts it (up to ``max_restarts`` times) and the pipeline resumes from its
  last checkpoint, so the partition's delivery guarantee (at-least-once, or exactly-once with a
  transactional or idempotent sink) holds across worker deaths. Split discovery does not happen in
  partitions (a new Kafka partition would be read by every actor): plan again and start a new run.

Everything that crosses a process boundary pickles: the source (with its splits) inside read tasks,
the sink factory, the pipeline factory and :class:`Partition` s. Factories are pickled with Ray's
cloudpickle, so lambdas and closures work; module-level functions or ``functools.partial`` of classes
also survive the standard :mod:`pickle`.

This module imports ``ray`` when imported (Ray checks ``isinstance(datasink, ray.data.Datasink)``, so
the classes here subclass Ray's); importing :mod:`arrowflow` never imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..config import check_choice, check_non_negative, check_positive, check_type
from ..errors import ConfigurationError
from ..sink import Committable, Sink, TwoPhaseSink
from ..source import Position, Source, Split, SplitReader

try:
    import ray
    import ray.data
    from ray.data.block import BlockAccessor, BlockMetadata
    from ray.data.datasource import Datasink as _RayDatasink
    from ray.data.datasource import Datasource as _RayDatasource
    from ray.data.datasource import ReadTask
except ImportError as exc:  # pragma: no cover - exercised only without ray installed
    raise ImportError("arrowflow.ray needs Ray Data: pip install 'arrowflow[ray]' (ray[data]>=2.9)") from exc

if TYPE_CHECKING:
    from ..pipeline import Pipeline, RunResult

__all__ = [
    "Datasink",
    "Partition",
    "PartitionResult",
    "PartitionedRun",
    "PartitionedRunResult",
    "SourceDatasource",
    "SplitSubset",
    "WriteSummary",
    "group_splits",
    "read",
    "run_partitioned",
    "start_partitioned",
]

log = logging.getLogger(__name__)

#: Split ``params`` keys that estimate a split's size in bytes / rows (FileSource sets both).
_SIZE_KEYS = ("size_bytes", "size")
_ROWS_KEYS = ("rows", "num_rows")


# -- grouping ----------------------------------------------------------------------------------------


def _param_int(split: Split, keys: Sequence[str]) -> int | None:
    for key in keys:
        value = split.params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def group_splits(splits: Sequence[Split], groups: int) -> list[list[Split]]:
    """Deal ``splits`` into at most ``groups`` non-empty groups of about equal estimated size.

    The weight of a split is its ``params`` byte size, else its row count, else 1; the heaviest split
    goes first to the lightest group (ties: the lowest group). Within a group splits keep plan order.
    Deterministic: the same splits always give the same groups (partition checkpoints rely on it).
    """
    check_type("groups", groups, int)
    check_positive("groups", groups)
    if not splits:
        return []
    n = min(groups, len(splits))
    weights = [_param_int(s, _SIZE_KEYS) or _param_int(s, _ROWS_KEYS) or 1 for s in splits]
    order = sorted(range(len(splits)), key=lambda i: (-weights[i], i))
    loads = [0] * n
    members: list[list[int]] = [[] for _ in range(n)]
    for i in order:
        g = min(range(n), key=lambda k: (loads[k], k))
        loads[g] += weights[i]
        members[g].append(i)
    return [[splits[i] for i in sorted(m)] for m in members]


# -- reading -----------------------------------------------------------------------------------------


def _read_splits(
    source: Source, splits: tuple[Split, ...], max_batch_rows: int, read_timeout: float
) -> Iterator[pa.Table]:
    """The body of one read task (runs on a Ray worker): every split of the group, to its end."""
    for split in splits:
        reader = source.open(split)
        try:
            while not reader.finished:
                batch = reader.read_batch(max_batch_rows, read_timeout)
                if batch is not None and batch.num_rows:
                    yield pa.Table.from_batches([batch])
        finally:
            reader.close()


def _metadata(num_rows: int | None, size_bytes: int | None, files: list[str]) -> BlockMetadata:
    # BlockMetadata's fields changed across Ray releases (``schema`` moved to ReadTask in 2.4x).
    names = {f.name for f in dataclasses.fields(BlockMetadata)}
    kwargs: dict[str, Any] = {"num_rows": num_rows, "size_bytes": size_bytes, "exec_stats": None}
    if "input_files" in names:
        kwargs["input_files"] = files or None
    if "schema" in names:
        kwargs["schema"] = None
    return BlockMetadata(**kwargs)


@functools.cache
def _read_task_params() -> frozenset[str]:
    return frozenset(inspect.signature(ReadTask.__init__).parameters)


class SourceDatasource(_RayDatasource):  # type: ignore[misc]
    """A bounded arrowflow :class:`~arrowflow.source.Source` as a Ray Data ``Datasource``.

    Plans the source once, at construction (on the driver). See the module docstring for read tasks.
    """

    def __init__(self, source: Source, *, max_batch_rows: int = 65536, read_timeout: float = 1.0) -> None:
        super().__init__()
        if not isinstance(source, Source):
            raise ConfigurationError(
                f"source must be an arrowflow Source, got {type(source).__name__}", option="source"
            )
        if not source.bounded:
            raise ConfigurationError(
                f"arrowflow.ray.read() needs a bounded source; {type(source).__name__} is unbounded. "
                "Run streaming sources with arrowflow.ray.run_partitioned(pipeline_factory, splits=...), "
                "one checkpointed pipeline per group of splits",
                option="source",
            )
        check_type("max_batch_rows", max_batch_rows, int)
        check_positive("max_batch_rows", max_batch_rows)
        check_positive("read_timeout", read_timeout)
        self.source = source
        self.max_batch_rows = max_batch_rows
        self.read_timeout = read_timeout
        self.splits: tuple[Split, ...] = tuple(source.plan())

    def get_name(self) -> str:
        return f"Arrowflow({self.source.name})"

    def estimate_inmemory_data_size(self) -> int | None:
        """The sum of the splits' byte sizes when every split knows it (an on-disk size for files)."""
        sizes = [_param_int(s, _SIZE_KEYS) for s in self.splits]
        if not sizes or any(s is None for s in sizes):
            return None
        return sum(s for s in sizes if s is not None)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        """One read task per group of splits (``min(parallelism, #splits)`` groups)."""
        schema = self.source.schema
        groups = group_splits(self.splits, max(int(parallelism), 1))
        if not groups:
            # An empty source still yields a (typed, when known) empty dataset.
            empty = schema.empty_table() if schema is not None else pa.table({})
            groups_fns: list[tuple[Callable[[], Iterable[pa.Table]], BlockMetadata]] = [
                (functools.partial(lambda t: [t], empty), _metadata(0, 0, []))
            ]
        else:
            groups_fns = []
            for group in groups:
                rows = [_param_int(s, _ROWS_KEYS) for s in group]
                sizes = [_param_int(s, _SIZE_KEYS) for s in group]
                files = [str(s.params["path"]) for s in group if isinstance(s.params.get("path"), str)]
                meta = _metadata(
                    None if any(r is None for r in rows) else sum(r for r in rows if r is not None),
                    None if any(b is None for b in sizes) else sum(b for b in sizes if b is not None),
                    files,
                )
                fn: Callable[[], Iterable[Any]] = functools.partial(
                    _read_splits, self.source, tuple(group), self.max_batch_rows, self.read_timeout
                )
                groups_fns.append((fn, meta))
        params = _read_task_params()
        tasks = []
        for fn, meta in groups_fns:
            kwargs: dict[str, Any] = {}
            if "schema" in params:
                kwargs["schema"] = schema
            if "per_task_row_limit" in params and per_task_row_limit is not None:
                kwargs["per_task_row_limit"] = per_task_row_limit
            tasks.append(ReadTask(fn, meta, **kwargs))
        return tasks


def read(
    source: Source,
    parallelism: int | None = None,
    *,
    max_batch_rows: int = 65536,
    read_timeout: float = 1.0,
    ray_remote_args: Mapping[str, Any] | None = None,
) -> ray.data.Dataset:
    """A lazy Ray ``Dataset`` over a bounded ``source`` (see the module docstring).

    ``parallelism``: the number of read tasks (at most one per split); ``None`` lets Ray choose, which
    normally gives one task per split. ``max_batch_rows``/``read_timeout`` go to
    ``SplitReader.read_batch``. ``ray_remote_args`` (``num_cpus``, ``memory``, ...) apply to read tasks.
    Raises :class:`~arrowflow.errors.ConfigurationError` for an unbounded source.
    """
    datasource = SourceDatasource(source, max_batch_rows=max_batch_rows, read_timeout=read_timeout)
    kwargs: dict[str, Any] = {}
    if parallelism is not None:
        check_type("parallelism", parallelism, int)
        check_positive("parallelism", parallelism)
        read_params = inspect.signature(ray.data.read_datasource).parameters
        kwargs["override_num_blocks" if "override_num_blocks" in read_params else "parallelism"] = parallelism
    if ray_remote_args:
        kwargs["ray_remote_args"] = dict(ray_remote_args)
    return ray.data.read_datasource(datasource, **kwargs)


# -- writing -----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class WriteSummary:
    """What a :class:`Datasink` job wrote: totals over its write tasks, and what was committed."""

    rows: int
    bytes: int
    tasks: int
    committables: int
    sink_metrics: dict[str, int] = field(default_factory=dict)


def _release(sink: Sink) -> None:
    """Close ``sink`` without the commit that ``TwoPhaseSink.close`` would do (resources only)."""
    if sink.closed:
        return
    sink._closed = True
    sink._close()


class Datasink(_RayDatasink):  # type: ignore[misc]
    """A Ray Data ``Datasink`` writing through arrowflow sinks made by ``sink_factory`` (one per task).

    ``commit``: ``"driver"`` (default; two-phase sinks commit every task's committables in
    ``on_write_complete``) or ``"task"`` (every task closes - and so commits - its own sink). Ignored for
    sinks that are not two-phase: those are flushed and closed by their task. After
    ``write_datasink`` returns, :attr:`summary` holds the totals (on the driver's instance).
    """

    def __init__(self, sink_factory: Callable[[], Sink], *, commit: str = "driver") -> None:
        if not callable(sink_factory):
            raise ConfigurationError(
                f"sink_factory must be a callable returning an arrowflow Sink, got {sink_factory!r}",
                option="sink_factory",
            )
        check_choice("commit", commit, ("driver", "task"))
        self.sink_factory = sink_factory
        self.commit = commit
        self.summary: WriteSummary | None = None

    def get_name(self) -> str:
        return "arrowflow"

    def _new_sink(self) -> Sink:
        sink = self.sink_factory()
        if not isinstance(sink, Sink):
            raise ConfigurationError(
                f"sink_factory returned {type(sink).__name__}, not an arrowflow Sink", option="sink_factory"
            )
        return sink

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
        """One write task: write every block, then flush/prepare. Returns rows, bytes, committables."""
        sink = self._new_sink()
        two_phase = isinstance(sink, TwoPhaseSink)
        if isinstance(sink, TwoPhaseSink) and self.commit == "driver" and not sink.commits_from_any_instance:
            _release(sink)
            raise ConfigurationError(
                f"{type(sink).__name__} can only commit what the same instance prepared (a Kafka "
                "transaction belongs to its producer): the driver cannot commit it; use commit='task'",
                option="commit",
            )
        rows = nbytes = 0
        committables: list[Committable] = []
        try:
            for block in blocks:
                table = BlockAccessor.for_block(block).to_arrow()
                for batch in table.to_batches():
                    if batch.num_rows:
                        sink.write(batch)
                        rows += batch.num_rows
                        nbytes += batch.nbytes
            if two_phase and self.commit == "driver":
                assert isinstance(sink, TwoPhaseSink)
                committables = list(sink.prepare_commit())
                metrics = dict(sink.metrics())
                _release(sink)
            else:
                sink.close()  # flushes (a two-phase sink prepares and commits its own output)
                metrics = dict(sink.metrics())
        except BaseException:
            if two_phase:
                assert isinstance(sink, TwoPhaseSink)
                with contextlib.suppress(Exception):
                    sink.abort()
            with contextlib.suppress(Exception):
                _release(sink)
            raise
        return {"rows": rows, "bytes": nbytes, "committables": committables, "metrics": metrics}

    def on_write_complete(self, write_result: Any) -> None:
        """Commit every task's committables (two-phase, ``commit="driver"``) and record :attr:`summary`."""
        # Ray >= 2.4x passes a WriteResult; older releases the list of write() returns.
        returns = getattr(write_result, "write_returns", write_result)
        returns = [r for r in returns if isinstance(r, dict)]
        committables = [c for r in returns for c in r.get("committables", ())]
        if committables:
            sink = self._new_sink()
            try:
                assert isinstance(sink, TwoPhaseSink)
                sink.commit(committables)
            finally:
                _release(sink)
        metrics: dict[str, int] = {}
        for r in returns:
            for key, value in r.get("metrics", {}).items():
                if isinstance(value, int | float):
                    metrics[key] = metrics.get(key, 0) + int(value)
        self.summary = WriteSummary(
            rows=sum(int(r.get("rows", 0)) for r in returns),
            bytes=sum(int(r.get("bytes", 0)) for r in returns),
            tasks=len(returns),
            committables=len(committables),
            sink_metrics=metrics,
        )

    def on_write_failed(self, error: Exception) -> None:
        """Discard what finished tasks prepared: ``recover([])`` on a fresh two-phase sink (best effort)."""
        if self.commit != "driver":
            return
        try:
            sink = self._new_sink()
        except Exception:  # the factory itself may be what failed
            log.warning("arrowflow.ray.Datasink: cannot clean up after a failed write", exc_info=True)
            return
        try:
            if isinstance(sink, TwoPhaseSink):
                sink.recover([])
        except Exception:
            log.warning("arrowflow.ray.Datasink: cleanup after a failed write failed", exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                _release(sink)


# -- partitioned streaming ---------------------------------------------------------------------------


class SplitSubset(Source):
    """``source`` restricted to ``splits``: ``plan()`` returns them, ``open`` delegates; no discovery."""

    def __init__(self, source: Source, splits: Sequence[Split]) -> None:
        if not isinstance(source, Source):
            raise ConfigurationError(
                f"source must be an arrowflow Source, got {type(source).__name__}", option="source"
            )
        self.source = source
        self.splits = tuple(splits)
        self.name = source.name

    @property
    def bounded(self) -> bool:
        return self.source.bounded

    @property
    def replayable(self) -> bool:  # type: ignore[override]
        return self.source.replayable

    @property
    def schema(self) -> pa.Schema | None:
        return self.source.schema

    def plan(self) -> list[Split]:
        return list(self.splits)

    def open(self, split: Split, position: Position = None) -> SplitReader:
        return self.source.open(split, position)


@dataclass(frozen=True, kw_only=True)
class Partition:
    """One partition of a :func:`run_partitioned` run, given to the pipeline factory.

    ``index`` is stable for the same splits and number of workers; ``checkpoint_dir`` belongs to this
    partition alone (use ``index`` to give its sink its own prefix, table or transactional id).
    """

    index: int
    splits: tuple[Split, ...]
    checkpoint_dir: str


@dataclass(frozen=True, kw_only=True)
class PartitionResult:
    """The outcome of one partition: the :class:`~arrowflow.pipeline.RunResult` counts of its last
    attempt (rows since that attempt's restart), and ``attempt`` (1 + the restarts after worker deaths)."""

    index: int
    split_ids: tuple[str, ...]
    attempt: int
    rows: int
    rows_written: int
    checkpoints: int
    stopped: bool
    duration: float


@dataclass(frozen=True, kw_only=True)
class PartitionedRunResult:
    """Every partition's result, in partition order."""

    partitions: tuple[PartitionResult, ...]

    @property
    def restarts(self) -> int:
        return sum(p.attempt - 1 for p in self.partitions)


#: Pipeline.run options a partition may set (checkpoint_dir, stop_event and progress are ours).
_RUN_OPTIONS = frozenset(
    {
        "checkpoint_interval",
        "guarantee",
        "max_rows",
        "metrics_port",
        "max_batch_rows",
        "read_timeout",
        "queue_size",
    }
)


def _bump_attempt(path: Path) -> int:
    """Count this start of a partition in ``path`` (written atomically); returns the attempt number."""
    try:
        attempt = int(path.read_text()) + 1
    except (FileNotFoundError, ValueError):
        attempt = 1
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(str(attempt))
    os.replace(tmp, path)
    return attempt


class _PartitionWorker:
    """The Ray actor running one partition. Threaded (max_concurrency=2) so stop()/pid() answer mid-run."""

    def __init__(
        self,
        pipeline_factory: Callable[[Partition], Pipeline],
        partition: Partition,
        run_options: Mapping[str, Any],
        attempts_file: str,
    ) -> None:
        self.pipeline_factory = pipeline_factory
        self.partition = partition
        self.run_options = dict(run_options)
        self.stop_event = threading.Event()
        Path(partition.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        self.attempt = _bump_attempt(Path(attempts_file))

    def pid(self) -> int:
        return os.getpid()

    def run(self) -> PartitionResult:
        from ..pipeline import Pipeline

        pipeline = self.pipeline_factory(self.partition)
        if not isinstance(pipeline, Pipeline):
            raise ConfigurationError(
                f"pipeline_factory returned {type(pipeline).__name__}, not an arrowflow Pipeline",
                option="pipeline_factory",
            )
        restricted = Pipeline(
            SplitSubset(pipeline.source, self.partition.splits), _ops=pipeline.operators, _sink=pipeline.sink
        )
        result: RunResult = restricted.run(
            checkpoint_dir=self.partition.checkpoint_dir,
            progress=False,
            stop_event=self.stop_event,
            **self.run_options,
        )
        return PartitionResult(
            index=self.partition.index,
            split_ids=tuple(s.split_id for s in self.partition.splits),
            attempt=self.attempt,
            rows=result.rows,
            rows_written=result.rows_written,
            checkpoints=result.checkpoints,
            stopped=result.stopped,
            duration=result.duration,
        )

    def stop(self) -> None:
        self.stop_event.set()


class PartitionedRun:
    """A started :func:`start_partitioned` run: one Ray actor per :class:`Partition`."""

    def __init__(self, partitions: Sequence[Partition], actors: Sequence[Any], refs: Sequence[Any]) -> None:
        self.partitions = tuple(partitions)
        self.actors = tuple(actors)
        self._refs = list(refs)
        self._done = False

    def pids(self, timeout: float = 60.0) -> list[int]:
        """The current process id of every partition's actor (changes after a restart)."""
        return list(ray.get([a.pid.remote() for a in self.actors], timeout=timeout))

    def stop(self) -> None:
        """Ask every partition to stop gracefully (final checkpoint); :meth:`wait` then returns."""
        for actor in self.actors:
            with contextlib.suppress(Exception):
                actor.stop.remote()

    def wait(self, timeout: float | None = None) -> PartitionedRunResult:
        """Block until every partition's pipeline returned; then release the actors.

        A partition that fails (its pipeline raised, or its actor died more than ``max_restarts``
        times) stops the others and re-raises Ray's error. ``timeout`` raises Ray's ``GetTimeoutError``
        and leaves the run going.
        """
        try:
            results = ray.get(self._refs, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise
        except BaseException:
            self.stop()
            self._release()
            raise
        self._release()
        return PartitionedRunResult(partitions=tuple(results))

    def _release(self) -> None:
        if self._done:
            return
        self._done = True
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)


def start_partitioned(
    pipeline_factory: Callable[[Partition], Pipeline],
    *,
    splits: Sequence[Split] | Source,
    checkpoint_root: str | os.PathLike[str],
    num_workers: int | None = None,
    max_restarts: int = 3,
    num_cpus: float = 1.0,
    run_options: Mapping[str, Any] | None = None,
) -> PartitionedRun:
    """Start :func:`run_partitioned` without waiting; returns the :class:`PartitionedRun`."""
    if not callable(pipeline_factory):
        raise ConfigurationError(
            "pipeline_factory must be callable(Partition) -> Pipeline", option="pipeline_factory"
        )
    planned = splits.plan() if isinstance(splits, Source) else list(splits)
    if not planned:
        raise ConfigurationError("splits: there is nothing to run (no splits)", option="splits")
    for s in planned:
        check_type("splits", s, Split)
    ids = [s.split_id for s in planned]
    if len(set(ids)) != len(ids):
        raise ConfigurationError("splits: split ids must be unique", option="splits")
    check_type("checkpoint_root", checkpoint_root, (str, os.PathLike))
    if num_workers is not None:
        check_type("num_workers", num_workers, int)
        check_positive("num_workers", num_workers)
    check_type("max_restarts", max_restarts, int)
    check_non_negative("max_restarts", max_restarts)
    check_positive("num_cpus", num_cpus)
    options = dict(run_options or {})
    unknown = set(options) - _RUN_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"run_options: unknown or reserved option(s) {sorted(unknown)}; allowed: {sorted(_RUN_OPTIONS)}",
            option="run_options",
        )
    root = Path(checkpoint_root)
    root.mkdir(parents=True, exist_ok=True)
    groups = group_splits(planned, num_workers or len(planned))
    partitions = [
        Partition(index=i, splits=tuple(g), checkpoint_dir=str(root / f"partition-{i}"))
        for i, g in enumerate(groups)
    ]
    actor_cls = ray.remote(_PartitionWorker).options(
        max_restarts=max_restarts,
        max_task_retries=max_restarts,
        max_concurrency=2,
        num_cpus=num_cpus,
    )
    actors: list[Any] = [
        actor_cls.remote(pipeline_factory, p, options, str(root / f"partition-{p.index}.attempts"))
        for p in partitions
    ]
    refs = [a.run.remote() for a in actors]
    return PartitionedRun(partitions, actors, refs)


def run_partitioned(
    pipeline_factory: Callable[[Partition], Pipeline],
    *,
    splits: Sequence[Split] | Source,
    checkpoint_root: str | os.PathLike[str],
    num_workers: int | None = None,
    max_restarts: int = 3,
    num_cpus: float = 1.0,
    run_options: Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> PartitionedRunResult:
    """Run one checkpointed arrowflow pipeline per group of ``splits`` on Ray actors; block until done.

    * ``pipeline_factory(partition)`` builds the partition's :class:`~arrowflow.pipeline.Pipeline` on
      the worker (source, operators, sink). Its source is restricted to ``partition.splits``, so the
      factory may build it over the whole source. Picklable (cloudpickle).
    * ``splits``: the splits to spread (or a :class:`~arrowflow.source.Source`, planned here).
    * ``checkpoint_root``: a directory every worker can reach (shared storage on a cluster); partition
      ``i`` checkpoints into ``<checkpoint_root>/partition-<i>`` and counts its attempts in
      ``partition-<i>.attempts``. A second run with the same root, splits and ``num_workers`` resumes.
    * ``num_workers``: partitions (default: one per split); ``max_restarts``: restarts per partition
      after its worker process died; ``num_cpus``: Ray CPUs reserved per actor.
    * ``run_options``: :meth:`Pipeline.run` options (``guarantee``, ``checkpoint_interval``,
      ``max_rows``, ``max_batch_rows``, ``read_timeout``, ``queue_size``, ``metrics_port``).

    Bounded partitions end by themselves; stop unbounded ones with :func:`start_partitioned` and
    :meth:`PartitionedRun.stop`, or ``max_rows``. ``timeout`` stops every partition gracefully after
    that many seconds and returns their results.
    """
    run = start_partitioned(
        pipeline_factory,
        splits=splits,
        checkpoint_root=checkpoint_root,
        num_workers=num_workers,
        max_restarts=max_restarts,
        num_cpus=num_cpus,
        run_options=run_options,
    )
    if timeout is None:
        return run.wait()
    check_positive("timeout", timeout)
    deadline = time.monotonic() + timeout
    ready, _ = ray.wait(run._refs, num_returns=len(run._refs), timeout=max(deadline - time.monotonic(), 0))
    if len(ready) < len(run._refs):
        run.stop()
    return run.wait()
