"""Checkpoints: the store, commit ordering, resume, recovery of a two-phase sink, discovery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipeline_doubles import CountingSink, IdSource, TxSink, Upstream, all_ids

from arrowflow import CheckpointError, Pipeline, Split
from arrowflow.pipeline import Checkpoint, CheckpointStore

# -- the store ---------------------------------------------------------------------------------------


def _cp(i: int, **kw: Any) -> Checkpoint:
    return Checkpoint(
        checkpoint_id=i,
        splits=(Split(split_id="a", params={"start": 0}), Split(split_id="b", bounded=False)),
        positions={"a": i * 10, "b": {"offset": i, "epoch": "x"}},
        finished=("a",),
        committables=[{"file": f"f{i}"}],
        **kw,
    )


def test_store_round_trip_and_previous(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck")
    assert store.load() is None
    store.save(_cp(1))
    store.save(_cp(2))
    loaded = store.load()
    assert loaded is not None
    assert loaded.checkpoint_id == 2
    assert loaded.positions == {"a": 20, "b": {"offset": 2, "epoch": "x"}}
    assert [s.split_id for s in loaded.splits] == ["a", "b"] and loaded.splits[1].bounded is False
    assert list(loaded.finished) == ["a"] and list(loaded.committables) == [{"file": "f2"}]
    assert loaded.timestamp > 0
    prev = store.load_previous()
    assert prev is not None and prev.checkpoint_id == 1
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["checkpoint.json", "checkpoint.prev.json"]


def test_store_refuses_damaged_or_newer_documents(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_cp(3))
    doc = json.loads(store.path.read_text())
    doc["body"]["positions"]["a"] = 999  # a flipped value no longer matches the checksum
    store.path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="checksum"):
        store.load()
    store.path.write_text('{"sha256": "x", "bo')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        store.load()
    store.save(_cp(4, version=99))
    with pytest.raises(CheckpointError, match="version"):
        store.load()


def test_store_rejects_unserializable_positions_and_keeps_current(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_cp(1))
    with pytest.raises(CheckpointError, match="JSON"):
        store.save(Checkpoint(checkpoint_id=2, positions={"a": object()}))
    assert store.load().checkpoint_id == 1  # type: ignore[union-attr]


# -- ordering ----------------------------------------------------------------------------------------


def test_source_commit_happens_after_checkpoint_is_durable(tmp_path: Path) -> None:
    src = IdSource({"a": (0, 3_000), "b": (100_000, 103_000)}, batch_rows=100, delay=0.002)
    store = CheckpointStore(tmp_path)
    sink = TxSink(Upstream())
    checked: list[int] = []

    def on_commit(split_id: str, position: Any) -> None:
        # The durable checkpoint covers the acknowledged position (it may already be a newer one).
        cp = store.load()
        assert cp is not None and cp.positions[split_id] >= position
        # ... and the sink already committed the checkpoint's output.
        assert set(cp.committables) <= sink.up.committed_names
        checked.append(cp.checkpoint_id)

    src.on_commit = on_commit
    result = (
        Pipeline(src)
        .to(sink)
        .run(progress=False, checkpoint_dir=tmp_path, checkpoint_interval=0.03, guarantee="exactly-once")
    )
    assert result.checkpoints >= 3 and len(set(checked)) >= 3
    final = store.load()
    assert final is not None and final.checkpoint_id == result.last_checkpoint_id
    assert sorted(final.finished) == ["a", "b"]
    assert np.array_equal(
        all_ids(sink.up.committed), np.concatenate([np.arange(3_000), np.arange(100_000, 103_000)])
    )
    assert all(r.closed for r in src.readers)
    assert sorted(src.commits)[-1] == ("b", 103_000) and ("a", 3_000) in src.commits


# -- resume ------------------------------------------------------------------------------------------


def test_resume_continues_exactly_where_the_last_run_stopped(tmp_path: Path) -> None:
    up = Upstream()
    ranges: dict[str, tuple[int, int | None]] = {"a": (0, 4_000), "b": (10_000, 14_000)}
    first = (
        Pipeline(IdSource(ranges))
        .to(TxSink(up))
        .run(progress=False, checkpoint_dir=tmp_path, max_rows=3_000, guarantee="exactly-once")
    )
    assert first.rows == 3_000 and len(all_ids(up.committed)) == 3_000
    src2 = IdSource(ranges)
    sink2 = TxSink(up)
    second = Pipeline(src2).to(sink2).run(progress=False, checkpoint_dir=tmp_path, guarantee="exactly-once")
    assert second.rows == 5_000
    assert second.last_checkpoint_id == first.last_checkpoint_id + 1  # type: ignore[operator]
    cp1 = CheckpointStore(tmp_path).load_previous()
    assert cp1 is not None
    assert sorted(src2.opened) == sorted((sid, cp1.positions[sid]) for sid in ranges)
    assert sink2.recovered == [list(cp1.committables)]
    expected = np.concatenate([np.arange(4_000), np.arange(10_000, 14_000)])
    assert np.array_equal(all_ids(up.committed), expected)


def test_finished_splits_are_not_reopened_and_unplanned_splits_are_restored(tmp_path: Path) -> None:
    sink = CountingSink()
    # "small" finishes in the first run; "big" is stopped half way.
    Pipeline(IdSource({"small": (0, 100), "big": (1_000, 3_000)}, batch_rows=100)).to(sink).run(
        progress=False, checkpoint_dir=tmp_path, max_rows=1_000
    )
    cp = CheckpointStore(tmp_path).load()
    assert cp is not None and list(cp.finished) == ["small"]
    # The second run's plan no longer lists "big" (e.g. it was discovered last time): the checkpoint's
    # split list brings it back.
    src2 = IdSource({"small": (0, 100)}, batch_rows=100)
    result = Pipeline(src2).to(sink).run(progress=False, checkpoint_dir=tmp_path)
    assert [sid for sid, _ in src2.opened] == ["big"]
    assert result.rows == 2_000 - (1_000 - 100)
    assert np.array_equal(sink.ids, np.concatenate([np.arange(100), np.arange(1_000, 3_000)]))


def test_crash_between_store_and_sink_commit_is_recovered(tmp_path: Path) -> None:
    up = Upstream()
    src = IdSource({"a": (0, 5_000)}, batch_rows=100, delay=0.002)
    # The second commit fails after its checkpoint is durable: like a crash between the two steps.
    with pytest.raises(ConnectionError):
        Pipeline(src).to(TxSink(up, fail_commit_at=2)).run(
            progress=False, checkpoint_dir=tmp_path, checkpoint_interval=0.03, guarantee="exactly-once"
        )
    cp = CheckpointStore(tmp_path).load()
    assert cp is not None and cp.committables and set(cp.committables) <= set(up.pending)
    # The source was not told about the checkpoint whose sink commit failed.
    assert all(pos < cp.positions["a"] for _, pos in src.commits)
    sink2 = TxSink(up)
    Pipeline(IdSource({"a": (0, 5_000)})).to(sink2).run(
        progress=False, checkpoint_dir=tmp_path, guarantee="exactly-once"
    )
    assert sink2.recovered[0] == list(cp.committables)
    assert np.array_equal(all_ids(up.committed), np.arange(5_000))


def test_discovered_splits_are_read_and_checkpointed(tmp_path: Path) -> None:
    src = IdSource(
        {"a": (0, 3_000)},
        batch_rows=100,
        delay=0.003,
        discovered={"late": (50_000, 50_500)},
        discovery_interval=0.02,
    )
    sink = CountingSink()
    result = Pipeline(src).to(sink).run(progress=False, checkpoint_dir=tmp_path)
    assert result.rows == 3_500
    assert np.array_equal(sink.ids, np.concatenate([np.arange(3_000), np.arange(50_000, 50_500)]))
    cp = CheckpointStore(tmp_path).load()
    assert cp is not None and sorted(s.split_id for s in cp.splits) == ["a", "late"]
    assert sorted(cp.finished) == ["a", "late"]
