"""RabbitMQSink and RabbitMQSource against the real RabbitMQ through the fault proxy (issue 19): each
fault of ``tests/faults/scenario.py`` while messages flow; nothing is lost (the sink is at-least-once:
a retried request may publish again; the source with ``dedup="message_id"`` returns each message
once), a silent connection is noticed by ``confirm_timeout`` (sink) or by AMQP heartbeats (source)
instead of hanging the run, and the metrics count the retries, reconnects and timeouts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from proxy import FaultProxy
from scenario import CAP, FAULTS, check_recovered, run_through, wait_for, write_through

from arrowflow.connectors.rabbitmq import RabbitMQSink, RabbitMQSource
from arrowflow.testing import make_table
from arrowflow.writer import BatchingConfig

SERVICE = "rabbitmq"  # the proxy fixture (conftest.py) fronts this server
TIMEOUT = 3.0  # the sink's confirm_timeout
HEARTBEAT = 2  # the source's AMQP heartbeat: pika drops a silent connection within 2 * (2 + 5) s
#: A stall the source notices (it must outlast two heartbeat check intervals); the sink's is the default.
SOURCE_STALL = 2 * (HEARTBEAT + 5) + 4.0
ROWS = 3000


def _through(proxy: FaultProxy, url: str) -> str:
    return url.replace(url.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{proxy.port}")


def _channel(url: str) -> Any:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    return conn, conn.channel()


def _depth(url: str, queue: str) -> int:
    conn, ch = _channel(url)
    try:
        return int(ch.queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def _ids(url: str, queue: str) -> list[int]:
    """The ``id`` of every message in the queue (read on the broker's own port, not acknowledged)."""
    src = RabbitMQSource(url, queue=queue, bounded=True, prefetch=0)
    return [json.loads(v)["id"] for v in src.read_all().column("value").to_pylist()]


@pytest.mark.parametrize("fault", FAULTS)
def test_sink_loses_nothing_through(fault: str, proxy: FaultProxy, queue: str, rabbitmq_url: str) -> None:
    rows = make_table(ROWS).select(["id", "name"])
    sink = RabbitMQSink(
        _through(proxy, rabbitmq_url),
        routing_key=queue,
        confirm_timeout=TIMEOUT,
        batching=BatchingConfig(
            max_request_rows=250, max_in_flight=2, max_attempts=None, max_retry_time=CAP, max_backoff=0.5
        ),
    )
    m = write_through(fault, proxy, sink, rows, reset_bytes=20_000)
    ids = _ids(rabbitmq_url, queue)
    assert set(ids) == set(rows.column("id").to_pylist())  # nothing lost (at-least-once)
    if fault in ("latency", "bandwidth"):
        assert len(ids) == ROWS and m["retries"] == 0, (len(ids), m)  # nothing failed: no copy
    assert m["rows_written"] >= ROWS and m["rows_failed"] == 0, m
    check_recovered(fault, m, proxy)


@pytest.mark.parametrize("fault", FAULTS)
def test_source_reads_each_message_once_through(
    fault: str, proxy: FaultProxy, queue: str, rabbitmq_url: str
) -> None:
    import pika

    conn, ch = _channel(rabbitmq_url)
    for i in range(ROWS):
        ch.basic_publish("", queue, b"%d" % i, pika.BasicProperties(message_id=str(i), delivery_mode=2))
    conn.close()
    src = RabbitMQSource(
        _through(proxy, rabbitmq_url),
        queue=queue,
        prefetch=500,
        dedup="message_id",
        connect_options={"heartbeat": HEARTBEAT},
    )
    reader = src.open(src.plan()[0])
    seen: list[int] = []

    def read(until: int) -> None:
        def more() -> bool:
            batch = reader.read_batch(200, 0.2)
            if batch is not None:
                seen.extend(int(v) for v in batch.column("value").to_pylist())
                reader.commit(reader.snapshot())
            return len(set(seen)) >= until

        wait_for(more, f"{until} messages read")

    try:
        read(ROWS // 3)  # a third before the fault
        run_through(
            fault,
            proxy,
            lambda: read(ROWS),
            detected=lambda: src.metrics()["timeouts"] >= 1,
            stall=SOURCE_STALL,
            reset_direction="down",  # cut a delivery: the broker requeues what was not acknowledged
            reset_bytes=3000,
        )
    finally:
        reader.close()  # what was not acknowledged goes back to the queue
    m = src.metrics()
    # every message was acknowledged once read (each read is committed at once): nothing went back
    assert _depth(rabbitmq_url, queue) == 0
    assert sorted(seen) == list(range(ROWS))  # every message, once (dedup drops the redeliveries)
    if fault in ("reset", "blackhole", "stall"):
        assert m["reconnects"] >= 1, m
    if fault in ("blackhole", "stall"):
        assert m["timeouts"] >= 1, m
    if fault in ("latency", "bandwidth"):
        assert m["reconnects"] == 0, m


def test_source_dedup_drops_redeliveries_of_an_acknowledgement_lost_with_its_connection(
    proxy: FaultProxy, queue: str, rabbitmq_url: str
) -> None:
    """The acknowledgement of a commit is written into a silent connection, which then dies: the
    broker never got it and redelivers the messages. Their ids must still be known to drop them, so a
    commit forgets them only once the broker answered a request sent after the ack (regression: the
    ids were forgotten as soon as the ack was written, and the redeliveries came out again)."""
    import pika

    n = 100
    conn, ch = _channel(rabbitmq_url)
    for i in range(n):
        ch.basic_publish("", queue, b"%d" % i, pika.BasicProperties(message_id=str(i), delivery_mode=2))
    conn.close()
    src = RabbitMQSource(
        _through(proxy, rabbitmq_url),
        queue=queue,
        dedup="message_id",
        connect_options={"heartbeat": HEARTBEAT},
    )
    reader = src.open(src.plan()[0])
    seen: list[int] = []

    def read() -> int:
        batch = reader.read_batch(200, 0.2)
        if batch is not None:
            seen.extend(int(v) for v in batch.column("value").to_pylist())
        return len(seen)

    try:
        wait_for(lambda: read() >= n, f"{n} messages read")
        proxy.blackhole()  # the ack below is written, never forwarded
        reader.commit(reader.snapshot())  # returns once the heartbeat gives the connection up
        proxy.reset_all()  # the connection dies with the ack in it
        proxy.heal()
        # the broker redelivers all n; the reader reconnects, reads and acknowledges them
        wait_for(
            lambda: (
                (read(), reader.commit(reader.snapshot()), _depth(rabbitmq_url, queue))[2] == 0
                and src.metrics()["reconnects"] >= 1
            ),
            "the redeliveries",
        )
        for _ in range(5):  # nothing more comes out
            read()
            reader.commit(reader.snapshot())
    finally:
        reader.close()
    assert sorted(seen) == list(range(n)), f"{len(seen) - n} redeliveries came out again"
