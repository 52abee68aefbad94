"""FileSink -> FileSource round trips on the local file system: formats, partitions, buckets, rolling,
resuming mid-file, monitoring a directory, projections and filters."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from arrowflow import ConfigurationError, Split
from arrowflow.connectors.filesystem import FileSink, FileSource, RollingPolicy
from arrowflow.testing import assert_same_rows, make_table

FORMATS = ["parquet", "arrow", "csv", "ndjson"]


def _visible_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
    )


def _source_schema(fmt: str, data: pa.Table) -> pa.Schema | None:
    return data.schema if fmt in ("csv", "ndjson") else None


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_per_format(tmp_path: Path, fmt: str) -> None:
    data = make_table(3000)
    with FileSink(str(tmp_path), format=fmt) as sink:
        for batch in data.to_batches(max_chunksize=700):
            sink.write(batch)
    files = _visible_files(tmp_path)
    assert len(files) == 1 and files[0].suffix == {"arrow": ".arrow"}.get(fmt, f".{fmt}")
    back = FileSource(str(tmp_path), format=fmt, schema=_source_schema(fmt, data)).read_all(max_rows=512)
    assert_same_rows(back, data, ordered=True)


def test_round_trip_text_and_compressed_csv(tmp_path: Path) -> None:
    lines = pa.table({"line": ["first", "", "ünïcödé", "tab\there", "last"] * 100})
    with FileSink(str(tmp_path / "txt"), format="text", compression="gzip") as sink:
        sink.write_table(lines)
    (only,) = _visible_files(tmp_path / "txt")
    assert only.name.endswith(".txt.gz")
    assert FileSource(str(tmp_path / "txt"), format="text").read_all().equals(lines)

    data = make_table(500)
    with FileSink(str(tmp_path / "csv"), format="csv", compression="zstd") as sink:
        sink.write_table(data)
    assert _visible_files(tmp_path / "csv")[0].name.endswith(".csv.zst")
    back = FileSource(str(tmp_path / "csv"), format="csv", schema=data.schema).read_all()
    assert_same_rows(back, data, ordered=True)


def test_hive_partitions_round_trip(tmp_path: Path) -> None:
    n = 2000
    data = (
        make_table(n)
        .append_column(
            "region", pa.array(np.array(["eu", "us/west", "a=b", "x%y"], dtype=object)[np.arange(n) % 4])
        )
        .append_column(
            "year", pa.array((np.arange(n) % 3 + 2020).astype(np.int64), mask=np.arange(n) % 7 == 0)
        )
    )
    with FileSink(str(tmp_path), partition_by=["region", "year"]) as sink:
        for batch in data.to_batches(max_chunksize=333):
            sink.write(batch)
    dirs = {p.parent.relative_to(tmp_path).as_posix() for p in _visible_files(tmp_path)}
    assert "region=eu/year=2020" in dirs
    assert "region=us%2Fwest/year=__HIVE_DEFAULT_PARTITION__" in dirs
    assert "region=a%3Db/year=2021" in dirs
    assert len(dirs) == 4 * 4
    for f in _visible_files(tmp_path):  # partition columns are not stored in the files
        assert pq.read_schema(f).names == make_table(1).schema.names

    typed = FileSource(str(tmp_path), partitioning=pa.schema([("year", pa.int64())])).read_all()
    assert typed.schema.field("year").type == pa.int64()
    assert typed.schema.field("region").type == pa.string()
    assert_same_rows(typed, data)

    # pyarrow.dataset reads the same directories back.
    other = ds.dataset(
        str(tmp_path),
        partitioning=ds.partitioning(
            pa.schema([("region", pa.string()), ("year", pa.int64())]), flavor="hive"
        ),
    ).to_table()
    assert_same_rows(other, data)


def test_time_buckets_from_a_column(tmp_path: Path) -> None:
    data = make_table(1500)
    with FileSink(str(tmp_path), bucket="%Y-%m-%d--%H", bucket_column="ts") as sink:
        sink.write_table(data)
    files = _visible_files(tmp_path)
    assert len(files) > 10
    for f in files:
        rows = pq.read_table(f)
        hours = set(pc.strftime(rows.column("ts"), format="%Y-%m-%d--%H").to_pylist())
        assert hours == {f.parent.name}
    assert_same_rows(FileSource(str(tmp_path)).read_all(), data)


def test_null_bucket_and_dictionary_partition_stay_visible(tmp_path: Path) -> None:
    batch = pa.record_batch(
        {
            "k": pa.array(["a", "b", None, "a"]).dictionary_encode(),
            "v": [1, 2, 3, 4],
            "t": pa.array([0, None, 10**12 * 3600, 5], pa.timestamp("us")),
        }
    )
    with FileSink(str(tmp_path), partition_by="k", bucket="%Y", bucket_column="t") as sink:
        sink.write(batch)
    dirs = {p.parent.relative_to(tmp_path).as_posix() for p in _visible_files(tmp_path)}
    assert dirs == {"1970/k=a", "null/k=b", "2084/k=__HIVE_DEFAULT_PARTITION__"}
    back = FileSource(str(tmp_path)).read_all()
    assert sorted(back.column("v").to_pylist()) == [1, 2, 3, 4]
    assert sorted(zip(back.column("v").to_pylist(), back.column("k").to_pylist(), strict=True)) == [
        (1, "a"),
        (2, "b"),
        (3, None),
        (4, "a"),
    ]


def test_processing_time_bucket(tmp_path: Path) -> None:
    before = time.strftime("%Y", time.gmtime())
    with FileSink(str(tmp_path), bucket="%Y") as sink:
        sink.write_table(make_table(10))
    (only,) = _visible_files(tmp_path)
    assert only.parent.name in {before, time.strftime("%Y", time.gmtime())}


def test_rolling_by_rows_and_bytes(tmp_path: Path) -> None:
    data = make_table(1000)
    with FileSink(str(tmp_path / "rows"), rolling=RollingPolicy(max_rows=300)) as sink:
        for batch in data.to_batches(max_chunksize=128):
            sink.write(batch)
    counts = [pq.read_metadata(f).num_rows for f in _visible_files(tmp_path / "rows")]
    assert counts == [300, 300, 300, 100]

    with FileSink(str(tmp_path / "bytes"), format="arrow", rolling=RollingPolicy(max_bytes=8000)) as sink:
        for batch in data.to_batches(max_chunksize=50):
            sink.write(batch)
    files = _visible_files(tmp_path / "bytes")
    assert len(files) > 3
    # Each file is closed at the first write that crossed the limit, so every file but the last is at
    # least max_bytes and none is more than one 50-row batch beyond it.
    sizes = [f.stat().st_size for f in files]
    assert all(s >= 8000 for s in sizes[:-1])
    assert all(s < 8000 + data.slice(0, 50).nbytes + 4096 for s in sizes)
    assert_same_rows(FileSource(str(tmp_path / "bytes"), format="arrow").read_all(), data)


def test_rolling_by_inactivity_and_age(tmp_path: Path) -> None:
    data = make_table(200).append_column("k", pa.array(["a"] * 100 + ["b"] * 100))
    sink = FileSink(str(tmp_path), partition_by="k", rolling=RollingPolicy(inactivity_s=0.05))
    sink.write(data.slice(0, 100).to_batches()[0])
    assert sink.metrics()["files_open"] == 1
    time.sleep(0.1)
    sink.write(data.slice(100).to_batches()[0])  # "a" has been idle: rolled to pending
    assert sink.metrics()["files_open"] == 1
    assert any(p.name.endswith(".pending") for p in (tmp_path / "k=a").iterdir())
    sink.close()
    assert len(_visible_files(tmp_path)) == 2

    aged = FileSink(str(tmp_path / "age"), rolling=RollingPolicy(max_age_s=0.05))
    aged.write(data.slice(0, 10).to_batches()[0])
    time.sleep(0.1)
    aged.write(data.slice(10, 10).to_batches()[0])  # the first file is too old: closed after this write
    aged.close()
    assert [pq.read_metadata(f).num_rows for f in _visible_files(tmp_path / "age")] == [20]


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_mid_file_at_any_position(tmp_path: Path, fmt: str) -> None:
    data = make_table(2500)
    with FileSink(
        str(tmp_path), format=fmt, writer_options={"row_group_size": 300} if fmt == "parquet" else {}
    ) as s:
        for batch in data.to_batches(max_chunksize=300):
            s.write(batch)
    source = FileSource(
        str(tmp_path), format=fmt, schema=_source_schema(fmt, data), split_row_groups=False, batch_size=256
    )
    (split,) = source.plan()
    for pos in (0, 1, 299, 300, 301, 1234, 2499, 2500):
        reader = source.open(Split.from_json(json.loads(split.dumps())), pos)
        assert reader.snapshot() == pos
        batches = []
        while not reader.finished:
            b = reader.read_batch(97, 0.1)
            if b is not None:
                batches.append(b)
        reader.close()
        rest = pa.Table.from_batches(batches, schema=batches[0].schema) if batches else None
        if pos == 2500:
            assert rest is None
            continue
        assert rest is not None
        assert rest.column("id").to_pylist() == list(range(pos, 2500)), f"position {pos}"
        assert reader.snapshot() == 2500


def test_parquet_row_group_splits_and_resume(tmp_path: Path) -> None:
    data = make_table(1000)
    pq.write_table(data, tmp_path / "x.parquet", row_group_size=250)
    source = FileSource(str(tmp_path))
    splits = source.plan()
    assert [s.split_id for s in splits] == [f"x.parquet#{i}" for i in range(4)]
    reader = source.open(splits[2], 100)
    b = reader.read_batch(1000, 0.1)
    assert b is not None and b.column("id").to_pylist() == list(range(600, 750))
    assert reader.finished and reader.snapshot() == 250


def test_monitoring_picks_up_new_files(tmp_path: Path) -> None:
    data = make_table(900)
    with FileSink(str(tmp_path)) as sink:
        sink.write_table(data.slice(0, 300))
    source = FileSource(str(tmp_path), monitor_interval=0.05)
    assert not source.bounded and source.discovery_interval == 0.05
    known = source.plan()
    assert len(known) == 1 and source.discover(known) == []
    got: list[int] = []
    deadline = time.monotonic() + 60
    writes = 0
    for batch in source.batches(max_rows=128, timeout=0.1, idle_timeout=60):
        got += batch.column("id").to_pylist()
        if len(got) == 300 * (writes + 1) and writes < 2:
            writes += 1
            with FileSink(str(tmp_path)) as sink:
                sink.write_table(data.slice(300 * writes, 300))
        if len(got) >= 900:
            break
        assert time.monotonic() < deadline, "new files were not picked up"
    assert sorted(got) == list(range(900))
    # The seen set is the split list: known files are never offered again.
    assert source.discover(source.plan()) == []
    assert len(source.discover(known)) == 2


def test_projection_filter_glob_and_filesystems(tmp_path: Path) -> None:
    data = make_table(1000)
    with FileSink(str(tmp_path / "d"), partition_by="flag") as sink:
        sink.write_table(data)
    (tmp_path / "d" / "notes.txt").write_text("not parquet")
    src = FileSource(
        str(tmp_path / "d"),
        glob="*.parquet",
        columns=["id", "flag"],
        filter=pc.field("id") < 100,
        partitioning=pa.schema([("flag", pa.bool_())]),
    )
    table = src.read_all()
    assert table.schema.names == ["id", "flag"]
    assert_same_rows(table, data.filter(pc.field("id") < 100).select(["id", "flag"]))

    # Explicit pyarrow file systems and file:// URIs.
    sub = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    with FileSink("out", filesystem=sub, format="arrow") as sink:
        sink.write_table(data)
    assert len(_visible_files(tmp_path / "out")) == 1
    back = FileSource("out", filesystem=sub, format="arrow").read_all()
    assert_same_rows(back, data, ordered=True)
    uri = FileSource(f"file://{tmp_path}/out", format="arrow").read_all()
    assert_same_rows(uri, data, ordered=True)


def test_single_file_path_and_errors(tmp_path: Path) -> None:
    data = make_table(50)
    pq.write_table(data, tmp_path / "one.parquet")
    assert_same_rows(FileSource(str(tmp_path / "one.parquet")).read_all(), data, ordered=True)
    with pytest.raises(ConfigurationError):
        FileSource(str(tmp_path / "missing")).plan()
    with pytest.raises(ConfigurationError) as info:
        FileSource(str(tmp_path), format="xlsx")
    assert info.value.option == "format"
    with pytest.raises(ConfigurationError) as info:
        FileSink(str(tmp_path), prefix="_hidden")
    assert info.value.option == "prefix"
    with pytest.raises(ConfigurationError) as info:
        FileSink(str(tmp_path), bucket_column="ts")
    assert info.value.option == "bucket_column"
    with pytest.raises(ConfigurationError) as info:
        FileSink(str(tmp_path), rolling=RollingPolicy(max_rows=0))
    assert info.value.option == "rolling.max_rows"
    with pytest.raises(ConfigurationError):
        FileSink(str(tmp_path), format="csv", compression="snappy-ish")
    assert os.path.isdir(tmp_path)
