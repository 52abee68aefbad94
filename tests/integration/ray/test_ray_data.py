"""arrowflow sources and sinks on Ray Data, on one local Ray instance (``ray_session``).

The file job FileSource -> Ray Dataset -> map_batches -> FileSink must produce exactly the rows of the
same job run by the single-process pipeline; PostgreSQL (SqlSink) and Kafka (KafkaSink) as sinks
receive every row once.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from ray_helpers import enrich, fail_on_id, sorted_by_id, write_files

import arrowflow.ray as afr
from arrowflow import ConfigurationError, Pipeline
from arrowflow.connectors.filesystem import FileSink, FileSource
from arrowflow.integrations.ray import SourceDatasource

SIZES = [3000, 1000, 2500, 500, 2000, 1000]


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    d = tmp_path_factory.mktemp("ray-in")
    return d, write_files(d, SIZES)


def _visible(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_read_tasks_group_splits_with_estimates(input_dir: tuple[Path, pa.Table]) -> None:
    d, expected = input_dir
    source = FileSource(d)
    datasource = SourceDatasource(source)
    tasks = datasource.get_read_tasks(2)
    assert len(tasks) == 2
    # Balanced by file size (greedy, heaviest first): the groups differ by less than the largest file.
    rows = sorted(t.metadata.num_rows for t in tasks)
    assert rows[1] - rows[0] <= max(SIZES)
    assert sum(t.metadata.num_rows for t in tasks) == expected.num_rows
    assert sum(t.metadata.size_bytes for t in tasks) == datasource.estimate_inmemory_data_size()
    assert datasource.estimate_inmemory_data_size() == sum(p.stat().st_size for p in d.glob("*.parquet"))
    files = sorted(f for t in tasks for f in t.metadata.input_files)
    assert files == sorted(str(p) for p in d.glob("*.parquet"))
    # More parallelism than splits: one task per split.
    assert len(datasource.get_read_tasks(64)) == len(SIZES)
    # A read task runs anywhere: here, in this process.
    got = pa.concat_tables([b for t in tasks for b in t()])
    assert sorted_by_id(got).equals(sorted_by_id(expected))


def test_read_equals_source_read_all(ray_session: Any, input_dir: tuple[Path, pa.Table]) -> None:
    d, expected = input_dir
    ds = afr.read(FileSource(d), parallelism=3)
    assert ds.schema().names == ["id", "x", "name"]
    got = pa.concat_tables(ray_session.get(ds.to_arrow_refs()))
    assert got.num_rows == expected.num_rows
    assert sorted_by_id(got).equals(sorted_by_id(expected))


def test_file_to_file_equals_single_process_pipeline(
    ray_session: Any, input_dir: tuple[Path, pa.Table], tmp_path: Path
) -> None:
    d, _ = input_dir
    single = tmp_path / "single"
    Pipeline(FileSource(d)).map_batches(enrich).to(FileSink(single)).run(progress=False)

    on_ray = tmp_path / "ray"
    datasink = afr.Datasink(functools.partial(FileSink, str(on_ray)))
    afr.read(FileSource(d), parallelism=2).map_batches(enrich, batch_format="pyarrow").write_datasink(
        datasink
    )

    expected = sorted_by_id(FileSource(single).read_all())
    got = sorted_by_id(FileSource(on_ray).read_all())
    assert expected.num_rows == sum(SIZES) - sum(1 for i in range(sum(SIZES)) if i % 7 == 3)
    assert got.equals(expected)
    assert datasink.summary is not None
    assert datasink.summary.rows == expected.num_rows
    assert datasink.summary.bytes > 0
    # Two-phase: each write task prepared its files, the driver committed all of them.
    assert datasink.summary.committables == len(_visible(on_ray)) >= 1
    assert not [p for p in on_ray.rglob(".*") if p.is_file()]


def test_failed_job_publishes_nothing(
    ray_session: Any, input_dir: tuple[Path, pa.Table], tmp_path: Path
) -> None:
    d, _ = input_dir
    out = tmp_path / "out"
    datasink = afr.Datasink(functools.partial(FileSink, str(out)))
    ds = afr.read(FileSource(d), parallelism=2).map_batches(fail_on_id, batch_format="pyarrow")
    with pytest.raises(Exception, match="boom at id 10"):
        ds.write_datasink(datasink)
    assert datasink.summary is None
    assert _visible(out) == []


def test_unbounded_source_is_refused_with_a_pointer_to_run_partitioned(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="run_partitioned") as info:
        afr.read(FileSource(tmp_path, monitor_interval=1.0))
    assert info.value.option == "source"
    with pytest.raises(ConfigurationError) as info:
        afr.read(FileSource(tmp_path), parallelism=0)
    assert info.value.option == "parallelism"
    with pytest.raises(ConfigurationError) as info:
        afr.Datasink(functools.partial(FileSink, str(tmp_path)), commit="later")
    assert info.value.option == "commit"


def test_empty_source_gives_an_empty_dataset(ray_session: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    ds = afr.read(FileSource(tmp_path / "empty"))
    assert ds.count() == 0


def test_postgres_sql_sink(ray_session: Any, input_dir: tuple[Path, pa.Table], postgres_dsn: str) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    from arrowflow.connectors.sql import SqlSink

    d, _ = input_dir
    table = f"af_ray_{uuid.uuid4().hex[:10]}"
    conn = dbapi.connect(postgres_dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            columns = "id BIGINT PRIMARY KEY, x DOUBLE PRECISION, name TEXT, y DOUBLE PRECISION"
            cur.execute(f'CREATE TABLE "{table}" ({columns})')
        datasink = afr.Datasink(functools.partial(SqlSink, postgres_dsn, table))
        afr.read(FileSource(d), parallelism=2).map_batches(enrich, batch_format="pyarrow").write_datasink(
            datasink
        )
        with conn.cursor() as cur:
            cur.execute(f'SELECT id, x, name, y FROM "{table}" ORDER BY id')
            got = cur.fetch_arrow_table()
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP TABLE IF EXISTS "{table}"')
        conn.close()
    expected = sorted_by_id(pa.concat_tables([enrich(t) for t in [FileSource(d).read_all()]]))
    assert got.num_rows == expected.num_rows
    assert got.column("id").to_pylist() == expected.column("id").to_pylist()
    assert got.column("y").to_pylist() == expected.column("y").to_pylist()
    assert got.column("name").to_pylist() == expected.column("name").to_pylist()
    assert datasink.summary is not None and datasink.summary.rows == expected.num_rows


def test_kafka_sink(ray_session: Any, input_dir: tuple[Path, pa.Table], kafka_bootstrap: str) -> None:
    from confluent_kafka import Consumer

    from arrowflow.connectors.kafka import KafkaSink

    d, _ = input_dir
    src = d.parent / f"kafka-in-{uuid.uuid4().hex[:6]}"
    write_files(src, [300, 300])
    topic = f"af-ray-{uuid.uuid4().hex[:12]}"
    datasink = afr.Datasink(
        functools.partial(
            KafkaSink, kafka_bootstrap, topic=topic, key_columns="id", value_columns=("id", "x", "name")
        )
    )
    afr.read(FileSource(src), parallelism=2).write_datasink(datasink)
    assert datasink.summary is not None and datasink.summary.rows == 600

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
    )
    docs: list[dict[str, Any]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(docs) < 600 and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.5):
                assert m.error() is None, m.error()
                docs.append(json.loads(m.value()))
    finally:
        consumer.close()
    assert len(docs) == 600
    by_id = {doc["id"]: doc for doc in docs}
    want = FileSource(src).read_all()
    assert sorted(by_id) == sorted(want.column("id").to_pylist())
    for row in want.to_pylist():
        assert by_id[row["id"]] == row


def test_transactional_kafka_sink_with_task_commit(
    ray_session: Any, input_dir: tuple[Path, pa.Table], kafka_bootstrap: str
) -> None:
    """A Kafka transaction can only be committed by its producer: ``commit="driver"`` is refused
    before anything is written; ``commit="task"`` (a prefix per task) delivers every row."""
    from confluent_kafka import Consumer

    from arrowflow.connectors.kafka import TransactionalKafkaSink

    d, _ = input_dir
    src = d.parent / f"kafka-eos-in-{uuid.uuid4().hex[:6]}"
    write_files(src, [200, 200])
    topic = f"af-ray-eos-{uuid.uuid4().hex[:12]}"

    def factory() -> TransactionalKafkaSink:
        # One transactional id per task: concurrent producers with one id would fence each other.
        return TransactionalKafkaSink(
            kafka_bootstrap,
            topic=topic,
            transactional_id_prefix=f"{topic}-{uuid.uuid4().hex[:8]}",
            value_columns=("id", "x", "name"),
            client_options={"batch.num.messages": 1},
        )

    with pytest.raises(ConfigurationError, match="commit='task'"):
        afr.read(FileSource(src), parallelism=2).write_datasink(afr.Datasink(factory))
    datasink = afr.Datasink(factory, commit="task")
    afr.read(FileSource(src), parallelism=2).write_datasink(datasink)
    assert datasink.summary is not None and datasink.summary.rows == 400

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "log_level": 3,
        }
    )
    ids: list[int] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(ids) < 400 and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.5):
                assert m.error() is None, m.error()
                ids.append(json.loads(m.value())["id"])
    finally:
        consumer.close()
    # The refused run wrote nothing (it failed before its first write), so every id exactly once.
    assert sorted(ids) == sorted(FileSource(src).read_all().column("id").to_pylist())
