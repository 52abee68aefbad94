"""Event time through the runner: per-split watermarks for any source, watermark items in order with
the batches, late rows, alignment, idleness, window state in checkpoints, metrics."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipeline_doubles import TxSink, Upstream

from arrowflow import CheckpointError, Pipeline, Sink, Source, Split, SplitReader, WatermarkStrategy, agg
from arrowflow.connectors.collection import CollectionSource
from arrowflow.connectors.datagen import DataGenSource, Timestamps
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.filesystem import FileSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.pipeline import CheckpointStore
from arrowflow.time import MAX_WATERMARK, session, tumbling

START = datetime(2026, 1, 1)
START_US = int(START.replace(tzinfo=timezone.utc).timestamp() * 1e6)
MS = 1000


class RecordingSink(Sink):
    """Records writes and watermarks in the order the writer thread handed them over."""

    name = "recording"

    def __init__(self, column: str = "ts") -> None:
        self.events: list[tuple[str, Any]] = []
        self.column = column

    def write(self, batch: pa.RecordBatch) -> None:
        self.events.append(("batch", batch))

    def on_watermark(self, watermark: int) -> None:
        self.events.append(("watermark", watermark))

    def watermarks(self) -> list[int]:
        return [v for kind, v in self.events if kind == "watermark"]

    def table(self) -> pa.Table:
        return pa.Table.from_batches([b for kind, b in self.events if kind == "batch"])

    def assert_no_row_behind_a_watermark(self) -> None:
        """Every row written after the sink saw watermark W has an event time >= W (late rows dropped)."""
        current = None
        for kind, value in self.events:
            if kind == "watermark":
                assert current is None or value > current, "watermarks must only go up"
                current = value
            elif current is not None:
                ts = value.column(self.column).cast(pa.int64()).to_numpy()
                assert ts.min() >= current, "a batch arrived behind the watermark the sink had already seen"


class ScriptSplit(SplitReader):
    def __init__(self, split: Split, position: Any, source: ScriptSource) -> None:
        super().__init__(split, position)
        self.src = source
        self.batches: list[list[int]] = source.script[split.split_id]
        self.next = 0 if position is None else int(position)

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        self.src.reads.append((self.split.split_id, self.next))
        if self.next >= len(self.batches):
            if not self.split.bounded:
                time.sleep(min(timeout, 0.01))
            return None
        ts = self.batches[self.next]
        self.next += 1
        return pa.record_batch(
            {
                "ts": pa.array(np.asarray(ts, dtype=np.int64) + START_US, pa.timestamp("us")),
                "split": [self.split.split_id] * len(ts),
            }
        )

    @property
    def finished(self) -> bool:
        return self.split.bounded and self.next >= len(self.batches)

    def snapshot(self) -> Any:
        return self.next


class ScriptSource(Source):
    """Splits that return scripted batches of event-time offsets (microseconds after START)."""

    name = "script"

    def __init__(self, script: dict[str, list[list[int]]], *, bounded: bool = True) -> None:
        self.script = script
        self._bounded = bounded
        self.reads: list[tuple[str, int]] = []

    @property
    def bounded(self) -> bool:
        return self._bounded

    def plan(self) -> list[Split]:
        return [Split(split_id=sid, bounded=self._bounded) for sid in self.script]

    def open(self, split: Split, position: Any = None) -> ScriptSplit:
        return ScriptSplit(split, position, self)


# -- per-split watermarks, any source ----------------------------------------------------------------


def test_multi_split_datagen_has_a_watermark_per_split_and_the_minimum_downstream() -> None:
    n, splits = 30_000, 3
    source = DataGenSource(
        {"id": Seq(), "ts": Timestamps(start=START, step=1000, unit="us")},
        count=n,
        num_splits=splits,
        batch_size=500,
    )
    sink = RecordingSink()
    result = (
        Pipeline(source, watermarks=WatermarkStrategy.monotonous("ts"), late_rows="drop")
        .to(sink)
        .run(progress=False, max_rows=n // 2, max_batch_rows=500)
    )
    table = sink.table()
    ids = table.column("id").to_numpy()
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    per_split = n // splits
    expect = {}
    for k in range(splits):
        mine = (ids >= k * per_split) & (ids < (k + 1) * per_split)
        assert mine.any()
        expect[f"datagen-{k}-of-{splits}"] = int(ts[mine].max())  # monotonous: the max seen
    assert result.split_watermarks == expect
    assert result.watermark == min(expect.values())  # stopped by max_rows: no end-of-input watermark
    assert sink.watermarks()[-1] == result.watermark
    assert result.late_rows == 0
    sink.assert_no_row_behind_a_watermark()


def test_file_source_keeps_a_watermark_per_file(tmp_path: Path) -> None:
    for i, hour in enumerate((3, 1, 2)):
        ts = START_US + hour * 3_600_000_000 + np.arange(1000, dtype=np.int64) * 1000
        pq.write_table(
            pa.table({"ts": pa.array(ts, pa.timestamp("us")), "f": [i] * 1000}), tmp_path / f"f{i}.parquet"
        )
    sink = RecordingSink()
    strategy = WatermarkStrategy.bounded_out_of_orderness("ts", "1s")
    result = (
        Pipeline(FileSource(tmp_path, format="parquet"), watermarks=strategy)
        .to(sink)
        .run(progress=False, max_batch_rows=100, watermark_interval=0)
    )
    assert set(result.split_watermarks) == {"f0.parquet", "f1.parquet", "f2.parquet"}
    for i, hour in enumerate((3, 1, 2)):
        last = START_US + hour * 3_600_000_000 + 999 * 1000
        assert result.split_watermarks[f"f{i}.parquet"] == last - 1_000_000
    assert result.watermark == MAX_WATERMARK  # read to the end
    marks = sink.watermarks()
    assert marks == sorted(marks) and marks[-1] == MAX_WATERMARK
    # While the three files are read round robin, the pipeline watermark follows the slowest (hour 1);
    # a finished file stops counting, so then it is the final one of the file still read (hour 2), and
    # once all have finished the highest final one (hour 3), then the end of input.
    final = {h: START_US + h * 3_600_000_000 + 999 * 1000 - 1_000_000 for h in (1, 2, 3)}
    finite = [m for m in marks if m != MAX_WATERMARK]
    assert len([m for m in finite if m <= final[1]]) >= 9
    assert [m for m in finite if m > final[1]] == [final[2], final[3]]


@pytest.mark.parametrize("interval", [0, 0.2])
def test_watermarks_reach_the_sink_in_order_with_the_batches(interval: float) -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    ts = START_US + np.arange(n, dtype=np.int64) * 10 * MS - rng.integers(0, 500 * MS, n)
    table = pa.table({"ts": pa.array(ts, pa.timestamp("us")), "v": np.arange(n)})
    sink = RecordingSink()
    strategy = WatermarkStrategy.bounded_out_of_orderness("ts", "500ms")
    result = (
        Pipeline(CollectionSource(table, batch_size=256), watermarks=strategy)
        .to(sink)
        .run(progress=False, watermark_interval=interval)
    )
    assert result.late_rows == 0
    marks = sink.watermarks()
    assert marks[-1] == MAX_WATERMARK
    if not interval:
        assert len(marks) > 50  # one after (almost) every batch; periodically: as often as time allows
    sink.assert_no_row_behind_a_watermark()
    assert sink.table().num_rows == n


# -- late rows ---------------------------------------------------------------------------------------


SCRIPT = {"a": [[0, 10, 20], [30, 40], [5, 35, 40, 50], [60], [1, 2, 60, 70]]}
# With a monotonous watermark: after batch 2 the watermark is 40, batch 3 has 5 and 35 late (< 40; 40
# itself is not); after batch 4 it is 60 and batch 5 has 1 and 2 late.
LATE = [5, 35, 1, 2]


@pytest.mark.parametrize("policy", ["keep", "drop", "sink"])
def test_late_rows_follow_the_policy(policy: str) -> None:
    dead = MemorySink()
    sink = RecordingSink()
    strategy = WatermarkStrategy.monotonous("ts")
    result = (
        Pipeline(ScriptSource(SCRIPT), watermarks=strategy, late_rows=dead if policy == "sink" else policy)
        .to(sink)
        .run(progress=False, watermark_interval=0)
    )
    written = sorted(sink.table().column("ts").cast(pa.int64()).to_numpy() - START_US)
    everything = sorted(t for b in SCRIPT["a"] for t in b)
    assert result.late_rows == len(LATE)
    assert result.stage("source").late_rows == len(LATE)
    if policy == "keep":
        assert written == everything
    else:
        on_time = list(everything)
        for t in LATE:
            on_time.remove(t)
        assert written == on_time
        sink.assert_no_row_behind_a_watermark()
    if policy == "sink":
        dl = dead.table()
        assert sorted(dl.column("ts").cast(pa.int64()).to_numpy() - START_US) == sorted(LATE)
        assert dl.column_names == ["ts", "split", "error"]
        assert all("before the watermark" in e for e in dl.column("error").to_pylist())


def test_the_watermark_is_restored_from_the_checkpoint(tmp_path: Path) -> None:
    """A restarted pipeline starts from the checkpoint's watermark: it re-emits it first, and rows
    behind it are late (the watermark never goes back across a restart)."""
    strategy = WatermarkStrategy.monotonous("ts")

    def run(sink: RecordingSink, **kwargs: Any) -> Any:
        return (
            Pipeline(ScriptSource(SCRIPT), watermarks=strategy, late_rows="drop")
            .to(sink)
            .run(progress=False, checkpoint_dir=tmp_path, watermark_interval=0, **kwargs)
        )

    first = run(RecordingSink(), max_rows=5, max_batch_rows=3)  # batches 1 and 2: watermark 40
    assert first.watermark == START_US + 40 and first.late_rows == 0
    sink = RecordingSink()
    second = run(sink)
    assert sink.events[0] == ("watermark", START_US + 40)
    assert second.late_rows == len(LATE)  # 5 and 35 are behind the restored watermark
    written = sorted(sink.table().column("ts").cast(pa.int64()).to_numpy() - START_US)
    assert written == [40, 50, 60, 60, 70]


def test_a_split_finished_before_the_restart_does_not_hold_the_watermark(tmp_path: Path) -> None:
    script = {"a": [[0], [10]], "b": [[0], [20], [30], [40], [50]]}
    strategy = WatermarkStrategy.monotonous("ts")

    def run(sink: RecordingSink, **kwargs: Any) -> Any:
        return (
            Pipeline(ScriptSource(script), watermarks=strategy)
            .to(sink)
            .run(progress=False, checkpoint_dir=tmp_path, watermark_interval=0, **kwargs)
        )

    run(RecordingSink(), max_rows=4)  # a0 b0 a1 b1: "a" is finished
    cp = CheckpointStore(tmp_path).load()
    assert cp is not None and list(cp.finished) == ["a"]
    sink = RecordingSink()
    run(sink)
    finite = [w - START_US for w in sink.watermarks() if w != MAX_WATERMARK]
    assert finite[-1] == 50, finite  # "a" (final watermark 10) no longer counts


def test_late_rows_needs_watermarks() -> None:
    from arrowflow import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        Pipeline(ScriptSource(SCRIPT), late_rows="drop")
    assert info.value.option == "late_rows"
    with pytest.raises(ConfigurationError) as info:
        Pipeline(ScriptSource(SCRIPT), watermarks="ts")  # type: ignore[arg-type]
    assert info.value.option == "watermarks"


# -- idleness and alignment --------------------------------------------------------------------------


def _run_until(pipeline: Pipeline, done: Any, timeout: float = 60.0) -> Any:
    stop = threading.Event()
    out: dict[str, Any] = {}

    def target() -> None:
        out["result"] = pipeline.run(progress=False, stop_event=stop, read_timeout=0.02)

    t = threading.Thread(target=target)
    t.start()
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    t.join(timeout)
    assert done(), "the condition was not reached"
    return out["result"]


def test_an_idle_split_does_not_hold_the_pipeline_watermark() -> None:
    script = {"busy": [[i * 100, i * 100 + 50] for i in range(20)], "quiet": []}
    sink = RecordingSink()
    strategy = WatermarkStrategy.monotonous("ts").with_idleness("200ms")
    pipeline = Pipeline(ScriptSource(script, bounded=False), watermarks=strategy).to(sink)
    result = _run_until(
        pipeline, lambda: bool(sink.watermarks()) and sink.watermarks()[-1] == START_US + 1950
    )
    assert result.watermark == START_US + 1950
    # Without idleness the quiet split holds it back: no watermark at all.
    sink2 = RecordingSink()
    source2 = ScriptSource(script, bounded=False)
    pipeline2 = Pipeline(source2, watermarks=WatermarkStrategy.monotonous("ts")).to(sink2)
    result2 = _run_until(pipeline2, lambda: len(source2.reads) > 200)
    assert sink2.watermarks() == [] and result2.watermark is None
    assert sink2.table().num_rows == 40


def test_alignment_pauses_the_split_ahead_and_loses_nothing() -> None:
    # "fast" covers 100 ms per batch, "slow" 1 ms: unaligned, fast would run 100x ahead.
    script = {"fast": [[i * 100_000] for i in range(40)], "slow": [[i * 1_000] for i in range(4000)]}

    def max_lead(reads: list[tuple[str, int]]) -> int:
        fast = slow = 0
        lead = 0
        for sid, pos in reads:
            if sid == "fast":
                fast = pos * 100_000
            else:
                slow = pos * 1_000
            lead = max(lead, fast - slow)
        return lead

    aligned = ScriptSource(script)
    strategy = WatermarkStrategy.monotonous("ts")
    sink = RecordingSink()
    Pipeline(aligned, watermarks=strategy.with_alignment("test-align", "50ms")).to(sink).run(progress=False)
    assert sink.table().num_rows == 4040  # paused, not dropped
    # A fast read starts only while its watermark is within the drift of the slowest (plus one batch).
    assert max_lead(aligned.reads) <= 50_000 + 100_000 + 1_000
    unaligned = ScriptSource(script)
    Pipeline(unaligned, watermarks=strategy).to(RecordingSink()).run(progress=False)
    assert max_lead(unaligned.reads) > 1_000_000  # the check above can fail


# -- windows, checkpoints, restore ---------------------------------------------------------------------


def _events(n: int, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = START_US + np.arange(n, dtype=np.int64) * 7 * MS - rng.integers(0, 2000 * MS, n)
    return pa.table(
        {"ts": pa.array(ts, pa.timestamp("us")), "k": rng.integers(0, 4, n), "v": rng.integers(0, 100, n)}
    )


def _oracle(table: pa.Table) -> pl.DataFrame:
    return (
        pl.from_arrow(table)
        .sort("ts", maintain_order=True)
        .group_by_dynamic("ts", every="5s", group_by="k", include_boundaries=True)
        .agg(pl.len().cast(pl.Int64).alias("count"), pl.col("v").sum().alias("v_sum"))
        .rename({"_lower_boundary": "window_start", "_upper_boundary": "window_end"})
        .select(["k", "window_start", "window_end", "count", "v_sum"])
        .sort(["window_start", "k"])
    )


def _window_pipeline(table: pa.Table, sink: Sink) -> Pipeline:
    return (
        Pipeline(
            CollectionSource(table, batch_size=300),
            watermarks=WatermarkStrategy.bounded_out_of_orderness("ts", "2s"),
        )
        .window(tumbling("5s"), [agg.count(), agg.sum("v")], by="k")
        .to(sink)
    )


def test_window_state_is_checkpointed_as_arrow_ipc_and_resumed_exactly_once(tmp_path: Path) -> None:
    table = _events(30_000)
    up = Upstream()
    ckpt = tmp_path / "ckpt"
    first = _window_pipeline(table, TxSink(up)).run(
        progress=False,
        checkpoint_dir=ckpt,
        guarantee="exactly-once",
        max_rows=12_000,
        checkpoint_interval=0.05,
    )
    assert first.rows == 12_000 and first.watermark not in (None, MAX_WATERMARK)
    cp = CheckpointStore(ckpt).load()
    assert cp is not None and cp.version == 2
    assert cp.watermarks["watermark"] == first.watermark
    ref = cp.operator_state["0"]
    assert ref["operator"] == "window" and set(ref["files"]) >= {"meta", "partials"}
    state_dir = ckpt / ref["dir"]
    assert sorted(p.name for p in state_dir.iterdir()) == sorted(f"{n}.arrow" for n in ref["files"])
    kept = {int(p.name) for p in (ckpt / "state").iterdir()}
    assert kept <= {cp.checkpoint_id, cp.checkpoint_id - 1}, "old state directories are removed"
    partials = pa.ipc.open_file(str(state_dir / "partials.arrow")).read_all()
    assert partials.num_rows > 0  # open windows travelled in the checkpoint
    second = _window_pipeline(table, TxSink(up)).run(
        progress=False, checkpoint_dir=ckpt, guarantee="exactly-once", checkpoint_interval=0.05
    )
    assert second.rows == 18_000 and second.watermark == MAX_WATERMARK
    got = pl.from_arrow(pa.Table.from_batches(up.committed)).sort(["window_start", "k"])
    expect = _oracle(table)
    assert got.height == expect.height
    assert got.equals(expect), "windows lost or emitted twice across the restart"


def test_a_pipeline_run_again_starts_its_windows_afresh() -> None:
    """Operators are reset from the checkpoint (or to empty without one) at every start: a second run
    of the same Pipeline object computes the same windows instead of finding them already emitted."""
    table = _events(3000)
    sink = MemorySink()
    pipeline = _window_pipeline(table, sink)
    pipeline.run(progress=False)
    again = MemorySink()
    second = pipeline.to(again).run(progress=False)  # the same Window object
    assert second.stage("window").late_rows == 0
    assert again.table().equals(sink.table())


def test_a_changed_pipeline_cannot_resume_window_state(tmp_path: Path) -> None:
    table = _events(5_000)
    ckpt = tmp_path / "ckpt"
    _window_pipeline(table, TxSink(Upstream())).run(
        progress=False, checkpoint_dir=ckpt, guarantee="exactly-once", max_rows=3000
    )
    changed = (
        Pipeline(CollectionSource(table, batch_size=300), watermarks=WatermarkStrategy.monotonous("ts"))
        .select(["ts", "k", "v"])
        .to(TxSink(Upstream()))
    )
    with pytest.raises(CheckpointError, match="'window' at position 0"):
        changed.run(progress=False, checkpoint_dir=ckpt, guarantee="exactly-once")
    cp = CheckpointStore(ckpt).load()
    assert cp is not None
    path = ckpt / cp.operator_state["0"]["dir"] / "partials.arrow"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="checksum"):
        _window_pipeline(table, TxSink(Upstream())).run(
            progress=False, checkpoint_dir=ckpt, guarantee="exactly-once"
        )


def test_windows_fire_at_the_end_of_a_bounded_input_without_watermarks() -> None:
    table = _events(3000)
    sink = MemorySink()
    (
        Pipeline(CollectionSource(table, batch_size=500))
        .window(tumbling("5s"), [agg.count(), agg.sum("v")], by="k", on="ts")
        .to(sink)
        .run(progress=False)
    )
    assert pl.from_arrow(sink.table()).sort(["window_start", "k"]).equals(_oracle(table))


def test_window_forwards_its_lateness_held_watermark_and_session_windows_run() -> None:
    table = _events(4000)
    sink = RecordingSink(column="window_end")
    result = (
        Pipeline(
            CollectionSource(table, batch_size=128),
            watermarks=WatermarkStrategy.bounded_out_of_orderness("ts", "2s"),
        )
        .window(session("300ms"), [agg.count()], by="k", allowed_lateness="1s")
        .to(sink)
        .run(progress=False)
    )
    # Every window result written after the sink saw W ends after W (W = source watermark - lateness).
    sink.assert_no_row_behind_a_watermark()
    assert int(pc_sum(sink.table().column("count"))) == 4000
    assert result.stage("window").late_rows == 0
    assert result.stage("window").rows_out == sink.table().num_rows


def pc_sum(col: pa.ChunkedArray) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(col).as_py())


def test_processing_time_windows_in_a_pipeline() -> None:
    script = {"a": [[i] for i in range(50)]}
    sink = MemorySink()
    result = (
        Pipeline(ScriptSource(script))
        .window(tumbling("50ms"), [agg.count()], time="processing")
        .to(sink)
        .run(progress=False)
    )
    assert result.rows == 50
    assert pc_sum(sink.table().column("count")) == 50  # every row in exactly one window


# -- metrics -------------------------------------------------------------------------------------------


def test_watermark_and_lag_in_run_result_and_prometheus() -> None:
    script = {"a": [[i * 1000] for i in range(100)], "b": [[i * 1000 + 500] for i in range(100)]}
    sink = RecordingSink()
    pipeline = Pipeline(
        ScriptSource(script, bounded=False), watermarks=WatermarkStrategy.monotonous("ts")
    ).to(sink)
    scraped: dict[str, str] = {}

    def scrape() -> bool:
        port = pipeline.metrics_port
        if port is None or sum(kind == "batch" for kind, _ in sink.events) < 200:
            return False
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            scraped["text"] = resp.read().decode()
        return "arrowflow_split_watermark_seconds" in scraped["text"]

    stop = threading.Event()
    out: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: out.update(
            r=pipeline.run(progress=False, metrics_port=0, stop_event=stop, read_timeout=0.02)
        )
    )
    t.start()
    deadline = time.monotonic() + 60
    while not scrape() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join(60)
    text = scraped["text"]
    assert 'arrowflow_split_watermark_seconds{split="a"}' in text
    assert 'arrowflow_split_event_time_lag_seconds{split="b"}' in text
    assert "arrowflow_watermark_seconds " in text and "arrowflow_event_time_lag_seconds " in text
    assert 'arrowflow_late_rows_total{stage="source"} 0.0' in text
    result = out["r"]
    assert result.watermark == START_US + 99_000  # min over a (99000) and b (99500)
    assert result.split_watermarks == {"a": START_US + 99_000, "b": START_US + 99_500}
    lag = time.time() - (START_US + 99_000) / 1e6
    assert result.event_time_lag is not None and abs(result.event_time_lag - lag) < 3600
    assert set(result.split_event_time_lag) == {"a", "b"}
    json.dumps(result.split_watermarks)


def test_a_function_assigner_runs_once_per_batch_in_the_source_and_in_the_window() -> None:
    """With late rows in two batches (the source computes their late mask) a timestamp function is
    still called once per batch by the reader and once per batch by the window, never twice."""
    calls: list[int] = []

    def event_time(batch: pa.RecordBatch) -> pa.Array:
        calls.append(batch.num_rows)
        return batch.column("ts")

    result = (
        Pipeline(ScriptSource(SCRIPT), watermarks=WatermarkStrategy.monotonous(event_time), late_rows="drop")
        .window(tumbling("10ms"), [agg.count()])
        .to(MemorySink())
        .run(progress=False, watermark_interval=0)
    )
    assert result.late_rows == len(LATE)  # the late-mask path ran
    batches = len(SCRIPT["a"])
    assert result.stage("window").batches_in == batches  # every batch kept some rows
    assert len(calls) == 2 * batches
