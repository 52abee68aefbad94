"""benchmarks/peers against the real broker, PostgreSQL and OpenSearch node: the harness runs end to end
in its smallest mode for arrowflow and the plain client loop (the plain loop's venv is created under
.peers/ on the first run), every output is verified, and the report has its fields; and each output
check rejects an output that lost, doubled or changed a row. Nothing here is timed or compared by
speed. Workload (4) needs the real OpenSearch 2.x node of tests/services/opensearch.sh (osmem, the
stand-in it replaced, fails those two tests)."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer
from opensearchpy import OpenSearch

from benchmarks.peers import verify
from benchmarks.peers.harness import (
    Config,
    broker_pid,
    create_index,
    create_topic,
    delete_index,
    delete_topic,
    drop_pg_table,
    opensearch_node,
    opensearch_pid,
    reset_pg_table,
    run_benchmark,
)
from benchmarks.peers.jobs._vector import SCHEMA, gen_batch
from benchmarks.peers.report import SUMMARY_FIELDS, format_table, write_json, write_png
from benchmarks.peers.systems import select_systems

pytestmark = pytest.mark.timeout(1800)


def _run_smallest(tmp_path: Path, bootstrap: str, systems: list[str], **options: Any) -> dict[str, Any]:
    """The harness in its smallest mode: one round, 2 partitions, 1 s checkpoints, quiet."""
    cfg = Config(
        partitions=2,
        rounds=1,
        systems=tuple(select_systems(systems)),
        checkpoint_interval=1.0,
        timeout=600.0,
        work_dir=str(tmp_path / "work"),
        bootstrap=bootstrap,
        quick=True,
        **options,
    )
    return run_benchmark(cfg, log=lambda msg: None)


def test_harness_runs_arrowflow_at_p1_and_p2_and_the_plain_loop(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    systems = ["arrowflow", "arrowflow-eos", "arrowflow-p2", "arrowflow-p2-eos", "plain"]
    report = _run_smallest(tmp_path, kafka_bootstrap, systems, messages=3000, pg_dsn=postgres_dsn)
    runs = report["runs"]
    assert len(runs) == 3 * len(systems)  # every system on every workload, one round
    failed = [(r["system"], r["workload"], r["error"]) for r in runs if not r["ok"]]
    assert not failed
    summary = report["summary"]
    assert {(r["workload"], r["system"]) for r in summary} == {
        (w, s) for w in ("parquet", "postgres", "produce") for s in systems
    }
    for row in summary:
        assert row["status"] == "ok" and row["verified_runs"] == 1
        for name in SUMMARY_FIELDS:
            assert name in row
        assert row["seconds"] > 0 and row["messages_per_second"] > 0
        assert row["cpu_seconds"] >= 0 and row["process_cpu_seconds"] > 0
        assert row["peak_rss_mb"] > 10
        if broker_pid() is not None:
            assert row["broker_cpu_seconds"] is not None and row["broker_cpu_seconds"] >= 0
        if row["workload"] == "postgres" and report["environment"]["postgres_pid_found"]:
            assert row["db_cpu_seconds"] is not None
        if row["system"] == "arrowflow":
            assert row["arrowflow_speedup"] == pytest.approx(1.0)
    table = format_table(report)
    assert "(1) Kafka JSON -> filter" in table and "plain (at-least-once, p1)" in table
    assert "(4) Kafka -> OpenSearch: not run" in table  # says why workload 4 did not run
    write_json(report, tmp_path / "r.json")
    write_png(report, tmp_path / "r.png")
    assert json.loads((tmp_path / "r.json").read_text())["config"]["messages"] == 3000
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _expected(n: int) -> pa.Table:
    return pa.Table.from_batches([gen_batch(np.arange(n, dtype=np.int64))], schema=SCHEMA)


def test_parquet_check_rejects_a_lost_a_doubled_and_a_changed_row(tmp_path: Path) -> None:
    expected = _expected(500)
    good = tmp_path / "good"
    good.mkdir()
    pq.write_table(expected.slice(0, 200), good / "a.parquet")
    pq.write_table(expected.slice(200), good / "b.parquet")
    (good / ".c.parquet.inprogress").write_bytes(b"not read: hidden in-progress file")
    assert verify.verify_parquet(good, expected) is None

    lost = tmp_path / "lost"
    shutil.copytree(good, lost)
    pq.write_table(expected.slice(200, 299), lost / "b.parquet")
    assert "499 rows, expected 500" in (verify.verify_parquet(lost, expected) or "")

    doubled = tmp_path / "doubled"
    shutil.copytree(good, doubled)
    pq.write_table(expected.slice(0, 1), doubled / "c.parquet")
    assert "1 duplicate ids" in (verify.verify_parquet(doubled, expected) or "")

    changed = tmp_path / "changed"
    shutil.copytree(good, changed)
    price = expected.column("price").to_numpy().copy()
    price[321] += 0.01
    pq.write_table(expected.set_column(1, "price", pa.array(price)).slice(200), changed / "b.parquet")
    problem = verify.verify_parquet(changed, expected) or ""
    assert "column 'price' differs in 1 rows" in problem and "id 321" in problem


def test_postgres_check_reads_the_table_back(postgres_dsn: str) -> None:
    name = f"peers_test_{uuid.uuid4().hex[:8]}"
    expected = _expected(300)
    reset_pg_table(postgres_dsn, name)
    try:
        with pg.connect(postgres_dsn) as conn, conn.cursor() as cur:
            cur.adbc_ingest(name, expected, mode="append")
            conn.commit()
        assert verify.verify_postgres(postgres_dsn, name, expected) is None
        with pg.connect(postgres_dsn) as conn, conn.cursor() as cur:
            cur.execute(f"UPDATE {name} SET code = 'X' WHERE id = 7")
            conn.commit()
        assert "column 'code' differs in 1 rows; first at id 7" in (
            verify.verify_postgres(postgres_dsn, name, expected) or ""
        )
        with pg.connect(postgres_dsn) as conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM {name} WHERE id = 8")
            conn.commit()
        assert "299 rows, expected 300" in (verify.verify_postgres(postgres_dsn, name, expected) or "")
    finally:
        drop_pg_table(postgres_dsn, name)


def test_topic_check_counts_every_message(kafka_bootstrap: str) -> None:
    import orjson

    topic = f"peers-test-{uuid.uuid4().hex[:8]}"
    expected = _expected(400)
    create_topic(kafka_bootstrap, topic, 2)
    try:
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "log_level": 3})
        rows = expected.to_pylist()
        for row in rows:
            producer.produce(topic, orjson.dumps(row))
        assert producer.flush(60) == 0
        assert verify.verify_topic(kafka_bootstrap, topic, 2, expected) is None
        producer.produce(topic, orjson.dumps(rows[5]))  # a duplicate, as a replay would leave
        assert producer.flush(60) == 0
        assert "401 rows, expected 400 (1 duplicate ids)" in (
            verify.verify_topic(kafka_bootstrap, topic, 2, expected) or ""
        )
    finally:
        delete_topic(kafka_bootstrap, topic)


def _opensearch_url(service: Callable[[str], tuple[str, int]]) -> str:
    host, port = service("opensearch")
    url = f"http://{host}:{port}"
    assert opensearch_node(url) is not None, (
        f"{url} is not a real OpenSearch 2.x node (osmem does not count): workload (4) is measured "
        "against the node tests/services/opensearch.sh starts"
    )
    return url


def test_harness_runs_workload_4_against_opensearch(
    kafka_bootstrap: str, service: Callable[[str], tuple[str, int]], tmp_path: Path
) -> None:
    url = _opensearch_url(service)
    report = _run_smallest(
        tmp_path,
        kafka_bootstrap,
        ["arrowflow", "plain"],
        messages=2000,
        workloads=("opensearch",),
        search_url=url,
    )
    assert [(r["system"], r["ok"], r["error"]) for r in report["runs"]] == [
        ("arrowflow", True, None),
        ("plain", True, None),
    ]
    assert report["environment"]["opensearch"].startswith("OpenSearch 2.")
    if opensearch_pid() is not None:  # the node's CPU over each run is measured (it indexed 2000 docs)
        assert all(r["db_cpu_seconds"] > 0 for r in report["summary"])
    assert "opensearch" not in report["skipped_workloads"]


def test_index_check_reads_every_document(service: Callable[[str], tuple[str, int]]) -> None:
    from opensearchpy import helpers

    url = _opensearch_url(service)
    index = f"peers-test-{uuid.uuid4().hex[:8]}"
    expected = _expected(300)
    rows = expected.to_pylist()
    for r in rows:
        r["ts"] = r["ts"].isoformat()
    create_index(url, index)
    client = OpenSearch(url)
    try:
        helpers.bulk(client, ({"_index": index, "_id": r["id"], "_source": r} for r in rows))
        assert verify.verify_index(url, index, expected) is None
        client.index(index=index, id=9, body={**rows[9], "score": 2.0})
        assert "column 'score' differs in 1 rows; first at id 9" in (
            verify.verify_index(url, index, expected) or ""
        )
        client.delete(index=index, id=9)
        assert "299 rows, expected 300" in (verify.verify_index(url, index, expected) or "")
        client.index(index=index, id=12345, body=rows[9])  # a document under another _id
        assert "holds id 9" in (verify.verify_index(url, index, expected) or "")
    finally:
        delete_index(url, index)
