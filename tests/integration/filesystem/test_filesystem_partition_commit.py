"""FileSink partition commit on watermark: _SUCCESS and callbacks only for complete event-time buckets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from arrowflow import ConfigurationError, Pipeline, WatermarkStrategy
from arrowflow.connectors.collection import CollectionSource
from arrowflow.connectors.filesystem import CommittedPartition, FileSink, PartitionCommit
from arrowflow.time import MAX_WATERMARK

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
H = 3_600_000_000
T0_US = int(T0.timestamp() * 1e6)


def hours_table(hours: int, per_hour: int) -> pa.Table:
    ts = (
        T0_US
        + np.repeat(np.arange(hours, dtype=np.int64) * H, per_hour)
        + np.tile(np.linspace(0, H - 1, per_hour).astype(np.int64), hours)
    )
    return pa.table({"ts": pa.array(ts, pa.timestamp("us")), "id": np.arange(len(ts))})


def bucket(h: int) -> str:
    return (T0 + timedelta(hours=h)).strftime("%Y-%m-%d--%H")


def rows_in(directory: Path) -> int:
    return ds.dataset(str(directory), format="parquet").count_rows() if directory.exists() else 0


def success_dirs(root: Path) -> set[str]:
    return {p.parent.name for p in root.rglob("_SUCCESS")}


def test_a_bucket_is_committed_once_the_watermark_passes_its_end(tmp_path: Path) -> None:
    calls: list[CommittedPartition] = []
    seen_rows: list[int] = []

    def register(p: CommittedPartition) -> None:
        calls.append(p)
        seen_rows.append(rows_in(Path(p.path)))  # the partition's files are visible when it is committed

    sink = FileSink(
        tmp_path,
        bucket="%Y-%m-%d--%H",
        bucket_column="ts",
        partition_commit=PartitionCommit(callback=register),
    )
    sink.write_table(hours_table(3, 100))
    sink.on_watermark(T0_US + H - 1)  # hour 0 not over yet
    sink.commit(sink.prepare_commit())
    assert success_dirs(tmp_path) == set() and calls == []
    assert rows_in(tmp_path / bucket(0)) == 100  # the files themselves are committed
    sink.on_watermark(T0_US + H)
    sink.commit(sink.prepare_commit())
    assert success_dirs(tmp_path) == {bucket(0)}
    assert [c.directory for c in calls] == [bucket(0)] and seen_rows == [100]
    assert calls[0].end == T0 + timedelta(hours=1) and calls[0].path == str(tmp_path / bucket(0))
    sink.on_watermark(T0_US + 3 * H)
    committables = sink.prepare_commit()
    assert [c.get("partition") for c in committables if "partition" in c] == [bucket(1), bucket(2)]
    sink.commit(committables)
    assert success_dirs(tmp_path) == {bucket(h) for h in range(3)}
    assert sink.metrics()["partitions_committed"] == 3 and sink.metrics()["partitions_open"] == 0


def test_delay_and_partition_by_with_a_time_column(tmp_path: Path) -> None:
    calls: list[CommittedPartition] = []
    table = hours_table(2, 10)
    day = pa.array(["d1"] * 10 + ["d2"] * 10)
    sink = FileSink(
        tmp_path,
        partition_by=["day"],
        partition_commit=PartitionCommit(time_column="ts", every="1h", delay="30m", callback=calls.append),
    )
    sink.write_table(table.append_column("day", day))
    sink.on_watermark(T0_US + H + 29 * 60_000_000)
    sink.commit(sink.prepare_commit())
    assert calls == []
    sink.on_watermark(T0_US + H + 30 * 60_000_000)
    sink.commit(sink.prepare_commit())
    assert [(c.directory, dict(c.values)) for c in calls] == [("day=d1", {"day": "d1"})]
    assert success_dirs(tmp_path) == {"day=d1"}


def test_open_partitions_survive_a_restart_in_the_committables(tmp_path: Path) -> None:
    def make(calls: list[Any]) -> FileSink:
        return FileSink(
            tmp_path,
            bucket="%Y-%m-%d--%H",
            bucket_column="ts",
            partition_commit=PartitionCommit(callback=calls.append),
        )

    first: list[Any] = []
    a = make(first)
    a.write_table(hours_table(2, 50))
    a.on_watermark(T0_US + H)
    checkpoint = a.prepare_commit()  # stored by the pipeline; the process dies before commit()
    assert [c for c in checkpoint if "open_partition" in c] == [
        {"open_partition": bucket(1), "end": T0_US + 2 * H}
    ]
    second: list[Any] = []
    b = make(second)  # the restarted process
    b.recover(checkpoint)
    assert [c.directory for c in second] == [bucket(0)]  # finished from the checkpoint
    assert rows_in(tmp_path / bucket(0)) == 50 and rows_in(tmp_path / bucket(1)) == 50
    b.on_watermark(T0_US + 2 * H)
    b.commit(b.prepare_commit())
    assert [c.directory for c in second] == [bucket(0), bucket(1)]  # never written by b, still committed
    assert success_dirs(tmp_path) == {bucket(0), bucket(1)}


@pytest.mark.parametrize(
    ("template", "period"),
    [
        ("%Y-%m-%d--%H", H),
        ("%Y/%m/%d", 24 * H),
        ("dt=%Y%m%d/m=%H%M", 60_000_000),
        ("%Y%m%d%H%M%S", 1_000_000),
    ],
)
def test_the_period_is_read_from_the_bucket_template(tmp_path: Path, template: str, period: int) -> None:
    sink = FileSink(tmp_path, bucket=template, bucket_column="ts", partition_commit=PartitionCommit())
    assert sink.config.commit_period == ("ts", period, 0)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"partition_commit": PartitionCommit()}, "partition_commit"),
        (
            {"bucket": "%Y-%m", "bucket_column": "ts", "partition_commit": PartitionCommit()},
            "partition_commit.every",
        ),
        (
            {"partition_by": "d", "partition_commit": PartitionCommit(time_column="ts")},
            "partition_commit.every",
        ),
        ({"partition_commit": "yes"}, "partition_commit"),
    ],
)
def test_bad_partition_commit_names_the_option(tmp_path: Path, kwargs: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        FileSink(tmp_path, **kwargs)
    assert info.value.option == option


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"success_file": "SUCCESS"}, "partition_commit.success_file"),
        ({"success_file": None}, "partition_commit"),
        ({"delay": "-1s"}, "partition_commit.delay"),
        ({"every": "1mo"}, "partition_commit.every"),
        ({"callback": 3}, "partition_commit.callback"),
    ],
)
def test_bad_partition_commit_options(kwargs: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PartitionCommit(**kwargs)
    assert info.value.option == option


def test_in_a_pipeline_only_complete_buckets_get_success_files(tmp_path: Path) -> None:
    table = hours_table(6, 500)
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"

    def run(**kwargs: Any) -> Any:
        sink = FileSink(out, bucket="%Y-%m-%d--%H", bucket_column="ts", partition_commit=PartitionCommit())
        return (
            Pipeline(CollectionSource(table, batch_size=100), watermarks=WatermarkStrategy.monotonous("ts"))
            .to(sink)
            .run(progress=False, checkpoint_dir=ckpt, guarantee="exactly-once", max_batch_rows=100, **kwargs)
        )

    first = run(max_rows=1750)  # stops in hour 3: hours 0-2 are complete, hour 3 is not
    assert first.watermark is not None and first.watermark < T0_US + 4 * H
    assert success_dirs(out) == {bucket(0), bucket(1), bucket(2)}
    for h in range(3):
        assert rows_in(out / bucket(h)) == 500  # a _SUCCESS directory holds the whole hour
    assert rows_in(out / bucket(3)) == 250
    second = run()
    assert second.watermark == MAX_WATERMARK
    assert success_dirs(out) == {bucket(h) for h in range(6)}
    assert [rows_in(out / bucket(h)) for h in range(6)] == [500] * 6


def test_the_marker_comes_after_the_files_of_the_same_checkpoint(tmp_path: Path) -> None:
    seen: list[tuple[int, bool]] = []

    def check(p: CommittedPartition) -> None:
        seen.append((rows_in(Path(p.path)), (Path(p.path) / "_SUCCESS").exists()))

    sink = FileSink(
        tmp_path, bucket="%Y-%m-%d--%H", bucket_column="ts", partition_commit=PartitionCommit(callback=check)
    )
    sink.write_table(hours_table(1, 70))
    sink.on_watermark(T0_US + H)  # complete before its files were ever committed
    committables = sink.prepare_commit()
    assert [sorted(c) for c in committables] == [["final", "pending", "rows"], ["end", "partition"]]
    sink.commit(committables)
    assert seen == [(70, True)]  # the files were visible before the marker and the callback
    sink.commit(committables)  # idempotent (a recover after a crash): the marker is rewritten
    assert success_dirs(tmp_path) == {bucket(0)} and len(seen) == 2
