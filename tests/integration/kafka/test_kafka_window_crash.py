"""Crash-resume of Kafka -> tumbling window -> FileSink (exactly-once), SIGKILLed mid-run.

A topic of ``PARTITIONS`` partitions is pre-filled with JSON rows carrying event times: each partition
advances through the same two minutes of event time, its rows out of order by up to
``MAX_DELAY_S`` (kafka_window_crash_pipeline.py reads it with a bounded-out-of-orderness watermark per
partition). The pipeline runs as its own process and is SIGKILLed after a random number of batches,
until exactly ``KILLS`` kills landed while data was in flight, then runs to the end. The committed
windows must equal the oracle (polars ``group_by_dynamic`` over the rows read back from the topic with
a plain consumer) exactly: no window lost, none twice; after every kill, and all along as a reader
polling the directory sees it, a bucket with ``_SUCCESS`` holds all of its windows (window_checks.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from kafka_helpers import Broker, consume_all, produce

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import CrashReport, crash_mid_stream
from kafka_window_crash_pipeline import MAX_DELAY_S, SCHEMA
from window_checks import WindowOutput, oracle_windows
from window_crash_pipeline import BUCKET, START_US, WINDOW, _mix

from arrowflow.formats import Json

HERE = Path(__file__).resolve().parent
PARTITIONS = 3
PER_PARTITION = 20_000
STEP_US = 6_000  # 2 minutes of event time per partition: three minute buckets
KILLS = 4


def partition_rows(p: int) -> pa.RecordBatch:
    """Partition ``p``'s rows in produce order: row ``j`` has event time ``START + j * STEP - jitter``,
    jitter up to ``MAX_DELAY_S`` (so no row is late for its partition's watermark)."""
    j = np.arange(PER_PARTITION, dtype=np.int64)
    ids = p * PER_PARTITION + j
    h = _mix(ids)
    jitter = (h % np.uint64(int(MAX_DELAY_S * 1e6) + 1)).astype(np.int64)
    return pa.record_batch(
        {
            "id": pa.array(ids, pa.int64()),
            "ts": pa.array(START_US + j * STEP_US - jitter, pa.timestamp("us")),
            "k": pa.array((h >> np.uint64(32)) % np.uint64(5), pa.int64()),
            "v": pa.array(((h >> np.uint64(8)) % np.uint64(1000)).astype(np.int64)),
        },
        schema=SCHEMA,
    )


def topic_rows(broker: Broker, topic: str) -> pl.DataFrame:
    """Every row in ``topic``, read back with a plain consumer (the oracle's input)."""
    values = [m.value() for m in consume_all(broker, topic, PARTITIONS)]
    rows = pl.from_arrow(Json(SCHEMA).decode(pa.array(values, pa.binary())).batch)
    assert isinstance(rows, pl.DataFrame)
    return rows


@pytest.mark.timeout(900)  # many pipeline runs on a loaded machine
def test_kafka_window_to_file_sink_exactly_once_across_sigkills(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic(broker.topic("win"), PARTITIONS)
    for p in range(PARTITIONS):
        payloads = Json().encode(partition_rows(p)).payloads.to_pylist()
        produce(broker, topic, [(None, v) for v in payloads], partition=p)
    rows = topic_rows(broker, topic)
    assert rows.height == PARTITIONS * PER_PARTITION and rows["id"].n_unique() == rows.height
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    output = WindowOutput(out, oracle_windows(rows, WINDOW, BUCKET))
    assert len(output.complete_size) >= 3  # buckets close mid-run, not only at the end

    command = [
        sys.executable,
        str(HERE / "kafka_window_crash_pipeline.py"),
        f"--bootstrap={broker.bootstrap}",
        f"--topic={topic}",
        f"--checkpoint-dir={ckpt}",
        f"--out={out}",
        "--delay=0.05",
        "--interval=0.2",
    ]

    def verify(report: CrashReport) -> None:
        output.verify_final(report)
        assert len(output.final["split_watermarks"]) == PARTITIONS  # a watermark per partition

    with output.watched():
        # 120 batches of 500 rows in all; each run is killed after 3-20 of them (plus up to 50 ms).
        report = crash_mid_stream(
            command,
            verify=verify,
            kills=KILLS,
            kill_after=(3, 20),
            timeout=240.0,
            after_kill=output.after_kill,
        )
    output.assert_resumed(report)
