"""A broker restart in the middle of a run: the broker of tests/services/kafka.sh is stopped (SIGTERM,
a clean shutdown) and started again on its data (``kafka.sh restart``) while one pipeline produces
into a topic and another reads it.

Asserted: nothing written before the restart is lost (the broker persists its log), the sink neither
fails nor loses nor duplicates a row (librdkafka keeps the messages queued while the broker is down
and the idempotent producer's retries are deduplicated by the broker), and the source, which
reconnects by itself and retries a partition discovery that fell in the outage, reads every row
exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pyarrow as pa
from kafka_helpers import Broker, KafkaService, json_ids, run_in_thread, wait_read

from arrowflow import Pipeline
from arrowflow.connectors.datagen import DataGenSource
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.kafka import KafkaSink, KafkaSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.formats import Json

ROWS = 3000


def test_broker_restart_mid_run_loses_nothing(kafka_service: KafkaService) -> None:
    broker: Broker = kafka_service.broker
    topic = broker.create_topic(broker.topic("restart"), 4)
    source = DataGenSource(fields={"id": Seq()}, count=ROWS, batch_size=50, rows_per_second=150)
    # A restart takes longer than the default flush_timeout (30 s) on a loaded machine: the
    # checkpoint's flush waits for the broker to come back instead of failing the run.
    sink = KafkaSink(broker.bootstrap, topic=topic, partitioner="round-robin", flush_timeout=180)
    written: list[Any] = []
    writer = run_in_thread(Pipeline(source).to(sink), written, checkpoint_interval=1.0)
    out = MemorySink()
    # Partition discovery every second: some of its metadata requests fall in the outage.
    reader_source = KafkaSource(
        broker.bootstrap, topics=[topic], format=Json(pa.schema([("id", pa.int64())])), discovery_interval=1.0
    )
    read: list[Any] = []
    reading = Pipeline(reader_source).to(out)
    reader = run_in_thread(reading, read, checkpoint_interval=1.0)
    deadline = time.monotonic() + 120
    while out.num_rows < 500:
        assert time.monotonic() < deadline and not read and not written, (out.num_rows, read, written)
        time.sleep(0.1)
    before = out.num_rows
    assert writer.is_alive() and reader.is_alive()  # mid-run on both sides
    kafka_service.restart()
    writer.join(240)
    assert not writer.is_alive(), "the writing pipeline did not finish after the restart"
    wait_read(reading, reader, out, ROWS)
    assert not isinstance(written[0], BaseException), written[0]
    assert not isinstance(read[0], BaseException), read[0]
    assert written[0].rows == ROWS and sink.metrics()["delivery_failures"] == 0
    assert before < ROWS
    assert Counter(out.table().column("id").to_pylist()) == Counter(range(ROWS))  # source: each row once
    assert json_ids(broker, topic) == Counter(range(ROWS))  # on the broker: nothing lost, nothing twice
