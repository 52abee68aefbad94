"""The fluent pipeline API.

``Pipeline(source).filter(...).select([...]).to(sink).run(...)``. Every builder method returns a new
``Pipeline`` (the original is unchanged), so a partial pipeline can be reused as a template. Operator
classes are imported inside the methods: building a pipeline without operators never imports
:mod:`arrowflow.ops` beyond its base. Operators and the sink are objects with state: run a given
``Pipeline`` once at a time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..ops.base import Operator
from ..sink import Sink
from ..source import Source
from ..time import TimestampsLike, WatermarkStrategy, WindowAssigner
from .eventtime import EventTime
from .runner import RunConfig, RunResult, _Run, execute

__all__ = ["Pipeline"]


class Pipeline:
    """A source, a chain of operators and a sink, run by :meth:`run` in this process.

    ``watermarks``: an :class:`arrowflow.time.WatermarkStrategy` gives every split of ``source`` (a
    partition, shard, file, id range) its own watermark; the pipeline's watermark is the minimum over
    active splits and reaches windows and the sink in order with the batches (see
    :mod:`arrowflow.time`). ``late_rows``: what happens to rows read behind that watermark: ``"keep"``
    (default), ``"drop"`` (counted), ``"fail"``, or a dead-letter sink (rows plus an ``error`` column).
    """

    def __init__(
        self,
        source: Source,
        *,
        watermarks: WatermarkStrategy | None = None,
        late_rows: Any = "keep",
        _ops: Sequence[Operator] = (),
        _sink: Sink | None = None,
    ) -> None:
        if not isinstance(source, Source):
            raise ConfigurationError(
                f"source must be an arrowflow Source, got {type(source).__name__}", option="source"
            )
        self.source = source
        self.event_time = EventTime(watermarks, late_rows)
        self.operators: tuple[Operator, ...] = tuple(_ops)
        self.sink = _sink
        self._stop = threading.Event()
        self._run: _Run | None = None

    @property
    def watermarks(self) -> WatermarkStrategy | None:
        return self.event_time.strategy

    def _with(self, *, ops: Sequence[Operator] | None = None, sink: Sink | None = None) -> Pipeline:
        return Pipeline(
            self.source,
            watermarks=self.event_time.strategy,
            late_rows=self.event_time.late_rows,
            _ops=self.operators if ops is None else ops,
            _sink=self.sink if sink is None else sink,
        )

    def __repr__(self) -> str:
        chain = " -> ".join(
            [
                self.source.name,
                *(op.name for op in self.operators),
                *([self.sink.name] if self.sink is not None else []),
            ]
        )
        return f"Pipeline({chain})"

    # -- building ----------------------------------------------------------------------------------

    def via(self, operator: Operator) -> Pipeline:
        """Append any :class:`~arrowflow.ops.base.Operator`."""
        if not isinstance(operator, Operator):
            raise ConfigurationError(
                f"via() takes an arrowflow Operator, got {type(operator).__name__}", option="operator"
            )
        return self._with(ops=(*self.operators, operator))

    def filter(self, predicate: Any) -> Pipeline:
        """Keep rows where ``predicate`` (a ``pyarrow.compute.Expression`` or batch -> mask) holds."""
        from ..ops import Filter

        return self.via(Filter(predicate))

    def select(self, columns: Sequence[str]) -> Pipeline:
        """Keep only ``columns``, in that order."""
        from ..ops import Select

        return self.via(Select(columns))

    def rename(self, mapping: Mapping[str, str]) -> Pipeline:
        """Rename columns (old -> new)."""
        from ..ops import Rename

        return self.via(Rename(mapping))

    def with_columns(self, **exprs: Any) -> Pipeline:
        """Add or replace columns computed from each batch."""
        from ..ops import WithColumns

        return self.via(WithColumns(**exprs))

    def map_batches(self, fn: Callable[[Any], Any], **opts: Any) -> Pipeline:
        """Apply ``fn`` to whole batches."""
        from ..ops import MapBatches

        return self.via(MapBatches(fn, **opts))

    def key_by(self, columns: str | Sequence[str], num_partitions: int) -> Pipeline:
        """Split each batch into one batch per partition of Kafka's murmur2 over ``columns``.

        Output batches carry their partition number (``arrowflow.ops.partition_of(batch)``); rows
        keep their input order within a partition. Nothing is held back.
        """
        from ..ops import KeyBy

        return self.via(KeyBy(columns, num_partitions))

    def rebatch(self, rows: int | None = None, bytes: int | None = None) -> Pipeline:
        """Coalesce or split batches to about ``rows`` rows / ``bytes`` bytes."""
        from ..ops import Rebatch

        return self.via(Rebatch(rows=rows, bytes=bytes))

    def flat_map(self, column: str) -> Pipeline:
        """Explode list ``column`` into one row per element."""
        from ..ops import FlatMap

        return self.via(FlatMap(column))

    def enrich(self, fn: Callable[[Any], Any], **opts: Any) -> Pipeline:
        """Asynchronous enrichment (see :class:`arrowflow.ops.Enrich` for ``opts``)."""
        from ..ops import Enrich

        return self.via(Enrich(fn, **opts))

    def window(
        self,
        assigner: WindowAssigner,
        aggs: Any,
        *,
        by: str | Sequence[str] = (),
        on: TimestampsLike | None = None,
        allowed_lateness: Any = 0,
        late_rows: Any = "drop",
        time: str = "event",
    ) -> Pipeline:
        """Aggregate per key and window: ``.window(tumbling("1m"), [agg.count(), agg.sum("x")], by="k")``.

        ``assigner``: :func:`arrowflow.time.tumbling`, :func:`~arrowflow.time.sliding` or
        :func:`~arrowflow.time.session`. ``on`` (event time) defaults to the pipeline's watermark
        strategy's column or function. A window is emitted once the watermark passes its end plus
        ``allowed_lateness``, as ``(keys..., window_start, window_end, aggregates...)`` rows; rows for
        windows already emitted go to ``late_rows`` (``"drop"``, ``"fail"`` or a dead-letter sink).
        ``time="processing"`` windows rows by their arrival time instead (no watermarks needed). See
        :class:`arrowflow.ops.Window`.
        """
        from ..ops import Window

        if on is None and time == "event" and self.event_time.strategy is not None:
            on = self.event_time.strategy.timestamps
        return self.via(
            Window(
                assigner,
                aggs,
                by=by,
                on=on,
                allowed_lateness=allowed_lateness,
                late_rows=late_rows,
                time=time,
            )
        )

    def to(self, sink: Sink) -> Pipeline:
        """Set the sink."""
        if not isinstance(sink, Sink):
            raise ConfigurationError(
                f"sink must be an arrowflow Sink, got {type(sink).__name__}", option="sink"
            )
        return self._with(sink=sink)

    # -- running -----------------------------------------------------------------------------------

    def run(
        self,
        *,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: float = 10.0,
        guarantee: str = "at-least-once",
        max_rows: int | None = None,
        progress: bool = True,
        metrics_port: int | None = None,
        max_batch_rows: int = 65536,
        read_timeout: float = 0.2,
        queue_size: int = 4,
        stop_event: threading.Event | None = None,
        watermark_interval: float = 0.2,
    ) -> RunResult:
        """Run until a bounded source is exhausted, ``max_rows`` rows were read, or a stop request.

        Blocks the calling thread. Options:

        * ``checkpoint_dir``: where checkpoints are stored; a run starting with a checkpoint there
          resumes from it. Without it nothing survives the process (the sink is still flushed at every
          ``checkpoint_interval`` and at the end).
        * ``guarantee``: ``"at-least-once"`` (sink flushed at every checkpoint: after a crash rows since
          the last checkpoint are written again), ``"exactly-once"`` (needs ``checkpoint_dir`` and a
          transactional or idempotent sink, else :class:`~arrowflow.errors.ConfigurationError` naming
          the option), ``"none"`` (no checkpoints; the sink is flushed at the end only).
        * ``max_rows``: stop after that many source rows (final checkpoint included).
        * ``progress``: a live line on stderr; ``metrics_port``: Prometheus exposition on 127.0.0.1
          (``0`` picks a free port, see :attr:`metrics_port`).
        * ``max_batch_rows``/``read_timeout``: passed to ``SplitReader.read_batch``;
          ``queue_size``: batches buffered between stages (backpressure beyond it).
        * ``watermark_interval``: with ``watermarks``, how often (seconds) the pipeline watermark is
          recomputed and sent downstream (Flink's periodic emission; ``0``: after every batch).
        * ``stop_event``: setting it stops the run gracefully, like :meth:`stop` or SIGINT/SIGTERM
          (when run in the main thread; a second signal aborts without a checkpoint).

        The first error of any stage stops every stage and is re-raised here; a two-phase sink is
        aborted, nothing after the last checkpoint is committed.
        """
        if self.sink is None:
            raise ConfigurationError("the pipeline has no sink; call .to(sink) before run()", option="sink")
        config = RunConfig(
            checkpoint_dir=checkpoint_dir,
            checkpoint_interval=checkpoint_interval,
            guarantee=guarantee,
            max_rows=max_rows,
            progress=progress,
            metrics_port=metrics_port,
            max_batch_rows=max_batch_rows,
            read_timeout=read_timeout,
            queue_size=queue_size,
            stop_event=stop_event,
            watermark_interval=watermark_interval,
        )
        self._stop.clear()

        def started(run: _Run) -> None:
            self._run = run

        try:
            return execute(
                self.source,
                self.operators,
                self.sink,
                config,
                stop=self._stop,
                on_start=started,
                event_time=self.event_time,
            )
        finally:
            self._run = None

    def stop(self) -> None:
        """Ask a running :meth:`run` (in another thread) to stop: final checkpoint, then it returns."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._run is not None

    @property
    def metrics_port(self) -> int | None:
        """The Prometheus port of the current run (useful with ``metrics_port=0``), else ``None``."""
        run = self._run
        if run is None or run.metrics_server is None:
            return None
        return run.metrics_server.port
