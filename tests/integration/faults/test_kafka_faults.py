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
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kafka_helpers import Broker, datagen
from proxy import FaultProxy
from scenario import CAP, FAULTS, check_recovered, run_through, wait_for

from arrowflow import Pipeline
from arrowflow.connectors.kafka import KafkaSink, KafkaSource, TransactionalKafkaSink
from arrowflow.pipeline import exponential_delay
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
#: Rows of the exactly-once pipeline (DataGen at 150 rows/s: about 8 s of checkpoints every 0.5 s).
PIPELINE_ROWS = 1200
PARTITIONS = 2
#: The exactly-once sink's flush_timeout, also the time its transactional calls are retried for.
#: The pipeline's stall outlasts it (FLUSH_TIMEOUT + 5 s), so that whatever call it meets times out:
#: a 6 s stall was, in 3 of 5 runs, waited out inside a call with no request timing out (the pipeline
#: then finished correctly, but the test could not show the stall was noticed).
FLUSH_TIMEOUT = 20


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
        client_options=NETWORK,
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
    src = KafkaSource(f"127.0.0.1:{proxy.port}", topics=topic, client_options=NETWORK)
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


@pytest.mark.parametrize("fault", FAULTS)
def test_exactly_once_pipeline_commits_each_row_once_through(
    fault: str, proxy: FaultProxy, topic: str, kafka_bootstrap: str, tmp_path: Any
) -> None:
    """DataGen -> ``TransactionalKafkaSink`` in a checkpointed pipeline that restarts
    after a retryable failure: a transactional call that fails in the fault aborts the transaction,
    the pipeline resumes from its last checkpoint, and a read_committed reader sees every row once.

    Every recovery is the pipeline's own (``run(restart=...)``, in process, one sink): a
    ``send_offsets_to_transaction`` that hangs after a reset (the sink gives that producer up, a
    retryable error) and a producer that librdkafka declares fatally failed (met in most stall runs
    and once under the black hole: "sequence desynchronization" after timed-out produce requests, a
    retryable error since it is not a fencing) are both restarted: the sink replaces the producer and
    fences the old one (``TransactionalKafkaSink.reset``/``recover``). The stall outlasts the sink's
    ``flush_timeout`` (see ``FLUSH_TIMEOUT``)."""
    sink = TransactionalKafkaSink(
        f"127.0.0.1:{proxy.port}",
        topic=topic,
        transactional_id_prefix=topic,
        partitioner="round-robin",
        flush_timeout=FLUSH_TIMEOUT,
        client_options=NETWORK,
    )

    def work() -> Any:
        return (
            Pipeline(datagen(PIPELINE_ROWS))
            .to(sink)
            .run(
                progress=False,
                checkpoint_dir=tmp_path,
                checkpoint_interval=0.5,
                guarantee="exactly-once",
                restart=exponential_delay("200ms", "2s"),
            )
        )

    # The fault comes mid-run, with transactions open and committed before it (not in init).
    running: dict[str, Any] = {}

    def pipeline() -> None:
        try:
            running["result"] = work()
        except BaseException as exc:  # re-raised by finish()
            running["error"] = exc

    thread = threading.Thread(target=pipeline, name="eo-pipeline", daemon=True)
    thread.start()
    wait_for(lambda: sink.metrics()["transactions"] >= 3 or not thread.is_alive(), "3 transactions")

    def finish() -> Any:
        thread.join(CAP)
        assert not thread.is_alive(), "the pipeline did not finish: a hang"
        if "error" in running:
            raise running["error"]
        return running["result"]

    result = run_through(
        fault,
        proxy,
        finish,
        detected=lambda: sink.metrics()["timeouts"] >= 1,
        reset_bytes=20_000,
        stall=FLUSH_TIMEOUT + 5,
    )
    m = sink.metrics()
    print(f"{fault}: restarts {result.restarts} {result.restart_causes}; metrics {m}")  # -rP shows it
    ids = _ids(kafka_bootstrap, topic)  # read_committed
    assert sorted(ids) == list(range(PIPELINE_ROWS)), (len(ids), len(set(ids)), result.restart_causes)
    assert m["transactions"] >= 2, m
    # The fault was met: the producer reconnected, or a transactional call failed and the pipeline
    # restarted from its checkpoint.
    recoveries = m["reconnects"] + result.restarts
    if fault in ("reset", "blackhole", "stall"):
        assert recoveries >= 1, (m, result.restart_causes)
        assert fault == "reset" or m["timeouts"] >= 1, m
    else:
        assert recoveries == 0, (m, result.restart_causes)
    if fault == "reset":
        assert proxy.stats()["resets"] >= 1
