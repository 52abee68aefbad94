"""A transactional Kafka producer that another instance fences, against the real broker (plain
listener, no proxy): the one fatal producer failure ``run(restart=...)`` must not restart.

Every other fatal error of the exactly-once sink is restarted (``TransactionalKafkaSink`` replaces the
producer and fences it; the stall fault of ``test_kafka_faults.py`` meets librdkafka's fatal "sequence
desynchronization"). A fenced producer is different: another instance with the same transactional id
owns it now, and restarting would fence that one in turn, so the two would take the id from each other
for ever. Here the other instance is a second sink that runs ``init_transactions`` while the first
one's pipeline runs; the first pipeline must stop with a non-retryable error after no restart, and the
second must then commit (it was not fenced back).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
from kafka_helpers import Broker, datagen
from scenario import CAP, wait_for

from arrowflow import Pipeline
from arrowflow.connectors.kafka import KafkaSource, TransactionalKafkaSink
from arrowflow.errors import ConnectorError
from arrowflow.pipeline import exponential_delay

#: Rows of the fenced pipeline (DataGen at 150 rows/s): it is fenced after its third transaction.
ROWS = 3000
#: The id of the row the new owner of the transactional id commits.
OWNER_ROW = 10**6


def test_a_fenced_pipeline_stops_without_a_restart_and_the_new_owner_commits(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    broker = Broker("kafka", kafka_bootstrap)
    topic = broker.create_topic(broker.topic("fenced"), 1)

    def sink() -> Any:
        return TransactionalKafkaSink(
            kafka_bootstrap,
            topic=topic,
            transactional_id_prefix=topic,  # both sinks: the same transactional id
            flush_timeout=30,
        )

    zombie = sink()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = (
                Pipeline(datagen(ROWS))
                .to(zombie)
                .run(
                    progress=False,
                    checkpoint_dir=tmp_path / "zombie",
                    checkpoint_interval=0.5,
                    guarantee="exactly-once",
                    restart=exponential_delay("200ms", "1s"),
                )
            )
        except BaseException as exc:  # checked below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="fenced-pipeline", daemon=True)
    thread.start()
    wait_for(lambda: zombie.metrics()["transactions"] >= 3 or not thread.is_alive(), "3 transactions")
    assert thread.is_alive(), outcome  # still running when fenced (ROWS take about 20 s)

    owner = sink()
    owner.recover([])  # init_transactions with the same id: a new epoch, the zombie is fenced
    thread.join(CAP)
    assert not thread.is_alive(), "the fenced pipeline did not stop"
    error = outcome.get("error")
    assert isinstance(error, ConnectorError), outcome  # not a RunResult: it did not carry on
    notes = " ".join(getattr(error, "__notes__", []))
    print(f"the fenced pipeline stopped with: {error!r}; notes: {notes!r}")  # -rP shows it
    assert error.retryable is False, error
    assert "fenced" in str(error), error
    assert "restart(s) before it" not in notes, notes  # the runner never restarted it

    # The new owner still owns the id (a restarted zombie would have fenced it): it commits.
    owner.write(pa.record_batch({"id": pa.array([OWNER_ROW], pa.int64())}))
    owner.close()
    values = KafkaSource(kafka_bootstrap, topics=topic, stopping_offsets="latest").read_all()
    ids = [json.loads(v)["id"] for v in values.column("value").to_pylist()]  # read_committed
    assert ids[-1] == OWNER_ROW, ids[-5:]
    # What the zombie committed before it was fenced: a prefix of its rows, each once.
    assert ids[:-1] == list(range(len(ids) - 1)), ids
    assert 0 < len(ids) - 1 < ROWS
