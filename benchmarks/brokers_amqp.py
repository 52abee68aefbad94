"""Workloads ``rabbitmq-sink``, ``rabbitmq-source``, ``activemq-sink`` and ``activemq-source`` against
RabbitMQ (127.0.0.1:``$RABBITMQ_PORT``, 5672, guest/guest) and ActiveMQ (STOMP 127.0.0.1:61613); see
tests/services.

Rows: the 8-column table, capped at 100k rows (3k with ``--quick``). Naive baselines are "the same
client, per message": ``to_pylist()`` + ``json.dumps(row)`` + one client call per row, on a subset.

* ``rabbitmq-sink``: ``RabbitMQSink`` (SelectConnection, pipelined publisher confirms, persistent,
  mandatory, a message id per message) vs the idiomatic baseline: the same with pika by hand: one
  ``SelectConnection`` in confirm mode, ``orjson.dumps`` + ``basic_publish`` of every row back to back
  (the sink's properties: persistent, JSON content type, message id, mandatory), then waiting until
  the broker's (multiple) acks cover the last delivery tag; and vs pika ``BlockingConnection`` with
  ``confirm_delivery()`` and ``basic_publish`` per row (each publish waits for its confirm: naive).
  Every method publishes into its own queue, purged at the start of each call; the check reads the
  queue of the warm-up call back (pika ``basic_consume``, nothing acknowledged) and compares the JSON
  rows with the table.
* ``rabbitmq-source``: ``RabbitMQSource`` (prefetch 0, ``Json.decode``) vs the idiomatic baseline
  ``basic_consume`` with the same prefetch (0: unlimited) on a ``BlockingConnection``, the callback
  collecting bodies, ``process_data_events`` until all arrived, ``orjson.loads`` per message +
  ``RecordBatch.from_pylist``; and vs ``basic_get`` per message (naive, a subset). Nothing is
  acknowledged: the queue is reread each round. Every method's rows are compared with the table.
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
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .checks import json_table, same_rows, text_schema
from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table
from .servers import port

RABBIT_URL = f"amqp://guest:guest@127.0.0.1:{port('RABBITMQ_PORT', 5672)}/%2F"
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


def _queue_bodies(name: str, expected: int) -> list[bytes]:
    """Every message of queue ``name`` (read with ``basic_consume``, none acknowledged: they stay)."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
    try:
        ch = conn.channel()
        bodies: list[bytes] = []
        ch.basic_consume(name, lambda _c, _m, _p, body: bodies.append(body), auto_ack=False)
        deadline = time.monotonic() + 60
        while len(bodies) < expected and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.5)
        conn.process_data_events(time_limit=0.5)  # anything beyond the expected count shows too
        return bodies
    finally:
        conn.close()


class _ConfirmPublisher:
    """pika by hand, the idiomatic way to publish with confirms: one ``SelectConnection`` in confirm
    mode, run by its I/O thread; :meth:`publish_all` publishes every body back to back on it and waits
    until the broker's acks (``multiple`` ones included) cover the last delivery tag."""

    def __init__(self, queue: str) -> None:
        import pika

        self.queue = queue
        self.tag = 0
        self.acked = 0
        self.nacked = 0
        self.done = threading.Event()
        self.target = 0
        ready = threading.Event()
        self.ch: Any = None

        def on_channel(ch: Any) -> None:
            def confirmed(_frame: Any) -> None:
                self.ch = ch
                ready.set()

            ch.confirm_delivery(ack_nack_callback=self._on_confirm, callback=confirmed)

        self.conn = pika.SelectConnection(
            pika.URLParameters(RABBIT_URL), on_open_callback=lambda c: c.channel(on_open_callback=on_channel)
        )
        self.thread = threading.Thread(target=self.conn.ioloop.start, daemon=True)
        self.thread.start()
        if not ready.wait(30):
            raise RuntimeError("pika: no confirm channel")

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if method.NAME != "Basic.Ack":
            self.nacked += 1
        self.acked = method.delivery_tag if method.multiple else max(self.acked, method.delivery_tag)
        if self.acked >= self.target:
            self.done.set()

    def publish_all(self, bodies: list[bytes], ids: list[str]) -> None:
        import pika

        self.done.clear()
        self.target = self.tag + len(bodies)

        def publish() -> None:
            publish_one, props = self.ch.basic_publish, pika.BasicProperties
            for body, mid in zip(bodies, ids, strict=True):
                publish_one(
                    "",
                    self.queue,
                    body,
                    props(delivery_mode=2, content_type="application/json", message_id=mid),
                    mandatory=True,
                )
            self.tag += len(bodies)

        self.conn.ioloop.add_callback_threadsafe(publish)
        if not self.done.wait(120) or self.nacked:
            raise RuntimeError(f"pika: {self.target - self.acked} unconfirmed, {self.nacked} nacked")

    def close(self) -> None:
        self.conn.ioloop.add_callback_threadsafe(self.conn.close)
        self.thread.join(10)


