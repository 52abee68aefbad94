"""SIGKILL crash/restart of Kinesis pipelines (separate processes killed from this one, kinesalite).

1. DataGen -> KinesisSink (at-least-once), killed exactly 3 times mid-stream (after a seeded random
   number of batches) and resumed from its checkpoint: every id reaches the stream at least once
   (duplicates are allowed and counted).
2. KinesisSource -> FileSink (exactly-once) over that stream, killed exactly 3 times mid-stream and
   resumed: every record (by shard + sequence number) lands in the output exactly once.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from aws_helpers import CREDS, create_stream, read_stream

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream

HERE = Path(__file__).resolve().parent


def _command(*args: str) -> list[str]:
    return [sys.executable, str(HERE / "aws_crash_pipeline.py"), *args]


def test_sigkill_kinesis_produce_and_consume(kinesalite_endpoint: str, tmp_path: Path) -> None:
    import boto3

    kinesis: Any = boto3.client("kinesis", endpoint_url=kinesalite_endpoint, **CREDS)
    rows = 1500
    stream = create_stream(kinesis, shards=2)
    common = ["--endpoint", kinesalite_endpoint, "--stream", stream]

    def produced_ok(report: CrashReport) -> None:
        assert DONE in report.final_stdout.splitlines()

    # 30 batches of 50 rows, a checkpoint every ~2 batches: kills after 1-6 batches land mid-stream.
    produced = crash_mid_stream(
        _command("produce", *common, "--rows", str(rows), "--checkpoint-dir", str(tmp_path / "cp1")),
        verify=produced_ok,
        kills=3,
        kill_after=(1, 6),
        seed=11,
        timeout=120,
    )
    records = read_stream(kinesis, stream)
    ids = Counter(
        int(pa.py_buffer(r["Data"]).to_pybytes().split(b'"id":')[1].split(b",")[0]) for r in records
    )
    assert set(ids) == set(range(rows)), f"{rows - len(set(ids) & set(range(rows)))} ids lost"
    duplicates = sum(ids.values()) - rows
    print(f"kinesis produce: {produced.kills} kills, {len(records)} records, {duplicates} duplicates")
    out = tmp_path / "out"

    def consumed_ok(report: CrashReport) -> None:
        assert DONE in report.final_stdout.splitlines()
        table = ds.dataset(str(out), format="parquet").to_table()
        keys = list(
            zip(
                table.column("_shard_id").to_pylist(),
                table.column("_sequence_number").to_pylist(),
                strict=True,
            )
        )
        assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} records written twice"
        assert len(keys) == len(records), f"{len(records) - len(keys)} records missing"
        assert Counter(table.column("id").to_pylist()) == ids

    consumed = crash_mid_stream(
        _command("consume", *common, "--checkpoint-dir", str(tmp_path / "cp2"), "--out", str(out)),
        verify=consumed_ok,
        kills=3,
        kill_after=(1, 6),
        seed=13,
        timeout=120,
    )
    print(f"kinesis consume: {consumed.kills} kills, {len(records)} records exactly once")
