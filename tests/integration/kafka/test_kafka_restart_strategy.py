"""Restart strategies against a real broker stopped mid-run (in-process recovery, exactly-once).

DataGen (the window crash test's rows: 3 splits through the same event time, out of order within
``MAX_DELAY_US``, rate-limited, replayable) -> tumbling 10 s windows by ``k`` ->
``TransactionalKafkaSink`` (one Kafka transaction per checkpoint), run in a thread of this process with
``restart=``. Once windows have been committed and the run is still going, the broker of
``tests/services/kafka.sh`` is stopped (SIGTERM). The next checkpoint cannot complete (the open
transaction's messages are not acknowledged within ``flush_timeout``): the pipeline fails with the
sink's retryable ``ConnectorError``, and the strategy restarts it in the same process; attempts made
while the broker is still down fail again (``init_transactions``). Once a restart has been logged the
broker is started again on its data (``kafka.sh resume``) and a later attempt resumes from the last
completed checkpoint.

Asserted: the strategy restarted the run at least once, the cause is the sink's error, rows were read
again after a restart (the replay from the checkpoint happened), and the windows a ``read_committed``
reader finds in the topic equal the oracle (polars ``group_by_dynamic`` over every generated row)
exactly: no window lost, none twice. With a strategy of one attempt and the broker kept down, the run
fails with the sink's error (``gave up after 1 restart(s)``).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from kafka_helpers import Broker, KafkaService, consume_all, run_in_thread

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from window_checks import oracle_windows
from window_crash_pipeline import AGGS, BUCKET, MAX_DELAY_US, ROWS, SPLITS, WINDOW, generate

from arrowflow import ConnectorError, Pipeline, WatermarkStrategy, tumbling
from arrowflow.connectors.datagen import DataGenSource
from arrowflow.connectors.kafka import TransactionalKafkaSink
from arrowflow.formats import Json
from arrowflow.pipeline import exponential_delay, fixed_delay

#: Rows per second of the DataGen source: the 90,000 rows take ~30 s, so the broker stop lands mid-run.
RATE = 3000.0
WINDOWS = pa.schema(
    [
        ("k", pa.int64()),
        ("window_start", pa.timestamp("us")),
        ("window_end", pa.timestamp("us")),
        ("count", pa.int64()),
        ("v_sum", pa.int64()),
        ("v_min", pa.int64()),
        ("v_max", pa.int64()),
        ("id_approx_distinct", pa.int64()),
    ]
)
KEYS = ["k", "window_start"]


class Restarts(logging.Handler):
    """Counts the runner's "the pipeline failed ...; restart N" records of the run in ``thread`` (the
    thread that called ``run()`` logs them), so a run another test left behind is not counted."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.event = threading.Event()
        self.thread: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if "the pipeline failed" in record.getMessage() and record.thread == self.thread:
            self.count += 1
            self.event.set()


@pytest.fixture
def restarts() -> Any:
    handler = Restarts()
    logger = logging.getLogger("arrowflow.pipeline")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def oracle() -> pl.DataFrame:
    rows = pl.from_arrow(generate(np.arange(ROWS, dtype=np.int64)))
    assert isinstance(rows, pl.DataFrame)
    return oracle_windows(rows, WINDOW, BUCKET).drop("bucket").sort(KEYS)


def committed_windows(broker: Broker, topic: str) -> pl.DataFrame:
    """The windows a read_committed reader finds in ``topic`` now."""
    values = [m.value() for m in consume_all(broker, topic, SPLITS)]
    frame = pl.from_arrow(Json(WINDOWS).decode(pa.array(values, pa.binary())).batch)
    assert isinstance(frame, pl.DataFrame)
    return frame


