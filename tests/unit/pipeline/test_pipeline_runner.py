"""Pipeline runner: stages, operators, errors, backpressure, stop, configuration checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pipeline_doubles import CountingSink, IdSource, TxSink, Upstream, all_ids

from arrowflow import ConfigurationError, Pipeline
from arrowflow.connectors.collection import CollectionSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.ops.base import Operator


def _no_stage_threads() -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name.startswith("arrowflow-")]:
            return True
        time.sleep(0.02)
    return False


class Holding(Operator):
    """Keeps every batch back until flush (like a coalescing operator), counting flushes."""

    name = "holding"

    def __init__(self) -> None:
        self.held: list[pa.RecordBatch] = []
        self.flushes = 0
        #: Rows released by all flushes so far, after each flush.
        self.released: list[int] = []
        self.opened_in: str | None = None
        self.closed = False

    def open(self) -> None:
        self.opened_in = threading.current_thread().name

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        self.held.append(batch)
        return []

    def flush(self) -> Sequence[pa.RecordBatch]:
        self.flushes += 1
        out, self.held = self.held, []
        self.released.append((self.released[-1] if self.released else 0) + sum(b.num_rows for b in out))
        return out

    def close(self) -> None:
        self.closed = True


class Boom(Operator):
    name = "boom"

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        raise ZeroDivisionError("operator failed")


def test_bounded_collection_through_operators_to_memory() -> None:
    table = pa.table({"x": np.arange(10_000), "y": np.arange(10_000) * 2.0})
    sink = MemorySink()
    result = (
        Pipeline(CollectionSource(table, batch_size=1000, split_count=3))
        .filter(pc.equal(pc.bit_wise_and(pc.field("x"), 1), 0))
        .select(["x"])
        .to(sink)
        .run(progress=False)
    )
    assert (result.rows, result.batches, result.rows_written) == (10_000, 12, 5_000)
    assert result.bytes == table.nbytes
    assert result.checkpoints == 1 and result.stopped is False
    assert result.last_checkpoint_id == 1
    out = sink.table()
    assert out.column_names == ["x"]
    assert np.array_equal(np.sort(out.column("x").to_numpy()), np.arange(0, 10_000, 2))
    assert [s.name for s in result.stages] == ["source", "filter", "select", "sink"]
    assert result.stage("filter").rows_in == 10_000 and result.stage("filter").rows_out == 5_000
    assert result.stage("sink").rows_in == 5_000
    assert sink.closed
    assert _no_stage_threads()


def test_operator_flush_runs_before_checkpoint_and_at_end() -> None:
    src = IdSource({"a": (0, 5_000)}, batch_rows=100, delay=0.002)
    op = Holding()
    sink = TxSink(Upstream())
    commits_seen: list[int] = []
    written = [0]
    # When the sink prepares checkpoint k, the operator's k-th flush has run and everything it released
    # has reached the sink, nothing after it (the operator thread may already hold batches that came
    # after the barrier: those belong to the next checkpoint, so `op.held` is not checked here).
    original, original_write = sink.prepare_commit, sink.write

    def write(batch: pa.RecordBatch) -> None:
        written[0] += batch.num_rows
        original_write(batch)

    def prepare() -> list[object]:
        k = len(commits_seen)
        # (One more prepare than checkpoints: close() of a two-phase sink prepares what is left.)
        assert written[0] == op.released[min(k, len(op.released) - 1)]
        commits_seen.append(len(sink.staged))
        return original()

    sink.write = write  # type: ignore[method-assign]
    sink.prepare_commit = prepare  # type: ignore[method-assign]
    result = Pipeline(src).via(op).to(sink).run(progress=False, checkpoint_interval=0.05)
    assert op.flushes == result.checkpoints >= 2
    assert op.opened_in == "arrowflow-ops" and op.closed
    assert np.array_equal(all_ids(sink.up.committed), np.arange(5_000))


@pytest.mark.parametrize("where", ["source", "operator", "sink"])
def test_stage_error_is_reraised_and_nothing_hangs(where: str) -> None:
    src = IdSource({"a": (0, None)}, fail_after=5 if where == "source" else None)
    pipeline = Pipeline(src)
    if where == "operator":
        pipeline = pipeline.via(Boom())
    sink = CountingSink(fail_at=3 if where == "sink" else None)
    expected = {"source": RuntimeError, "operator": ZeroDivisionError, "sink": OSError}[where]
    with pytest.raises(expected) as info:
        pipeline.to(sink).run(progress=False)
    assert {"source": "source exploded", "operator": "operator failed", "sink": "disk on fire"}[where] in str(
        info.value
    )
    assert _no_stage_threads()
    assert all(r.closed for r in src.readers)


def test_failure_aborts_two_phase_sink_without_committing() -> None:
    up = Upstream()
    sink = TxSink(up)
    src = IdSource({"a": (0, None)}, fail_after=20)
    with pytest.raises(RuntimeError, match="source exploded"):
        Pipeline(src).to(sink).run(progress=False, checkpoint_interval=1000)
    assert sink.aborted == 1
    assert up.committed == [] and up.pending == {}
    assert sink.closed


def test_max_rows_truncates_and_checkpoints(tmp_path: object) -> None:
    src = IdSource({"a": (0, None), "b": (10**9, None)}, batch_rows=100)
    sink = CountingSink()
    result = Pipeline(src).to(sink).run(progress=False, max_rows=1_234, checkpoint_dir=str(tmp_path))
    assert result.rows == 1_234 == len(sink.ids)
    assert result.stopped is False
    from arrowflow.pipeline import CheckpointStore

    cp = CheckpointStore(str(tmp_path)).load()
    assert cp is not None
    assert (cp.positions["a"] - 0) + (cp.positions["b"] - 10**9) == 1_234


def test_stop_from_another_thread_takes_final_checkpoint(tmp_path: object) -> None:
    src = IdSource({"a": (0, None)}, batch_rows=50, delay=0.005)
    sink = CountingSink()
    pipeline = Pipeline(src).to(sink)
    sink.on_write = lambda b: pipeline.stop() if len(sink.batches) >= 10 else None
    result = pipeline.run(progress=False, checkpoint_dir=str(tmp_path), checkpoint_interval=1000)
    assert result.stopped is True
    assert result.checkpoints == 1
    from arrowflow.pipeline import CheckpointStore

    cp = CheckpointStore(str(tmp_path)).load()
    assert cp is not None and cp.positions == {"a": result.rows} and result.rows == len(sink.ids)
    # The source was told after the checkpoint was durable.
    assert src.commits[-1] == ("a", result.rows)
    assert not pipeline.running


def test_stop_event_stops_an_unbounded_run() -> None:
    ev = threading.Event()
    src = IdSource({"a": (0, None)}, delay=0.002)
    timer = threading.Timer(0.3, ev.set)
    timer.start()
    result = Pipeline(src).to(CountingSink()).run(progress=False, stop_event=ev)
    timer.join()
    assert result.stopped is True and result.rows > 0


def test_backpressure_bounds_rows_in_flight() -> None:
    src = IdSource({"a": (0, 3_000)}, batch_rows=10)
    sink = CountingSink(delay=0.003)
    in_flight: list[int] = []
    sink.on_write = lambda b: in_flight.append(src.read_batches - len(sink.batches))
    Pipeline(src).via(_Pass()).to(sink).run(progress=False, queue_size=2)
    # reader hand + q1 (2) + operator hand + q2 (2) + the batch being written
    assert max(in_flight) <= 2 * 2 + 3
    assert len(sink.ids) == 3_000


class _Pass(Operator):
    name = "pass"

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        return [batch]


def test_guarantee_none_flushes_only_at_end() -> None:
    src = IdSource({"a": (0, 2_000)}, batch_rows=50, delay=0.003)
    sink = CountingSink()
    result = Pipeline(src).to(sink).run(progress=False, guarantee="none", checkpoint_interval=0.01)
    assert sink.flushes == 1 + 1  # the final flush, then close() flushes once more
    assert result.checkpoints == 1


def test_at_least_once_without_checkpoint_dir_still_flushes_periodically() -> None:
    src = IdSource({"a": (0, 2_000)}, batch_rows=50, delay=0.003)
    sink = CountingSink()
    result = Pipeline(src).to(sink).run(progress=False, checkpoint_interval=0.02)
    assert result.checkpoints >= 3
    assert sink.flushes == result.checkpoints + 1  # + close()
    assert np.array_equal(sink.ids, np.arange(2_000))


def test_exactly_once_refused_for_plain_sink(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        Pipeline(IdSource({"a": (0, 10)})).to(MemorySink()).run(
            progress=False, guarantee="exactly-once", checkpoint_dir=str(tmp_path)
        )
    assert info.value.option == "guarantee" and "guarantee" in str(info.value)


def test_exactly_once_accepts_idempotent_sink(tmp_path: object) -> None:
    sink = CountingSink(idempotent=True)
    result = (
        Pipeline(IdSource({"a": (0, 500)}))
        .to(sink)
        .run(progress=False, guarantee="exactly-once", checkpoint_dir=str(tmp_path))
    )
    assert result.rows == 500 and np.array_equal(sink.ids, np.arange(500))


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"guarantee": "exactly-once"}, "checkpoint_dir"),
        ({"guarantee": "none", "checkpoint_dir": "x"}, "checkpoint_dir"),
        ({"guarantee": "maybe-once"}, "guarantee"),
        ({"queue_size": 0}, "queue_size"),
        ({"checkpoint_interval": 0}, "checkpoint_interval"),
        ({"max_rows": -1}, "max_rows"),
        ({"max_batch_rows": 0}, "max_batch_rows"),
    ],
)
def test_invalid_options_name_the_option(kwargs: dict[str, object], option: str) -> None:
    sink = TxSink(Upstream())
    with pytest.raises(ConfigurationError) as info:
        Pipeline(IdSource({"a": (0, 10)})).to(sink).run(progress=False, **kwargs)  # type: ignore[arg-type]
    assert info.value.option == option
    assert sink.up.committed == []


def test_run_without_sink_is_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        Pipeline(IdSource({"a": (0, 10)})).run(progress=False)
    assert info.value.option == "sink"
