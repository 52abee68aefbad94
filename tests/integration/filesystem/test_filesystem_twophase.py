"""The FileSink rename protocol: hidden until commit, idempotent commit, recover, abort."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from arrowflow import ArrowflowError, ConnectorError
from arrowflow.connectors.filesystem import FileSink, RollingPolicy
from arrowflow.testing import assert_same_rows, make_table


def _read(root: Path) -> pa.Table:
    """What a directory reader sees (pyarrow.dataset ignores names starting with '.' or '_')."""
    return ds.dataset(str(root), format="parquet").to_table()


def _hidden(root: Path, suffix: str) -> list[Path]:
    return sorted(p for p in root.rglob(f".*{suffix}"))


def test_in_progress_and_pending_files_stay_hidden_until_commit(tmp_path: Path) -> None:
    data = make_table(1000)
    sink = FileSink(str(tmp_path), rolling=RollingPolicy(max_rows=400))
    sink.write_table(data.slice(0, 600))
    # One file rolled (pending), one still being written (in-progress); neither is visible.
    assert len(_hidden(tmp_path, ".pending")) == 1 and len(_hidden(tmp_path, ".inprogress")) == 1
    assert _read(tmp_path).num_rows == 0

    committables = sink.prepare_commit()
    assert json.loads(json.dumps(committables)) == committables
    assert [c["rows"] for c in committables] == [400, 200]
    assert not _hidden(tmp_path, ".inprogress") and len(_hidden(tmp_path, ".pending")) == 2
    assert _read(tmp_path).num_rows == 0

    sink.write_table(data.slice(600))  # the next epoch, written while the checkpoint is stored
    sink.commit(committables)
    assert_same_rows(_read(tmp_path), data.slice(0, 600))
    sink.commit(committables)  # idempotent: already final
    assert_same_rows(_read(tmp_path), data.slice(0, 600))

    sink.close()
    assert_same_rows(_read(tmp_path), data)
    assert not list(tmp_path.rglob(".*"))
    assert sink.metrics()["files_committed"] == 3


def test_recover_commits_the_checkpoint_and_removes_strays(tmp_path: Path) -> None:
    data = make_table(900)
    crashed = FileSink(str(tmp_path), partition_by="flag")
    crashed.write_table(data.slice(0, 300))
    checkpointed = crashed.prepare_commit()  # stored in a checkpoint; the process died before commit
    crashed.write_table(data.slice(300, 300))
    uncovered = crashed.prepare_commit()  # prepared, but no checkpoint holds it
    crashed.write_table(data.slice(600))  # still in progress at the crash
    assert uncovered and len(_hidden(tmp_path, ".inprogress")) == 2
    other = tmp_path / ".other-file.inprogress"  # not this sink's prefix: left alone
    other.write_text("x")

    restarted = FileSink(str(tmp_path), partition_by="flag")
    restarted.recover(checkpointed)
    assert_same_rows(
        _read(tmp_path).select(data.schema.names[:3]), data.slice(0, 300).select(data.schema.names[:3])
    )
    assert _hidden(tmp_path, ".inprogress") == [other]
    assert not _hidden(tmp_path, ".pending")
    assert other.exists()
    # Recovering again (a second crash before any new checkpoint) changes nothing.
    FileSink(str(tmp_path), partition_by="flag").recover(checkpointed)
    assert _read(tmp_path).num_rows == 300
    # Part names never collide across restarts.
    assert crashed.run_id != restarted.run_id


def test_commit_fails_loudly_when_data_is_gone(tmp_path: Path) -> None:
    sink = FileSink(str(tmp_path))
    sink.write_table(make_table(10))
    committables = sink.prepare_commit()
    (tmp_path / committables[0]["pending"]).unlink()
    with pytest.raises(ConnectorError):
        sink.commit(committables)


def test_abort_discards_the_epoch(tmp_path: Path) -> None:
    data = make_table(500)
    sink = FileSink(str(tmp_path), rolling=RollingPolicy(max_rows=100))
    sink.write_table(data.slice(0, 200))
    sink.flush()  # without a pipeline, flush publishes
    sink.write_table(data.slice(200))
    sink.abort()
    assert not list(tmp_path.rglob(".*"))
    sink.close()
    assert_same_rows(_read(tmp_path), data.slice(0, 200))

    with pytest.raises(ValueError), FileSink(str(tmp_path / "ctx")) as failing:
        failing.write_table(data)
        raise ValueError("boom")
    assert _read(tmp_path / "ctx").num_rows == 0 and not list((tmp_path / "ctx").rglob(".*"))
    with pytest.raises(ArrowflowError):
        failing.write_table(data)


def test_schema_change_starts_a_new_file(tmp_path: Path) -> None:
    sink = FileSink(str(tmp_path), format="arrow")
    sink.write(pa.record_batch({"a": [1, 2]}))
    sink.write(pa.record_batch({"a": ["x"]}))
    committables = sink.prepare_commit()
    sink.commit(committables)
    assert [c["rows"] for c in committables] == [2, 1]
