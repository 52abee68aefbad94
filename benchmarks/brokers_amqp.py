"""Workloads ``rabbitmq-sink``, ``rabbitmq-source``, ``activemq-sink`` and ``activemq-source`` against
RabbitMQ (127.0.0.1:5672, guest/guest) and ActiveMQ (STOMP 127.0.0.1:61613); see tests/services.

Rows: the 8-column table, capped at 100k rows (3k with ``--quick``). Baselines are "the same client,
per message": ``to_pylist()`` + ``json.dumps(row)`` + one client call per row, on a subset.

* ``rabbitmq-sink``: ``RabbitMQSink`` (SelectConnection, pipelined publisher confirms, persistent) vs
  pika ``BlockingConnection`` with ``confirm_delivery()`` and ``basic_publish`` per row (each publish
  waits for its confirm). Target: >= 3x.
* ``rabbitmq-source``: ``RabbitMQSource`` (prefetch 0, ``Json.decode``) vs ``basic_get`` per message +
  ``json.loads`` + ``RecordBatch.from_pylist``. Nothing is acknowledged: the queue is reread each round.
* ``activemq-sink``: ``ActiveMQSink`` (SEND frames built with pyarrow compute, one socket write and one
  receipt per request) vs stomp.py ``send`` per row with a receipt on the last. Target: >= 3x.
* ``activemq-source``: ``ActiveMQSource`` (client-individual acks per batch) vs a stomp.py listener +
  ``json.loads`` per message; both rounds then put the rows back with ``ActiveMQSink`` (included in
  the time of both, so the ratio understates the difference).
"""

from __future__ import annotations

import atexit
import json
import threading
import time
import uuid
from typing import Any

import pyarrow as pa

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
STOMP = ("127.0.0.1", 61613)


def _rows(config: RunConfig) -> int:
    return min(config.rows, 3_000 if config.quick else 100_000)


def _queue(op: str, name: str) -> int:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
    try:
        ch = conn.channel()
        if op == "add":
            ch.queue_declare(name, durable=True)
        elif op == "purge":
            ch.queue_purge(name)
        else:
            ch.queue_delete(name)
        return 0
    finally:
        conn.close()