def setup_rabbitmq_sink(config: RunConfig) -> Prepared:
    import orjson
    import pika

    from arrowflow.connectors.rabbitmq import RabbitMQSink

    n = _rows(config)
    table = make_table(n, config.seed)
    batches = table.to_batches(max_chunksize=65_536)
    base = f"bench-{uuid.uuid4().hex[:8]}"
    queues = {k: f"{base}-{k}" for k in ("af", "confirms", "per_row")}
    for q in queues.values():
        _queue("add", q)
        atexit.register(lambda q=q: _queue("delete", q))
    sink = RabbitMQSink(RABBIT_URL, routing_key=queues["af"])
    py_n = config.subset(1_000 if config.quick else 5_000)
    py_table = table.slice(0, py_n)
    conn = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
    ch = conn.channel()
    ch.confirm_delivery()
    publisher = _ConfirmPublisher(queues["confirms"])
    calls = {"k": 0}

    def run_sink() -> int:
        _queue("purge", queues["af"])
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_confirms() -> int:
        _queue("purge", queues["confirms"])
        calls["k"] += 1
        dumps = orjson.dumps
        bodies: list[bytes] = []
        for b in table.to_batches(max_chunksize=10_000):
            bodies += [dumps(row) for row in b.to_pylist()]
        publisher.publish_all(bodies, [f"{calls['k']}-{i}" for i in range(n)])
        return n

    def run_per_message() -> int:
        _queue("purge", queues["per_row"])
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        for row in py_table.to_pylist():
            ch.basic_publish(
                "", queues["per_row"], json.dumps(row, default=str).encode(), props, mandatory=True
            )
        return py_n

    def landed(key: str, expected: pa.Table) -> Callable[[], str]:
        return lambda: same_rows(
            json_table(_queue_bodies(queues[key], expected.num_rows), expected.schema), expected, queues[key]
        )

    def teardown() -> None:
        sink.close()
        publisher.close()
        conn.close()

    return Prepared(
        methods={
            "arrowflow RabbitMQSink (pipelined confirms)": Method(
                run=run_sink, note="incl. a queue purge", check=landed("af", table)
            ),
            _RABBIT_CONFIRMS: Method(
                run=run_confirms,
                note="incl. a queue purge; the sink's message properties",
                target=Target(min_speedup=1),
                check=landed("confirms", table),
            ),
            "to_pylist + json.dumps + basic_publish per row (confirms)": Method(
                run=run_per_message, note=f"naive; on {py_n:,} rows", check=landed("per_row", py_table)
            ),
        },
        bytes_per_row=table.nbytes / n,
        teardown=teardown,
    )


_RABBIT_CONFIRMS = "orjson + basic_publish all, wait for confirms (SelectConnection)"
_RABBIT_CONSUME = "basic_consume (same prefetch) + orjson.loads + from_pylist"


def setup_rabbitmq_source(config: RunConfig) -> Prepared:
    import orjson
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
    text = text_schema(schema)
    py_n = config.subset(1_000 if config.quick else 5_000)
    prefetch = 0
    seen: dict[str, pa.Table] = {}

    def run_source() -> int:
        src = RabbitMQSource(RABBIT_URL, queue=q, format=Json(schema), prefetch=prefetch)
        reader = src.open(src.plan()[0])
        got, out = 0, []
        while got < n:
            b = reader.read_batch(10_000, 1.0)
            if b is not None:
                got += b.num_rows
                out.append(b)
        reader.close()  # unacknowledged: requeued for the next round
        seen["af"] = pa.Table.from_batches(out)
        return got

    def run_consume() -> int:
        conn = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
        ch = conn.channel()
        ch.basic_qos(prefetch_count=prefetch)
        bodies: list[bytes] = []
        ch.basic_consume(q, lambda _c, _m, _p, body: bodies.append(body), auto_ack=False)
        while len(bodies) < n:
            conn.process_data_events(time_limit=1.0)
        loads = orjson.loads
        out = [
            pa.RecordBatch.from_pylist([loads(b) for b in bodies[i : i + 10_000]], schema=text)
            for i in range(0, n, 10_000)
        ]
        conn.close()  # unacknowledged: requeued for the next round
        seen["consume"] = pa.Table.from_batches(out)
        return n

    def run_per_message() -> int:
        conn = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
        ch = conn.channel()
        rows = []
        for _ in range(py_n):
            _m, _p, body = ch.basic_get(q, auto_ack=False)
            rows.append(json.loads(body))
        seen["get"] = pa.Table.from_batches([pa.RecordBatch.from_pylist(rows, schema=text)])
        conn.close()
        return py_n

    def check(key: str, expected: pa.Table) -> Callable[[], str]:
        return lambda: same_rows(seen.pop(key), expected, f"{q} read by {key}")

    def check_subset(key: str) -> str:
        # Earlier rounds' readers close without acking, and RabbitMQ requeues their messages where it
        # can, not always in the original order: a subset read is any py_n distinct rows of the table.
        got = seen.pop(key)
        ids = pc.cast(got.column("id"), table.schema.field("id").type)
        return same_rows(got, table.filter(pc.is_in(table.column("id"), ids)), f"{q} read by {key}")

    return Prepared(
        methods={
            "arrowflow RabbitMQSource (Json.decode)": Method(run=run_source, check=check("af", table)),
            _RABBIT_CONSUME: Method(
                run=run_consume,
                note="prefetch 0 as the source; every message",
                target=Target(min_speedup=1),
                check=check("consume", table),
            ),
            "basic_get + json.loads per message + from_pylist": Method(
                run=run_per_message,
                note=f"naive; on {py_n:,} rows",
                check=lambda: check_subset("get"),
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
        idiomatic=(_RABBIT_CONFIRMS,),
    )
)
register(
    Workload(
        name="rabbitmq-source",
        description="RabbitMQ consume + JSON decode",
        setup=setup_rabbitmq_source,
        reference="arrowflow RabbitMQSource (Json.decode)",
        idiomatic=(_RABBIT_CONSUME,),
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