def window_pipeline(broker: Broker, topic: str, ckpt: Path, restart: Any) -> Any:
    """The run (blocking): DataGen -> tumbling window -> transactional KafkaSink, restart=``restart``."""
    sink = TransactionalKafkaSink(
        broker.bootstrap,
        topic=topic,
        partitioner="round-robin",
        transactional_id_prefix=topic,
        # A checkpoint while the broker is down fails after these, not after the 30 s defaults.
        flush_timeout=5,
        metadata_timeout=5,
    )
    source = DataGenSource(
        generator=generate, count=ROWS, num_splits=SPLITS, batch_size=500, rows_per_second=RATE
    )
    return (
        Pipeline(source, watermarks=WatermarkStrategy.bounded_out_of_orderness("ts", MAX_DELAY_US / 1e6))
        .window(tumbling(WINDOW), AGGS, by="k")
        .to(sink)
        .run(
            checkpoint_dir=ckpt,
            checkpoint_interval=0.5,
            guarantee="exactly-once",
            progress=False,
            max_batch_rows=500,
            restart=restart,
        )
    )


def stop_mid_run(
    broker: Broker, kafka_service: KafkaService, topic: str, thread: threading.Thread, expected: int
) -> int:
    """Wait until some windows are committed with the run still going, then stop the broker; the
    number of windows committed when it was stopped."""
    deadline = time.monotonic() + 180
    while True:
        done = committed_windows(broker, topic).height
        if done >= 5:
            break
        assert thread.is_alive() and time.monotonic() < deadline, f"{done} windows committed"
        time.sleep(0.3)
    assert thread.is_alive() and done < expected  # mid-run: more windows to come
    kafka_service.stop()
    return done


@pytest.mark.timeout(900)  # broker stop and start on a loaded machine
def test_restart_strategy_recovers_from_a_broker_outage_exactly_once(
    broker: Broker, kafka_service: KafkaService, restarts: Restarts, tmp_path: Path
) -> None:
    expected = oracle()
    topic = broker.create_topic(broker.topic("rs"), SPLITS)
    results: list[Any] = []
    strategy = exponential_delay(initial="500ms", max="2s", reset_after="1h")
    thread = run_in_thread(lambda: window_pipeline(broker, topic, tmp_path / "ckpt", strategy), results)
    restarts.thread = thread.ident
    stopped = False
    try:
        before = stop_mid_run(broker, kafka_service, topic, thread, expected.height)
        stopped = True
        # The broker stays down until the run has failed and the strategy restarted it.
        deadline = time.monotonic() + 300
        while not restarts.event.wait(0.5):
            assert thread.is_alive(), f"the run ended without a restart: {results}"
            assert time.monotonic() < deadline, "the pipeline did not fail while the broker was down"
        assert thread.is_alive()  # restarting, not given up
    finally:
        if stopped:
            kafka_service.resume()
    thread.join(600)
    assert not thread.is_alive(), "the pipeline did not finish after the broker came back"
    result = results[0]
    assert not isinstance(result, BaseException), result
    assert result.restarts >= 1 and result.restarts == restarts.count
    assert all("kafka sink" in cause for cause in result.restart_causes), result.restart_causes
    assert result.rows > ROWS  # rows after the last checkpoint were read again (the replay)
    got = committed_windows(broker, topic)
    assert 0 < before < got.height
    assert got.select(KEYS).is_duplicated().sum() == 0  # no window twice
    assert got.sort(KEYS).equals(expected), "committed windows differ from the oracle"


@pytest.mark.timeout(900)
def test_restart_strategy_with_too_few_attempts_fails_with_the_error(
    broker: Broker, kafka_service: KafkaService, restarts: Restarts, tmp_path: Path
) -> None:
    topic = broker.create_topic(broker.topic("rs-fail"), SPLITS)
    results: list[Any] = []
    strategy = fixed_delay(1, "500ms")
    thread = run_in_thread(lambda: window_pipeline(broker, topic, tmp_path / "ckpt", strategy), results)
    restarts.thread = thread.ident
    stopped = False
    try:
        stop_mid_run(broker, kafka_service, topic, thread, oracle().height)
        stopped = True
        thread.join(300)  # the broker stays down: the one restart fails too
        assert not thread.is_alive(), "the pipeline did not give up"
    finally:
        if stopped:
            kafka_service.resume()
    error = results[0]
    assert isinstance(error, ConnectorError) and error.retryable, repr(error)
    assert "kafka sink" in str(error)
    assert any("gave up after 1 restart(s)" in n for n in getattr(error, "__notes__", [])), error
    assert restarts.count == 1