def setup_rabbitmq_sink(config: RunConfig) -> Prepared:
    import pika

    from arrowflow.connectors.rabbitmq import RabbitMQSink

    n = _rows(config)
    table = make_table(n, config.seed)
    batches = table.to_batches(max_chunksize=65_536)
    q = f"bench-{uuid.uuid4().hex[:8]}"
    _queue("add", q)
    atexit.register(lambda: _queue("delete", q))
    sink = RabbitMQSink(RABBIT_URL, routing_key=q)
    py_n = config.subset(1_000 if config.quick else 5_000)
    py_table = table.slice(0, py_n)
    conn = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
    ch = conn.channel()
    ch.confirm_delivery()

    def run_sink() -> int:
        for b in batches:
            sink.write(b)
        sink.flush()
        _queue("purge", q)
        return n

    def run_per_message() -> int:
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        for row in py_table.to_pylist():
            ch.basic_publish("", q, json.dumps(row, default=str).encode(), props, mandatory=True)
        _queue("purge", q)
        return py_n

    return Prepared(
        methods={
            "arrowflow RabbitMQSink (pipelined confirms)": Method(run=run_sink, note="incl. a queue purge"),
            "to_pylist + json.dumps + basic_publish per row (confirms)": Method(
                run=run_per_message, note=f"on {py_n:,} rows", target=Target(min_speedup=3)
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


def setup_rabbitmq_source(config: RunConfig) -> Prepared:
    import pika

    from arrowflow.connectors.rabbitmq import RabbitMQSink, RabbitMQSource
    from arrowflow.formats import Json

    n = _rows(config)
    table = make_table(n, config.seed)
    q = f"bench-{uuid.uuid4().hex[:8]}"
    _queue("add", q)
    atexit.register(lambda: _queue("delete", q))
    with RabbitMQSink(RABBIT_URL, routing_key=q) as sink:
        sink.write_table(table)
    schema = table.schema
    py_n = config.subset(1_000 if config.quick else 5_000)

    def run_source() -> int:
        src = RabbitMQSource(RABBIT_URL, queue=q, format=Json(schema), prefetch=0)
        reader = src.open(src.plan()[0])
        got = 0
        while got < n:
            b = reader.read_batch(10_000, 1.0)
            got += b.num_rows if b is not None else 0
        reader.close()  # unacknowledged: requeued for the next round
        return got

    def run_per_message() -> int:
        conn = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
        ch = conn.channel()
        rows = []
        for _ in range(py_n):
            _m, _p, body = ch.basic_get(q, auto_ack=False)
            rows.append(json.loads(body))
        pa.RecordBatch.from_pylist(rows)
        conn.close()
        return py_n

    return Prepared(
        methods={
            "arrowflow RabbitMQSource (Json.decode)": Method(run=run_source),
            "basic_get + json.loads per message + from_pylist": Method(
                run=run_per_message, note=f"on {py_n:,} rows"
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


def setup_activemq_sink(config: RunConfig) -> Prepared:
    import stomp

    from arrowflow.connectors.activemq import ActiveMQSink, ActiveMQSource

    n = _rows(config)
    table = make_table(n, config.seed)
    batches = table.to_batches(max_chunksize=65_536)
    dest = f"/queue/bench-{uuid.uuid4().hex[:8]}"
    sink = ActiveMQSink(*STOMP, destination=dest)
    py_n = config.subset(1_000 if config.quick else 5_000)
    py_table = table.slice(0, py_n)
    conn = stomp.Connection12([STOMP], auto_decode=False)
    done = threading.Event()

    class L(stomp.ConnectionListener):
        def on_receipt(self, frame: Any) -> None:
            done.set()

    conn.set_listener("b", L())
    conn.connect(wait=True)

    def drain() -> None:
        src = ActiveMQSource(*STOMP, destination=dest, ack="client")
        reader = src.open(src.plan()[0])
        idle = time.monotonic()
        while time.monotonic() - idle < 0.5:
            if reader.read_batch(50_000, 0.2) is not None:
                reader.commit(reader.snapshot())
                idle = time.monotonic()
        reader.close()

    atexit.register(drain)

    def run_sink() -> int:
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_per_message() -> int:
        rows = py_table.to_pylist()
        done.clear()
        for i, row in enumerate(rows):
            extra = {"receipt": uuid.uuid4().hex} if i == len(rows) - 1 else {}
            conn.send(dest, json.dumps(row, default=str), headers={"persistent": "true", **extra})
        done.wait(60)
        return py_n

    return Prepared(
        methods={
            "arrowflow ActiveMQSink (frames via pyarrow, 1 receipt/request)": Method(run=run_sink),
            "to_pylist + json.dumps + stomp send per row": Method(
                run=run_per_message, note=f"on {py_n:,} rows", target=Target(min_speedup=3)
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


def setup_activemq_source(config: RunConfig) -> Prepared:
    import stomp

    from arrowflow.connectors.activemq import ActiveMQSink, ActiveMQSource
    from arrowflow.formats import Json

    n = config.subset(2_000 if config.quick else 20_000)
    table = make_table(n, config.seed)
    dest = f"/queue/bench-{uuid.uuid4().hex[:8]}"
    sink = ActiveMQSink(*STOMP, destination=dest)
    sink.write_table(table)
    sink.flush()
    schema = table.schema

    def run_source() -> int:
        src = ActiveMQSource(*STOMP, destination=dest, format=Json(schema))
        reader = src.open(src.plan()[0])
        got = 0
        while got < n:
            b = reader.read_batch(10_000, 1.0)
            if b is not None:
                got += b.num_rows
                reader.commit(reader.snapshot())
        reader.close()
        sink.write_table(table)
        sink.flush()
        return got

    def run_per_message() -> int:
        rows: list[Any] = []
        finished = threading.Event()
        conn = stomp.Connection12([STOMP], auto_decode=False)

        class L(stomp.ConnectionListener):
            def on_message(self, frame: Any) -> None:
                rows.append(json.loads(frame.body))
                conn.ack(frame.headers["ack"])
                if len(rows) >= n:
                    finished.set()

        conn.set_listener("b", L())
        conn.connect(wait=True)
        conn.subscribe(dest, id="1", ack="client-individual", headers={"activemq.prefetchSize": "10000"})
        finished.wait(120)
        conn.disconnect()
        pa.RecordBatch.from_pylist(rows)
        sink.write_table(table)
        sink.flush()
        return n

    return Prepared(
        methods={
            "arrowflow ActiveMQSource (acks per batch)": Method(run=run_source, note="incl. refill"),
            "listener + json.loads + ack per message + from_pylist": Method(
                run=run_per_message, note="incl. refill"
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


register(
    Workload(
        name="rabbitmq-sink",
        description="RabbitMQ publish with confirms",
        setup=setup_rabbitmq_sink,
        reference="arrowflow RabbitMQSink (pipelined confirms)",
    )
)
register(
    Workload(
        name="rabbitmq-source",
        description="RabbitMQ consume + JSON decode",
        setup=setup_rabbitmq_source,
        reference="arrowflow RabbitMQSource (Json.decode)",
    )
)
register(
    Workload(
        name="activemq-sink",
        description="ActiveMQ STOMP SEND, persistent",
        setup=setup_activemq_sink,
        reference="arrowflow ActiveMQSink (frames via pyarrow, 1 receipt/request)",
        idiomatic=("to_pylist + json.dumps + stomp send per row",),
    )
)
register(
    Workload(
        name="activemq-source",
        description="ActiveMQ STOMP consume + JSON decode",
        setup=setup_activemq_source,
        reference="arrowflow ActiveMQSource (acks per batch)",
        idiomatic=("listener + json.loads + ack per message + from_pylist",),
    )
)
