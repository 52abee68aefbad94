"""End to end against the real broker, in separate processes killed with SIGKILL:
DataGen -> KafkaSink / TransactionalKafkaSink -> Kafka -> KafkaSource (read_committed) -> FileSink.

Exactly-once: the producing pipeline is SIGKILLed once between a durable checkpoint and the commit of
its transaction, then three times at random moments while rows are in flight; the consuming pipeline
three times. Every id is in the output files exactly once, and the read_uncommitted view shows the
aborted transactions (the kills really left uncommitted data on the broker, which read_committed
hid). Each pipeline is rate-limited so that a run lasts far longer than the kill delays, and the test
asserts that every kill it claims landed before the run finished (a run log counts the runs that
started and the one that finished).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from kafka_helpers import Broker, consume_all, json_ids

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import SRC, CrashReport, run_with_crashes

HERE = Path(__file__).resolve().parent
ROWS = 5000
KILLS = 3


def _command(mode: str, broker: Broker, topic: str, tmp: Path, stage: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(HERE / "kafka_e2e_pipeline.py"),
        mode,
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--checkpoint-dir",
        str(tmp / f"cp-{stage}"),
        "--runs-log",
        str(tmp / f"runs-{stage}"),
        *extra,
    ]


def _crash(command: list[str], seed: int) -> CrashReport:
    """``KILLS`` SIGKILLs, each 0.5-2.5 s after the run's first batch, then a run to the end."""
    return run_with_crashes(
        command,
        verify=lambda report: None,
        kills=KILLS,
        min_delay=0.5,
        max_delay=2.5,
        ready_line="started",
        seed=seed,
        timeout=240,
    )


def _assert_killed_in_flight(report: CrashReport, runs_log: Path, earlier_runs: int = 0) -> None:
    """Exactly ``KILLS`` kills, each of a run that had started and had not finished."""
    assert report.kills == KILLS and report.early_exits == 0, report
    words = runs_log.read_text().split()
    assert words.count("started") == earlier_runs + KILLS + 1, words  # every killed run had data in flight
    assert words.count("done") == 1 and words[-1] == "done", words  # ... and none of them finished


def _kill_in_the_window(command: list[str], checkpoint_dir: Path) -> tuple[int, int]:
    """Run ``command`` until it stops between checkpoint and commit, SIGKILL it there: the ids of
    that transaction."""
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = ""
        for line in proc.stdout:
            if line.startswith("window"):
                break
        assert line.startswith("window"), proc.stderr.read() if proc.stderr else ""
        first, last = (int(x) for x in line.split()[1:3])
        os.kill(proc.pid, signal.SIGKILL)  # the sink sleeps before commit_transaction
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The checkpoint holding that transaction is durable and its journal is on disk.
    assert sorted(p.name for p in checkpoint_dir.rglob("txn-*"))
    return first, last


@pytest.mark.timeout(900)  # many pipeline runs, each rate-limited
def test_exactly_once_pipeline_with_sigkills(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic(broker.topic("eos"), 4)
    produce = _command(
        "produce-eos",
        broker,
        topic,
        tmp_path,
        "produce",
        "--rows",
        str(ROWS),
        "--rate",
        "400",
        "--window-flag",
        str(tmp_path / "window-reached"),
    )
    first, last = _kill_in_the_window(produce, tmp_path / "cp-produce")
    produced = _crash(produce, seed=7)
    _assert_killed_in_flight(produced, tmp_path / "runs-produce", earlier_runs=1)
    assert json_ids(broker, topic) == Counter(range(ROWS))  # read_committed: every id exactly once
    everything = json_ids(broker, topic, isolation="read_uncommitted")
    # The window's transaction was aborted (fenced) and replayed from the journal: two copies.
    assert all(everything[i] >= 2 for i in range(first, last + 1)), (first, last)
    assert sum(everything.values()) > ROWS  # the random kills aborted transactions too

    out = tmp_path / "out"
    committed = consume_all(broker, topic)
    consumed = _crash(
        _command("consume", broker, topic, tmp_path, "consume", "--out", str(out), "--delay", "0.12"),
        seed=11,
    )
    _assert_killed_in_flight(consumed, tmp_path / "runs-consume")
    table = ds.dataset(str(out), format="parquet").to_table()
    pairs = Counter(
        zip(table.column("_partition").to_pylist(), table.column("_offset").to_pylist(), strict=True)
    )
    assert set(pairs) == {(m.partition(), m.offset()) for m in committed}  # every message ...
    assert max(pairs.values()) == 1  # ... once
    assert Counter(table.column("id").to_pylist()) == Counter(range(ROWS))


@pytest.mark.timeout(900)  # many pipeline runs, each rate-limited
def test_at_least_once_produce_with_sigkills(broker: Broker, tmp_path: Path) -> None:
    """The at-least-once sink (idempotent producer) SIGKILLed three times mid-run: no id is lost
    (rows after the last checkpoint are produced again, so some may be there twice)."""
    topic = broker.create_topic(broker.topic("alo"), 4)
    rows = 3000
    report = _crash(
        _command("produce", broker, topic, tmp_path, "produce", "--rows", str(rows), "--rate", "300"),
        seed=5,
    )
    _assert_killed_in_flight(report, tmp_path / "runs-produce")
    counts = json_ids(broker, topic)
    assert set(counts) == set(range(rows)), f"{rows - len(counts)} rows lost"
