"""End to end, in separate processes killed with SIGKILL: DataGen -> KafkaSink -> Kafka (Tansu, or the
``ARROWFLOW_KAFKA_BOOTSTRAP`` cluster) -> KafkaSource -> FileSink.

Verified: the produce stage (at-least-once) loses no row across kills; the consume stage (exactly-once
through the file sink's rename protocol) writes every Kafka message exactly once — each
``(partition, offset)`` once, and all of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.dataset as ds
from kafka_helpers import Broker, consume_all, wait_partitions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import CrashReport, run_with_crashes

HERE = Path(__file__).resolve().parent
ROWS = 1500


def _command(*args: str) -> list[str]:
    return [sys.executable, str(HERE / "kafka_e2e_pipeline.py"), *args]


def test_datagen_kafka_filesink_with_sigkill(process_broker: Broker, tmp_path: Path) -> None:
    topic = process_broker.topic("e2e")
    common = ["--bootstrap", process_broker.bootstrap, "--topic", topic]

    def verify_produced(report: CrashReport) -> None:
        assert "done" in report.final_stdout

    produced = run_with_crashes(
        _command("produce", *common, "--rows", str(ROWS), "--checkpoint-dir", str(tmp_path / "cp1")),
        verify=verify_produced,
        kills=3,
        min_delay=0.3,
        max_delay=1.5,
        ready_line="started",
        seed=7,
        timeout=120,
    )
    assert produced.kills + produced.early_exits >= 1
    n = wait_partitions(process_broker.bootstrap, topic)
    messages = consume_all(process_broker.bootstrap, topic, n)
    import json

    ids = {json.loads(m.value())["id"] for m in messages}
    assert ids == set(range(ROWS)), f"{ROWS - len(ids)} rows lost"  # at-least-once: no loss
    out = tmp_path / "out"

    def verify_files(report: CrashReport) -> None:
        table = ds.dataset(str(out), format="parquet").to_table()
        pairs = list(
            zip(table.column("_partition").to_pylist(), table.column("_offset").to_pylist(), strict=True)
        )
        assert len(pairs) == len(set(pairs)), f"{len(pairs) - len(set(pairs))} duplicated messages"
        assert len(pairs) == len(messages), f"{len(messages) - len(pairs)} messages missing"
        assert set(table.column("id").to_pylist()) == set(range(ROWS))

    consumed = run_with_crashes(
        _command("consume", *common, "--checkpoint-dir", str(tmp_path / "cp2"), "--out", str(out)),
        verify=verify_files,
        kills=3,
        min_delay=0.3,
        max_delay=1.2,
        ready_line="started",
        seed=11,
        timeout=120,
    )
    assert consumed.kills + consumed.early_exits >= 1
