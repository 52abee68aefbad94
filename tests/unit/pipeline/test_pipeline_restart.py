"""Restart strategies: their delays, and in-process restarts of a failed pipeline from its last checkpoint.

Failures are injected by user code (an operator or a sink that raises a retryable
``ConnectorError``/``OSError`` at chosen batches, counted across attempts), so every restart is
deterministic; the broker-level restarts are in the integration tests (Kafka).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from pipeline_doubles import IdSource, TxSink, Upstream, all_ids
from test_pipeline_eventtime import _events, _oracle, _window_pipeline

from arrowflow import (
    CheckpointError,
    ConfigurationError,
    ConnectorError,
    Pipeline,
    SerializationError,
    Sink,
    WatermarkStrategy,
    agg,
)
from arrowflow.connectors.collection import CollectionSource
from arrowflow.ops.base import Operator
from arrowflow.pipeline import CheckpointStore, exponential_delay, failure_rate, fixed_delay, no_restart
from arrowflow.pipeline.restart import RestartHistory
from arrowflow.time import MAX_WATERMARK, tumbling


class Flaky(Operator):
    """Passes batches through; raises ``make(n)`` at the n-th batch it sees for each n in ``at``
    (counted across attempts: the same object runs every attempt).

    With ``checkpoints`` (a callable giving the number of checkpoints completed so far) a failure that
    is due waits for the next batch after a checkpoint completed since the previous failure, so every
    attempt has a checkpoint to restart from however slowly the machine runs (no timing assumption)."""

    name = "flaky"

    def __init__(
        self, at: Sequence[int], make: Any = None, *, checkpoints: Callable[[], int] | None = None
    ) -> None:
        self.at = sorted(set(at))
        self.make = make or (lambda n: ConnectorError(f"flaky failure at batch {n}", retryable=True))
        self.checkpoints = checkpoints
        self.last_checkpoints = 0
        self.seen = 0
        self.raised = 0
        self.opened = 0

    def open(self) -> None:
        self.opened += 1

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        self.seen += 1
        due = self.raised < len(self.at) and self.seen >= self.at[self.raised]
        if due and self.checkpoints is not None:
            done = self.checkpoints()
            if done <= self.last_checkpoints:
                return [batch]  # no checkpoint since the last failure yet: fail at a later batch
            self.last_checkpoints = done
        if due:
            self.raised += 1
            raise self.make(self.seen)
        return [batch]


class FlakySink(Sink):
    """Collects batches; every write in ``fail_at`` (write numbers, across attempts) raises an OSError
    (retryable) and, like a writer with a recorded failure, every later write too until ``reset``."""

    name = "flaky-sink"

    def __init__(self, fail_at: Sequence[int]) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.fail_at = set(fail_at)
        self.writes = 0
        self.failed = False
        self.resets = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.writes += 1
        if self.failed or self.writes in self.fail_at:
            self.failed = True
            raise ConnectionResetError(f"connection reset at write {self.writes}")
        self.batches.append(batch)

    def reset(self) -> None:
        self.resets += 1
        self.failed = False


# -- the strategies ------------------------------------------------------------------------------------


def test_fixed_delay_restarts_attempts_times() -> None:
    s = fixed_delay(2, "1500ms")
    h = RestartHistory(failures=[1.0])
    assert s.delay(h, 1.0) == 1.5
    h.restarts = 1
    assert s.delay(h, 2.0) == 1.5
    h.restarts = 2
    assert s.delay(h, 3.0) is None


def test_failure_rate_counts_failures_within_the_interval() -> None:
    s = failure_rate(2, "10s", 0.5)
    assert s.delay(RestartHistory(failures=[0.0, 1.0]), 1.0) == 0.5
    assert s.delay(RestartHistory(failures=[0.0, 1.0, 2.0]), 2.0) is None  # 3 within 10 s
    assert s.delay(RestartHistory(failures=[0.0, 1.0, 12.0]), 12.0) == 0.5  # the first two are old


def test_exponential_delay_grows_caps_and_resets() -> None:
    s = exponential_delay(initial=1, max=8, multiplier=2, reset_after="1m", jitter=False)
    h = RestartHistory(attempt_started=100.0)
    caps = []
    for _ in range(6):
        caps.append(s.delay(h, 101.0))
        h.consecutive += 1
        h.restarts += 1
    assert caps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    # The last attempt ran longer than reset_after without a failure: back to the initial delay.
    assert s.delay(h, 100.0 + 61) == 1.0 and h.consecutive == 0
    limited = exponential_delay(initial=1, max=8, attempts=2, jitter=False)
    assert limited.delay(RestartHistory(restarts=2), 0.0) is None
    jittered = exponential_delay(initial=1, max=8, multiplier=2, seed=7)
    h = RestartHistory(consecutive=3)
    draws = [jittered.delay(h, 0.0) for _ in range(200)]
    assert all(d is not None and 0.0 <= d <= 8.0 for d in draws)
    assert len(set(draws)) > 100  # full jitter: spread over [0, cap], not a constant


def test_no_restart_never_restarts() -> None:
    assert no_restart().delay(RestartHistory(failures=[0.0]), 0.0) is None


@pytest.mark.parametrize(
    ("make", "option"),
    [
        (lambda: fixed_delay(0, 1), "attempts"),
        (lambda: fixed_delay(1, "soon"), "delay"),
        (lambda: exponential_delay(initial=5, max=1), "max"),
        (lambda: exponential_delay(multiplier=0.5), "multiplier"),
        (lambda: exponential_delay(reset_after=0), "reset_after"),
        (lambda: failure_rate(0, "1m", 1), "max_failures"),
        (lambda: failure_rate(1, 0, 1), "interval"),
        (
            lambda: Pipeline(IdSource({"a": (0, 1)})).to(TxSink(Upstream())).run(restart="sometimes"),
            "restart",
        ),
        (lambda: Pipeline(IdSource({"a": (0, 1)})).to(TxSink(Upstream())).run(parallelism=0), "parallelism"),
    ],
)
def test_bad_restart_options_name_the_option(make: Any, option: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make()
    assert info.value.option == option


# -- restarts in a running pipeline --------------------------------------------------------------------


def test_retryable_failures_restart_in_process_from_the_last_checkpoint_exactly_once(tmp_path: Path) -> None:
    src = IdSource({f"s{i}": (i * 3000, (i + 1) * 3000) for i in range(3)}, batch_rows=100, delay=0.001)
    flaky = Flaky(at=[7, 23, 40], checkpoints=lambda: len(src.commits))
    up = Upstream()
    sink = TxSink(up)
    result = (
        Pipeline(src)
        .via(flaky)
        .to(sink)
        .run(
            progress=False,
            checkpoint_dir=tmp_path,
            guarantee="exactly-once",
            checkpoint_interval=0.02,
            restart=fixed_delay(5, 0.01),
        )
    )
    assert result.restarts == 3 and flaky.raised == 3
    assert all(
        "flaky failure at batch" in c and c.startswith("ConnectorError") for c in result.restart_causes
    )
    assert sink.aborted >= 3  # each restart aborted the open transaction
    assert len(sink.recovered) == 4  # every attempt recovered from the checkpoint before writing
    assert flaky.opened == 4
    assert np.array_equal(all_ids(up.committed), np.arange(9000)), "rows lost or committed twice"
    # Rows after the last checkpoint were read again: the exactly-once check above saw replays.
    assert result.rows > 9000 and result.rows_written > 9000
    # Later attempts reopened splits from the checkpoint's positions, past their start.
    starts = {f"s{i}": i * 3000 for i in range(3)}
    assert any(pos is not None and pos > starts[sid] for sid, pos in src.opened)


@pytest.mark.parametrize(
    "error",
    [
        SerializationError("bad row under error_policy='fail'"),
        ConfigurationError("bad option", option="x"),
        CheckpointError("damaged"),
        ConnectorError("refused for good", retryable=False),
        ZeroDivisionError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_non_retryable_errors_are_raised_at_once(error: BaseException, tmp_path: Path) -> None:
    flaky = Flaky(at=[3], make=lambda n: error)
    with pytest.raises(type(error)) as info:
        Pipeline(IdSource({"a": (0, 5000)})).via(flaky).to(TxSink(Upstream())).run(
            progress=False, checkpoint_dir=tmp_path, restart=fixed_delay(5, 0)
        )
    assert info.value is error
    assert flaky.opened == 1 and flaky.raised == 1  # one attempt only


def test_a_damaged_checkpoint_is_not_restarted(tmp_path: Path) -> None:
    Pipeline(IdSource({"a": (0, 500)})).to(TxSink(Upstream())).run(progress=False, checkpoint_dir=tmp_path)
    store = CheckpointStore(tmp_path)
    store.path.write_text(store.path.read_text().replace('"a"', '"b"', 1))
    src = IdSource({"a": (0, 500)})
    with pytest.raises(CheckpointError, match="checksum"):
        Pipeline(src).to(TxSink(Upstream())).run(
            progress=False, checkpoint_dir=tmp_path, restart=fixed_delay(5, 0)
        )
    assert src.opened == []


def test_the_strategy_gives_up_and_says_so(tmp_path: Path) -> None:
    flaky = Flaky(at=range(1, 1000))
    with pytest.raises(ConnectorError, match="flaky failure") as info:
        Pipeline(IdSource({"a": (0, 5000)})).via(flaky).to(TxSink(Upstream())).run(
            progress=False, checkpoint_dir=tmp_path, restart=fixed_delay(2, 0)
        )
    assert flaky.raised == 3
    assert any("gave up after 2 restart(s)" in n for n in getattr(info.value, "__notes__", []))


def test_failure_rate_gives_up_when_failures_come_too_often(tmp_path: Path) -> None:
    flaky = Flaky(at=[2, 4, 6, 8])
    with pytest.raises(ConnectorError):
        Pipeline(IdSource({"a": (0, 5000)})).via(flaky).to(TxSink(Upstream())).run(
            progress=False, checkpoint_dir=tmp_path, restart=failure_rate(2, "1h", 0)
        )
    assert flaky.raised == 3  # two restarts allowed within the hour, the third failure ends the run


def test_exponential_delay_restarts_until_the_pipeline_finishes(tmp_path: Path) -> None:
    flaky = Flaky(at=[3, 6, 9, 12])
    up = Upstream()
    result = (
        Pipeline(IdSource({"a": (0, 4000), "b": (4000, 8000)}, batch_rows=200))
        .via(flaky)
        .to(TxSink(up))
        .run(
            progress=False,
            checkpoint_dir=tmp_path,
            guarantee="exactly-once",
            checkpoint_interval=0.01,
            restart=exponential_delay(initial=0.01, max=0.05, multiplier=2, seed=3),
        )
    )
    assert result.restarts == 4
    assert np.array_equal(all_ids(up.committed), np.arange(8000))


def test_a_sink_failure_restarts_after_reset_at_least_once(tmp_path: Path) -> None:
    sink = FlakySink(fail_at=[5, 17])
    result = (
        Pipeline(IdSource({"a": (0, 3000), "b": (3000, 6000)}, batch_rows=100, delay=0.001))
        .to(sink)
        .run(progress=False, checkpoint_dir=tmp_path, checkpoint_interval=0.01, restart=fixed_delay(3, 0))
    )
    assert result.restarts == 2 and sink.resets == 2
    assert all(c.startswith("ConnectionResetError") for c in result.restart_causes)
    ids = all_ids(sink.batches)
    assert np.array_equal(np.unique(ids), np.arange(6000)), "a row was lost"


def test_without_checkpoint_dir_a_restart_reads_again_from_the_start(tmp_path: Path) -> None:
    src = IdSource({"a": (0, 3000), "b": (3000, 6000)}, batch_rows=100, delay=0.001)
    sink = FlakySink(fail_at=[40])
    result = Pipeline(src).to(sink).run(progress=False, checkpoint_interval=0.01, restart=fixed_delay(1, 0))
    assert result.restarts == 1
    ids = all_ids(sink.batches)
    assert np.array_equal(np.unique(ids), np.arange(6000))
    # At-least-once: the first rows of both splits were written before the failure and again after.
    assert int((ids == 0).sum()) == 2 and int((ids == 3000).sum()) == 2
    assert [pos for sid, pos in src.opened if sid == "a"] == [None, 0]  # the start position, recorded


def test_a_restart_restores_window_state_and_watermarks(tmp_path: Path) -> None:
    table = _events(20_000)
    up = Upstream()
    flaky = Flaky(at=[11, 29, 47])
    pipeline = (
        Pipeline(
            CollectionSource(table, batch_size=300),
            watermarks=WatermarkStrategy.bounded_out_of_orderness("ts", "2s"),
        )
        .via(flaky)
        .window(tumbling("5s"), [agg.count(), agg.sum("v")], by="k")
        .to(TxSink(up))
    )
    result = pipeline.run(
        progress=False,
        checkpoint_dir=tmp_path,
        guarantee="exactly-once",
        checkpoint_interval=0.01,
        restart=fixed_delay(3, 0),
    )
    assert result.restarts == 3 and result.watermark == MAX_WATERMARK
    assert result.stage("window").late_rows == 0
    got = pl.from_arrow(pa.Table.from_batches(up.committed)).sort(["window_start", "k"])
    assert got.equals(_oracle(table)), "windows lost or emitted twice across the restarts"


def test_stop_while_waiting_to_restart_raises_the_failure(tmp_path: Path) -> None:
    stop = threading.Event()

    def fail(n: int) -> BaseException:
        # The stop comes while the runner waits the hour before restarting.
        threading.Timer(0.2, stop.set).start()
        return ConnectorError("down", retryable=True)

    flaky = Flaky(at=[2], make=fail)
    with pytest.raises(ConnectorError, match="down") as info:
        Pipeline(IdSource({"a": (0, 5000)})).via(flaky).to(TxSink(Upstream())).run(
            progress=False, checkpoint_dir=tmp_path, restart=fixed_delay(1, "1h"), stop_event=stop
        )
    assert any("stopped while waiting to restart" in n for n in getattr(info.value, "__notes__", []))
    assert flaky.opened == 1


def test_window_pipeline_without_failures_is_unchanged_by_a_strategy(tmp_path: Path) -> None:
    table = _events(3000, seed=random.Random(1).randrange(100))
    up = Upstream()
    result = _window_pipeline(table, TxSink(up)).run(
        progress=False, checkpoint_dir=tmp_path, guarantee="exactly-once", restart=fixed_delay(3, 0)
    )
    assert result.restarts == 0 and result.restart_causes == ()
    got = pl.from_arrow(pa.Table.from_batches(up.committed)).sort(["window_start", "k"])
    assert got.equals(_oracle(table))
