"""Parallel subtasks (``run(parallelism=N)``): split ownership, keyed routing, watermarks combined over
subtasks, a sink instance per subtask, checkpoints keyed by subtask and restored under another
parallelism (or refused)."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipeline_doubles import CountingSink, IdSource, TxSink, Upstream, all_ids
from test_pipeline_eventtime import START_US, ScriptSource, _events, _oracle

from arrowflow import CheckpointError, Pipeline, WatermarkStrategy, agg
from arrowflow.connectors.collection import CollectionSource
from arrowflow.connectors.filesystem import FileSink
from arrowflow.connectors.kafka import KafkaSink, TransactionalKafkaSink
from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.null import NullSink
from arrowflow.ops.base import Operator
from arrowflow.pipeline import CheckpointStore
from arrowflow.time import MAX_WATERMARK, tumbling


class Where:
    """Records, per thread, what a ``map_batches`` function saw (shared by every subtask's copy)."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.lock = threading.Lock()
        self.seen: dict[str, set[Any]] = defaultdict(set)

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        values = set(batch.column(self.column).to_pylist())
        with self.lock:
            self.seen[threading.current_thread().name] |= values
        return batch


class OwnTxSink(TxSink):
    """A two-phase sink whose committables only the instance of the same subtask can commit (like a
    Kafka producer's transaction): recovery commits and discards only its own subtask's."""

    commits_from_any_instance = False

    def __init__(self, upstream: Upstream, subtask: int = 0) -> None:
        super().__init__(upstream)
        self.subtask = subtask

    def for_subtask(self, index: int, count: int) -> OwnTxSink:
        return OwnTxSink(self.up, index)

    def prepare_commit(self) -> list[Any]:
        names = super().prepare_commit()
        with self.up.lock:
            for name in names:
                self.up.pending[f"{self.subtask}/{name}"] = self.up.pending.pop(name)
        return [f"{self.subtask}/{name}" for name in names]

    def recover(self, committables: Sequence[Any]) -> None:
        mine = [c for c in committables if c.startswith(f"{self.subtask}/")]
        assert mine == list(committables), "given another subtask's transaction"
        self.commit(mine)
        with self.up.lock:
            for name in [n for n in self.up.pending if n.startswith(f"{self.subtask}/")]:
                del self.up.pending[name]


class Counter(Operator):
    """A stateful operator that is not keyed: counts rows into its checkpointed state."""

    name = "counter"

    def __init__(self) -> None:
        self.rows = 0

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        self.rows += batch.num_rows
        return [batch]

    def snapshot_state(self) -> Mapping[str, pa.Table]:
        return {"count": pa.table({"rows": [self.rows]})}

    def restore_state(self, tables: Mapping[str, pa.Table]) -> None:
        self.rows = int(tables["count"].column("rows")[0].as_py()) if "count" in tables else 0


def _splits(n: int, rows: int) -> dict[str, tuple[int, int | None]]:
    return {f"s{i}": (i * rows, (i + 1) * rows) for i in range(n)}


def _window(table: pa.Table, sink: Any, *, splits: int = 1) -> Pipeline:
    return (
        Pipeline(
            CollectionSource(table, batch_size=300, split_count=splits),
            watermarks=WatermarkStrategy.bounded_out_of_orderness("ts", "2s"),
        )
        .window(tumbling("5s"), [agg.count(), agg.sum("v")], by="k")
        .to(sink)
    )


def _committed(up: Upstream) -> pl.DataFrame:
    return pl.from_arrow(pa.Table.from_batches(up.committed)).sort(["window_start", "k"])


# -- splits, routing, sinks ----------------------------------------------------------------------------


def test_each_reader_owns_a_share_of_the_splits_and_every_row_arrives_once() -> None:
    src = IdSource(_splits(5, 2000), batch_rows=100)
    where = Where("split_start")
    sink = CountingSink()
    result = (
        Pipeline(src)
        .with_columns(split_start=lambda b: pa.array((b.column("id").to_numpy() // 2000) * 2000))
        .map_batches(where)
        .to(sink)
        .run(progress=False, parallelism=2)
    )
    assert result.parallelism == 2 and result.rows == 10_000
    assert np.array_equal(sink.ids, np.arange(10_000))
    # Splits s0..s4 sorted round robin: subtask 0 reads s0, s2, s4, subtask 1 s1, s3; each split's rows
    # went through one operator subtask only.
    assert dict(where.seen) == {"arrowflow-ops0-0": {0, 4000, 8000}, "arrowflow-ops0-1": {2000, 6000}}
    assert result.stage("source").rows_out == 10_000 and result.stage("sink").rows_in == 10_000


def test_a_parallel_file_sink_writes_one_share_per_subtask_exactly_once(tmp_path: Path) -> None:
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    src = IdSource(_splits(4, 3000), batch_rows=100, delay=0.001)
    result = (
        Pipeline(src)
        .to(FileSink(out))
        .run(
            progress=False,
            parallelism=2,
            checkpoint_dir=ckpt,
            guarantee="exactly-once",
            checkpoint_interval=0.02,
        )
    )
    files = sorted(out.glob("*.parquet"))
    ids = np.sort(np.concatenate([pq.read_table(f).column("id").to_numpy() for f in files]))
    assert np.array_equal(ids, np.arange(12_000)), "rows lost or written twice"
    run_ids = {f.name.split("-")[1] for f in files}
    assert len(run_ids) == 2, "each subtask writes its own files"
    assert result.sink_metrics["files_committed"] == len(files)
    doc = json.loads((ckpt / "checkpoint.json").read_text())["body"]
    assert doc["version"] == 3 and doc["parallelism"] == 2 and len(doc["sink_committables"]) == 2


def test_a_sink_that_cannot_run_in_parallel_gets_one_writer_fed_by_all_subtasks(tmp_path: Path) -> None:
    up = Upstream()
    result = (
        Pipeline(IdSource(_splits(3, 2000), batch_rows=100))
        .to(TxSink(up))
        .run(progress=False, parallelism=3, checkpoint_dir=tmp_path, guarantee="exactly-once")
    )
    assert np.array_equal(all_ids(up.committed), np.arange(6000))
    cp = CheckpointStore(tmp_path).load()
    assert cp is not None and cp.parallelism == 3 and cp.sink_committables is None
    assert not [t for t in threading.enumerate() if t.name.startswith("arrowflow-writer-1")]
    assert result.rows_written == 6000


def test_a_thread_safe_sink_is_shared_by_the_subtasks() -> None:
    sink = NullSink()
    result = Pipeline(IdSource(_splits(4, 5000), batch_rows=500)).to(sink).run(progress=False, parallelism=2)
    assert sink.rows == 20_000 and result.sink_metrics["rows"] == 20_000


def test_keyed_operators_get_the_rows_of_the_keys_their_subtask_owns() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    table = pa.table({"id": np.arange(n), "user": [f"u{i}" for i in rng.integers(0, 40, n)]})
    where = Where("user")
    sink = MemorySink()
    Pipeline(CollectionSource(table, batch_size=500, split_count=4)).key_by("user", 8).map_batches(where).to(
        sink
    ).run(progress=False, parallelism=2)
    assert np.array_equal(np.sort(sink.table().column("id").to_numpy()), np.arange(n))
    seen = dict(where.seen)
    assert set(seen) == {"arrowflow-ops0-0", "arrowflow-ops0-1"}  # both subtasks got keys
    assert not (seen["arrowflow-ops0-0"] & seen["arrowflow-ops0-1"]), "a key was processed in two subtasks"
    assert seen["arrowflow-ops0-0"] | seen["arrowflow-ops0-1"] == {f"u{i}" for i in range(40)}


def test_parallel_windows_equal_the_polars_oracle() -> None:
    table = _events(30_000)
    sink = MemorySink()
    # Four splits: both readers feed rows of every key, so each window needs the rows routed to it.
    result = _window(table, sink, splits=4).run(progress=False, parallelism=2)
    got = pl.from_arrow(sink.table()).sort(["window_start", "k"])
    assert result.stage("window").late_rows == 0 and result.watermark == MAX_WATERMARK
    assert got.equals(_oracle(table))


def test_a_subtask_sees_the_minimum_watermark_over_its_inputs() -> None:
    """Reader 0 reads a short split and is done early (its channels get the final watermark) while
    reader 1 still reads a long one: the window must wait for reader 1, or its rows would be late."""
    short = [[i * 1_000] for i in range(20)]
    long = [[i * 100_000 + j * 1_000 for j in range(100)] for i in range(300)]  # 30 s of event time
    src = ScriptSource({"a": short, "b": long})
    sink = MemorySink()
    result = (
        Pipeline(src, watermarks=WatermarkStrategy.monotonous("ts"))
        .window(tumbling("1s"), [agg.count()], by="split")
        .to(sink)
        .run(progress=False, parallelism=2)
    )
    assert result.stage("window").late_rows == 0
    counts = pl.from_arrow(sink.table()).group_by("split").agg(pl.col("count").sum())
    assert dict(zip(counts["split"], counts["count"], strict=True)) == {"a": 20, "b": 30_000}


def test_late_rows_of_every_subtask_reach_the_one_dead_letter_sink() -> None:
    ts = START_US + np.arange(6000, dtype=np.int64) * 10_000
    ts[::500] -= 30_000_000  # 12 rows 30 s behind: their windows were emitted long before
    table = pa.table({"ts": pa.array(ts, pa.timestamp("us")), "k": np.arange(6000) % 7})
    dead = MemorySink()
    result = (
        Pipeline(CollectionSource(table, batch_size=200), watermarks=WatermarkStrategy.monotonous("ts"))
        .window(tumbling("1s"), [agg.count()], by="k", late_rows=dead)
        .to(MemorySink())
        .run(progress=False, parallelism=2, watermark_interval=0)
    )
    assert dead.table().num_rows == result.stage("window").late_rows == 11  # the first one is on time


def test_max_rows_is_exact_with_parallel_readers() -> None:
    sink = CountingSink()
    result = (
        Pipeline(IdSource(_splits(4, 5000), batch_rows=100))
        .to(sink)
        .run(progress=False, parallelism=2, max_rows=1234)
    )
    assert result.rows == 1234 and len(sink.ids) == 1234 and len(np.unique(sink.ids)) == 1234


def test_discovered_splits_go_to_a_reader(tmp_path: Path) -> None:
    src = IdSource(
        {"a": (0, 3000), "b": (3000, 6000)},
        batch_rows=100,
        delay=0.003,
        discovered={"late": (50_000, 50_500)},
        discovery_interval=0.02,
    )
    sink = CountingSink()
    Pipeline(src).to(sink).run(progress=False, checkpoint_dir=tmp_path, parallelism=2)
    assert np.array_equal(sink.ids, np.concatenate([np.arange(6000), np.arange(50_000, 50_500)]))
    cp = CheckpointStore(tmp_path).load()
    assert cp is not None and sorted(cp.finished) == ["a", "b", "late"]


def test_kafka_exactly_once_sink_has_a_transactional_id_per_subtask() -> None:
    sink = TransactionalKafkaSink("127.0.0.1:1", topic="t", transactional_id_prefix="job")
    twin = sink.for_subtask(1, 2)
    assert type(twin) is type(sink) and twin is not sink
    assert (sink.transactional_id, twin.transactional_id) == ("job-0", "job-1")  # type: ignore[attr-defined]
    assert twin.error_policy is sink.error_policy
    plain = KafkaSink("127.0.0.1:1", topic="t")
    plain_twin = plain.for_subtask(1, 2)
    assert type(plain_twin) is KafkaSink and plain_twin is not plain
    for s in (sink, twin, plain, plain_twin):
        s.close()  # nothing was written: nothing to wait for


# -- checkpoints across parallelism --------------------------------------------------------------------


def test_window_state_is_checkpointed_per_subtask(tmp_path: Path) -> None:
    table = _events(30_000)
    _window(table, TxSink(Upstream())).run(
        progress=False,
        parallelism=2,
        checkpoint_dir=tmp_path,
        guarantee="exactly-once",
        max_rows=12_000,
        checkpoint_interval=0.05,
    )
    cp = CheckpointStore(tmp_path).load()
    assert cp is not None and cp.version == 3 and cp.parallelism == 2
    assert set(cp.operator_state) == {"0.0", "0.1"}
    assert {ref["dir"].rsplit("/", 1)[1] for ref in cp.operator_state.values()} == {
        "0.0-window",
        "0.1-window",
    }


@pytest.mark.parametrize(("first", "second"), [(2, 1), (1, 3), (2, 3), (3, 2)])
def test_window_state_is_redistributed_to_another_parallelism(
    tmp_path: Path, first: int, second: int
) -> None:
    table = _events(30_000)
    up = Upstream()
    opts: dict[str, Any] = {
        "progress": False,
        "checkpoint_dir": tmp_path,
        "guarantee": "exactly-once",
        "checkpoint_interval": 0.05,
    }
    one = _window(table, TxSink(up)).run(parallelism=first, max_rows=12_000, **opts)
    assert one.watermark != MAX_WATERMARK
    two = _window(table, TxSink(up)).run(parallelism=second, **opts)
    assert two.rows == 18_000 and two.watermark == MAX_WATERMARK
    assert _committed(up).equals(_oracle(table)), "windows lost or emitted twice across the rescaling"


def test_file_sink_output_resumes_under_another_parallelism(tmp_path: Path) -> None:
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    opts: dict[str, Any] = {
        "progress": False,
        "checkpoint_dir": ckpt,
        "guarantee": "exactly-once",
        "checkpoint_interval": 0.02,
    }
    Pipeline(IdSource(_splits(4, 3000), batch_rows=100)).to(FileSink(out)).run(
        parallelism=2, max_rows=5000, **opts
    )
    Pipeline(IdSource(_splits(4, 3000), batch_rows=100)).to(FileSink(out)).run(parallelism=1, **opts)
    ids = np.sort(np.concatenate([pq.read_table(f).column("id").to_numpy() for f in out.glob("*.parquet")]))
    assert np.array_equal(ids, np.arange(12_000))
    assert not list(out.glob(".*")), "no pending or in-progress file left"


def test_state_that_is_not_keyed_is_not_redistributed(tmp_path: Path) -> None:
    up = Upstream()

    def pipeline() -> Pipeline:
        return Pipeline(IdSource(_splits(2, 3000), batch_rows=100)).via(Counter()).to(TxSink(up))

    pipeline().run(progress=False, parallelism=2, checkpoint_dir=tmp_path, max_rows=1000)
    with pytest.raises(CheckpointError, match=r"operator 'counter' at position 0 .*parallelism=2"):
        pipeline().run(progress=False, parallelism=1, checkpoint_dir=tmp_path)
    result = pipeline().run(progress=False, parallelism=2, checkpoint_dir=tmp_path)  # the same: fine
    assert result.rows == 5000


def test_per_instance_transactions_are_not_given_to_fewer_instances(tmp_path: Path) -> None:
    up = Upstream()
    src = IdSource(_splits(4, 2000), batch_rows=100, delay=0.001)
    Pipeline(src).to(OwnTxSink(up)).run(
        progress=False, parallelism=2, checkpoint_dir=tmp_path, guarantee="exactly-once", max_rows=3000
    )
    cp = CheckpointStore(tmp_path).load()
    assert cp is not None and cp.sink_committables is not None and len(cp.sink_committables) == 2
    with pytest.raises(CheckpointError, match=r"2 OwnTxSink instances.*parallelism=2"):
        Pipeline(IdSource(_splits(4, 2000))).to(OwnTxSink(up)).run(
            progress=False, parallelism=1, checkpoint_dir=tmp_path, guarantee="exactly-once"
        )
    Pipeline(IdSource(_splits(4, 2000))).to(OwnTxSink(up)).run(
        progress=False, parallelism=3, checkpoint_dir=tmp_path, guarantee="exactly-once"
    )
    assert np.array_equal(all_ids(up.committed), np.arange(8000))
