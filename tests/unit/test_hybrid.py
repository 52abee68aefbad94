"""HybridSource: switching, the end state handed to factories, restarts inside a later source, commits."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arrowflow import ArrowflowError, ConfigurationError, Pipeline, Source, Split, SplitReader
from arrowflow.connectors import CollectionSource, MemorySink
from arrowflow.connectors.filesystem import FileSink, FileSource
from arrowflow.connectors.hybrid import HybridSource
from arrowflow.testing import make_table


def _ids(batches: list[pa.RecordBatch]) -> list[int]:
    return [i for b in batches for i in b.column("id").to_pylist()]


def _drain(reader: SplitReader, max_rows: int = 50) -> list[pa.RecordBatch]:
    out = []
    deadline = time.monotonic() + 30
    while not reader.finished:
        assert time.monotonic() < deadline
        b = reader.read_batch(max_rows, 0.2)
        if b is not None:
            assert b.num_rows <= max_rows
            out.append(b)
    return out


class _Recording(Source):
    """A replayable id range whose readers record the positions committed to them (an upstream ack)."""

    replayable = True

    def __init__(self, start: int, stop: int, *, bounded: bool = True) -> None:
        self.start, self.stop, self._bounded = start, stop, bounded
        self.readers: list[_RecordingReader] = []

    @property
    def bounded(self) -> bool:
        return self._bounded

    def plan(self) -> list[Split]:
        return [Split(split_id="r", bounded=self._bounded, params={})]

    def open(self, split: Split, position: Any = None) -> SplitReader:
        reader = _RecordingReader(split, position, self)
        self.readers.append(reader)
        return reader

    def hybrid_end_state(self, splits: list[Split], positions: dict[str, Any]) -> dict[str, Any]:
        return {"last_id": positions["r"] - 1}


class _RecordingReader(SplitReader):
    def __init__(self, split: Split, position: Any, source: _Recording) -> None:
        super().__init__(split, position)
        self.src = source
        self.next = source.start if position is None else position
        self.commits: list[Any] = []
        self.closed = False

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        stop = min(self.next + max_rows, self.src.stop)
        if stop <= self.next:
            return None
        b = pa.record_batch({"id": pa.array(range(self.next, stop), pa.int64())})
        self.next = stop
        return b

    @property
    def finished(self) -> bool:
        return self.src.bounded and self.next >= self.src.stop

    def snapshot(self) -> Any:
        return self.next

    def commit(self, snapshot: Any) -> None:
        self.commits.append(snapshot)

    def close(self) -> None:
        self.closed = True


def test_factory_gets_the_end_state_and_rows_arrive_in_order() -> None:
    seen: list[Any] = []

    def second(end: dict[str, Any]) -> Source:
        seen.append(end)
        return _Recording(end["state"]["last_id"] + 1, 250)

    hybrid = HybridSource([_Recording(0, 100), second])
    assert hybrid.bounded is False  # a factory last: unbounded unless told
    hybrid = HybridSource([_Recording(0, 100), second], bounded=True)
    assert _ids(list(hybrid.batches(max_rows=33))) == list(range(250))
    assert seen == [{"index": 0, "positions": {"r": 100}, "state": {"last_id": 99}}]
    assert json.loads(json.dumps(seen[0])) == seen[0]


def test_file_source_end_state(tmp_path: Path) -> None:
    data = make_table(300)
    pq.write_table(data.slice(0, 120), tmp_path / "a.parquet")
    pq.write_table(data.slice(120), tmp_path / "b.parquet")
    ends: list[Any] = []

    def after(end: dict[str, Any]) -> Source:
        ends.append(end)
        return CollectionSource(data.slice(0, 0))

    table = HybridSource([FileSource(str(tmp_path)), after], bounded=True).read_all()
    assert table.num_rows == 300
    state = ends[0]["state"]
    assert state["files"] == 2 and state["rows"] == 300
    assert state["max_mtime_ns"] == max((tmp_path / n).stat().st_mtime_ns for n in ("a.parquet", "b.parquet"))


def test_restart_inside_the_second_source_rebuilds_it_from_the_same_end() -> None:
    calls: list[Any] = []

    def second(end: dict[str, Any]) -> Source:
        calls.append(end)
        return _Recording(end["state"]["last_id"] + 1, 400)

    def make() -> HybridSource:
        return HybridSource([_Recording(0, 150), second], bounded=True)

    split = make().plan()[0]
    reader = make().open(split)
    first: list[pa.RecordBatch] = []
    while sum(b.num_rows for b in first) < 230:
        b = reader.read_batch(40, 0.1)
        if b is not None:
            first.append(b)
    snap = json.loads(json.dumps(reader.snapshot()))
    reader.close()
    assert snap["index"] == 1 and snap["positions"] == {"r": 230}

    again = make().open(Split.from_json(json.loads(split.dumps())), snap)
    assert again.snapshot() == snap
    rest = _drain(again)
    assert _ids(first) + _ids(rest) == list(range(400))
    assert calls[0] == calls[1], "the factory must see the same end state on restart"


def test_commits_reach_inner_readers_and_retired_readers_are_closed() -> None:
    first, second = _Recording(0, 60), _Recording(60, 200)
    hybrid = HybridSource([first, second])
    reader = hybrid.open(hybrid.plan()[0])
    reader.read_batch(40, 0.1)
    reader.commit(reader.snapshot())
    assert first.readers[0].commits == [40]
    while not second.readers:
        reader.read_batch(40, 0.1)
    snap = reader.snapshot()
    assert snap["index"] == 1
    assert not first.readers[0].closed  # the switch is not acknowledged yet
    reader.commit(snap)
    assert first.readers[0].commits[-1] == 60 and first.readers[0].closed
    _drain(reader)
    assert reader.finished and reader.read_batch(10, 0.05) is None
    reader.commit(reader.snapshot())
    assert second.readers[0].commits[-1] == 200
    reader.close()
    reader.close()
    assert second.readers[0].closed


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        HybridSource([])
    with pytest.raises(ConfigurationError):
        HybridSource([_Recording(0, 1, bounded=False), _Recording(1, 2)])
    with pytest.raises(ConfigurationError):
        HybridSource([_Recording(0, 1), 42])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError):
        HybridSource([_Recording(0, 1)], bounded=False)
    bad = HybridSource([lambda: _Recording(0, 5, bounded=False), _Recording(5, 6)])
    with pytest.raises(ArrowflowError):
        bad.read_all()
    not_a_source = HybridSource([_Recording(0, 5), lambda end: "nope"], bounded=True)
    with pytest.raises(ArrowflowError):
        not_a_source.read_all()


def test_pipeline_over_hybrid_with_checkpoints(tmp_path: Path) -> None:
    data = make_table(2000)
    hybrid = HybridSource(
        [CollectionSource(data.slice(0, 700), batch_size=64), lambda: CollectionSource(data.slice(700))],
        bounded=True,
    )
    sink = MemorySink()
    result = (
        Pipeline(hybrid)
        .to(sink)
        .run(
            checkpoint_dir=str(tmp_path / "ckpt"),
            checkpoint_interval=0.01,
            progress=False,
            max_batch_rows=100,
        )
    )
    assert result.rows == 2000
    assert sink.table().column("id").to_pylist() == list(range(2000))


def test_monitored_file_source_as_the_last_source(tmp_path: Path) -> None:
    data = make_table(500)
    (tmp_path / "in").mkdir()
    hybrid = HybridSource(
        [CollectionSource(data.slice(0, 200)), FileSource(str(tmp_path / "in"), monitor_interval=0.05)]
    )
    assert hybrid.bounded is False
    reader = hybrid.open(hybrid.plan()[0])
    got: list[pa.RecordBatch] = []
    written = False
    deadline = time.monotonic() + 60
    while sum(b.num_rows for b in got) < 500:
        assert time.monotonic() < deadline, "the new file was never picked up"
        b = reader.read_batch(128, 0.1)
        if b is not None:
            got.append(b)
        if not written and sum(x.num_rows for x in got) >= 200:
            with FileSink(str(tmp_path / "in")) as sink:  # rename-on-commit: appears atomically
                sink.write_table(data.slice(200))
            written = True
    assert not reader.finished
    assert sorted(_ids(got)) == list(range(500))
    reader.close()
