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

from typing import Any

import pytest
from kafka_helpers import KafkaService, datagen, disrupt_mid_run

from arrowflow import Pipeline
from arrowflow.connectors.kafka import KafkaSink

ROWS = 3000


@pytest.mark.timeout(900)  # a broker restart or failover on a loaded machine
def test_broker_restart_mid_run_loses_nothing(kafka_service: KafkaService) -> None:
    broker = kafka_service.broker
    topic = broker.create_topic(broker.topic("restart"), 4)
    # A restart takes longer than the default flush_timeout (30 s) on a loaded machine: the
    # checkpoint's flush waits for the broker to come back instead of failing the run.
    sink = KafkaSink(broker.bootstrap, topic=topic, partitioner="round-robin", flush_timeout=180)

    def write() -> Any:
        return Pipeline(datagen(ROWS)).to(sink).run(progress=False, checkpoint_interval=1.0)

    # The reader's partition discovery runs every second: some of its requests fall in the outage.
    result = disrupt_mid_run(broker, topic, write, kafka_service.restart, ROWS)
    assert result.rows == ROWS and sink.metrics()["delivery_failures"] == 0
