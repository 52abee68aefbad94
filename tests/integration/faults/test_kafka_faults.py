"""KafkaSink and KafkaSource against the real Apache Kafka through the fault proxy (issue 19): each
fault of ``tests/faults/scenario.py`` while rows flow; every row arrives exactly once (the idempotent
producer; a source reads by offset), a silent broker is noticed by librdkafka's request timeout
(``socket.timeout.ms``/``request.timeout.ms``: the client drops the connection and sends again) instead
of hanging the run, and the metrics (librdkafka's statistics) count the retries, reconnects and
timeouts.

Every client connection goes through the proxy: kafka.sh's ``FAULT`` listener (``KAFKA_FAULT_PORT``)
advertises ``KAFKA_FAULT_PROXY_PORT``, where the proxy listens (a Kafka client reconnects to a
broker's advertised address, which would bypass a proxy in front of the bootstrap port only). The
rows are checked on the broker's plain listener.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from kafka_helpers import Broker
from proxy import FaultProxy
from scenario import CAP, FAULTS, check_recovered, run_through, wait_for

from arrowflow.connectors.kafka import KafkaSink, KafkaSource
from arrowflow.testing import make_table

SERVICE = "kafka-fault"  # the proxy fixture (conftest.py) fronts this listener
PROXY_PORT = int(os.environ.get("KAFKA_FAULT_PROXY_PORT", "9097"))  # the listener advertises it
TIMEOUT_MS = 3000
#: librdkafka's timeouts of the clients under test: a request without an answer (and a connection
#: without its handshake) fails after TIMEOUT_MS; the connection is then dropped and made again.
NETWORK = {
    "socket.timeout.ms": TIMEOUT_MS,
    "request.timeout.ms": TIMEOUT_MS,
    "socket.connection.setup.timeout.ms": TIMEOUT_MS,
}
ROWS = 3000
PARTITIONS = 2


@pytest.fixture
def topic(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic (created on the plain listener, not through the proxy), deleted after."""
    from confluent_kafka.admin import AdminClient

    broker = Broker("kafka", kafka_bootstrap)
    name = broker.create_topic(broker.topic("faults"), PARTITIONS)
    yield name
    admin = AdminClient(broker.client)  # kept alive until the deletion is answered
    admin.delete_topics([name])[name].result(60)


def _ids(kafka_bootstrap: str, topic: str) -> list[int]:
    """The ``id`` of every message of ``topic`` (read on the plain listener, to the end)."""
    src = KafkaSource(kafka_bootstrap, topics=topic, stopping_offsets="latest")
    return [json.loads(v)["id"] for v in src.read_all().column("value").to_pylist()]


def _settled(metrics: Any, serve: Any) -> dict[str, int]:
    """The client's metrics once a statistics report made after the work is in: librdkafka reports
    every ``statistics.interval.ms``, through the client's next ``poll``/``flush``/``consume``."""
    seen = metrics()["statistics"]

    def fresh() -> bool:
        serve()
        return bool(metrics()["statistics"] >= seen + 2)

    wait_for(fresh, "a fresh statistics report")
    return dict(metrics())


@pytest.mark.parametrize("fault", FAULTS)
def test_sink_delivers_each_row_once_through(
    fault: str, proxy: FaultProxy, topic: str, kafka_bootstrap: str
) -> None:
    rows = make_table(ROWS).select(["id", "name"])
    batches = rows.to_batches(max_chunksize=500)
    sink = KafkaSink(
        f"127.0.0.1:{proxy.port}",
        topic=topic,
        partitioner="round-robin",
        flush_timeout=CAP,
        config=NETWORK,
    )
    try:
        sink.write(batches[0])  # the first batch before the fault: partition counts are known
        sink.flush()
        _settled(sink.metrics, sink.flush)  # the connection made before the fault is in the statistics

        def work() -> None:
            for batch in batches[1:]:
                sink.write(batch)
            sink.flush()

        run_through(fault, proxy, work, detected=lambda: sink.metrics()["timeouts"] >= 1, reset_bytes=20_000)
        m = _settled(sink.metrics, sink.flush)
    finally:
        sink.close()
    ids = _ids(kafka_bootstrap, topic)
    assert sorted(ids) == rows.column("id").to_pylist()  # every row, once (idempotent producer)
    assert m["rows"] == ROWS and m["delivery_failures"] == 0, m
    check_recovered(fault, m, proxy)


@pytest.mark.parametrize("fault", FAULTS)
def test_source_reads_each_row_once_through(
    fault: str, proxy: FaultProxy, topic: str, kafka_bootstrap: str
) -> None:
    from confluent_kafka import Producer

    producer = Producer(Broker("kafka", kafka_bootstrap).client)  # on the plain listener

    def produce(ids: range) -> None:
        for i in ids:
            producer.produce(topic, value=b"%d" % i, partition=i % PARTITIONS)
        assert producer.flush(60) == 0

    produce(range(ROWS // 3))
    src = KafkaSource(f"127.0.0.1:{proxy.port}", topics=topic, config=NETWORK)
    readers = [src.open(split) for split in src.plan()]
    seen: list[int] = []

    def read(until: int) -> None:
        wait_for(lambda: poll() >= until, f"{until} messages read")

    def poll() -> int:
        for reader in readers:
            batch = reader.read_batch(200, 0.1)
            if batch is not None:
                seen.extend(int(v) for v in batch.column("value").to_pylist())
        return len(set(seen))

    try:
        read(ROWS // 3)  # a third before the fault (a consumer prefetches what is there: the rest
        # is written once the network is broken, so the readers must fetch it through the fault)
        _settled(src.metrics, poll)  # the connections made before the fault are in the statistics
        run_through(
            fault,
            proxy,
            lambda: (produce(range(ROWS // 3, ROWS)), read(ROWS)),
            detected=lambda: src.metrics()["timeouts"] >= 1,
            reset_direction="down",  # cut a fetch reply
            reset_bytes=3000,
        )
        m = _settled(src.metrics, poll)
    finally:
        for reader in readers:
            reader.close()
    assert sorted(seen) == list(range(ROWS))  # every message, once (read by offset)
    # A consumer fetches again from its position after a reconnect: nothing is "retried".
    if fault in ("reset", "blackhole", "stall"):
        assert m["reconnects"] >= 1, m
    if fault in ("blackhole", "stall"):
        assert m["timeouts"] >= 1, m
    if fault in ("latency", "bandwidth"):
        assert m["reconnects"] == 0 and m["timeouts"] == 0, m
