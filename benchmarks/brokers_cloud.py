"""Workloads ``pulsar-produce`` / ``pubsub-publish`` (the Pulsar and Pub/Sub sinks against the same
client used per message: ``to_pylist`` + ``json.dumps`` + one send per row) and ``pulsar-source`` /
``pubsub-source`` (the sources against the client's per-message receive + ``json.loads`` + ack, then
``RecordBatch.from_pylist``).

Both need their local server (``tests/services/pulsar.sh``, ``tests/services/pubsub.sh``); a method
whose server does not answer is listed as skipped. The workload rows are capped (the emulator and
Apache Pulsar standalone are JVMs with small heaps here): 200k rows for Pulsar, 50k for Pub/Sub
(10k/5k with ``--quick``), and the per-row baselines run on a subset.

* ``arrowflow PulsarSink``: ``write`` per 64k-row batch (JSON kernel) then ``flush()`` (every send
  callback back). Producer batching on (1000 messages / 128 KB / 10 ms) for both methods.
* ``arrowflow PubSubSink``: ``write`` per batch then ``flush()`` (no ordering keys: raw-protobuf
  ``Publish`` RPCs of 1000 messages, all in flight at once); the baseline uses the client library's
  ``publish`` (batching 1000 messages / 10 ms) and resolves every future.
* ``pulsar-source``: 100k messages (10k ``--quick``); each call subscribes anew (exclusive) from the
  earliest message. Idiomatic baseline: ``batch_receive`` with the source's receiver queue and batch
  receive policy (up to 1000 messages or 20 ms per call), ``orjson.loads`` per message +
  ``from_pylist`` per call, one ``acknowledge_cumulative`` of the last message at the end (the source
  acknowledges on commit, once per call here); like the source's call, each call is a whole read
  with its own client (created, subscribed, read, acknowledged, closed). Naive:
  ``consumer.receive()`` + ``json.loads`` + ``acknowledge`` per message, on a subset. Every method's
  rows are compared with the table.
* ``pubsub-source``: 10k messages (5k ``--quick``) published once to a topic with one subscription
  per timed call. Baseline: ``SubscriberClient.subscribe`` with a callback doing ``json.loads`` +
  ``ack`` per message (the library's streaming pull and lease management), on the first 2k (1k).
  The emulator's StreamingPull hands out 100 messages about every 50 ms (~2k msgs/s, measured with
  both methods; a unary ``pull`` loop reaches ~23k/s), so this workload measures the emulator.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .checks import same_rows, text_schema
from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

_PULSAR = f"pulsar://127.0.0.1:{os.environ.get('PULSAR_PORT', '6650')}"
_PUBSUB = f"127.0.0.1:{os.environ.get('PUBSUB_PORT', '8085')}"


def _answers(hostport: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    try:
        socket.create_connection((host.replace("pulsar://", ""), int(port)), timeout=1).close()
        return True
    except OSError:
        return False


def _per_row_json(table: Any, send: Any, n: int) -> None:
    dumps = json.dumps
    for start in range(0, n, 10_000):
        for row in table.slice(start, min(10_000, n - start)).to_pylist():
            send(dumps(row, default=str).encode())


def setup_pulsar(config: RunConfig) -> Prepared:
    n = min(config.rows, 10_000 if config.quick else 200_000)
    table = make_table(n, config.seed)
    if not _answers(_PULSAR.replace("pulsar://", "")):
        skip = Method(skip="pulsar not answering (tests/services/pulsar.sh start)")
        return Prepared(
            methods={"arrowflow PulsarSink": skip, "to_pylist + json.dumps + send_async per row": skip},
            bytes_per_row=1,
        )
    import pulsar

    from arrowflow.connectors.pulsar_broker import PulsarSink

    topic = f"persistent://public/default/bench-{uuid.uuid4().hex[:8]}"
    sink = PulsarSink(_PULSAR, topic=topic)
    batches = table.to_batches(max_chunksize=65_536)
    client = pulsar.Client(_PULSAR, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    producer = client.create_producer(
        topic + "-row",
        batching_enabled=True,
        batching_max_messages=1000,
        batching_max_allowed_size_in_bytes=128 * 1024,
        batching_max_publish_delay_ms=10,
        block_if_queue_full=True,
        max_pending_messages=5000,
    )
    py_n = config.subset(5_000 if config.quick else 20_000)
    failures: list[Any] = []

    def run_sink() -> int:
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_per_row() -> int:
        def cb(res: Any, _mid: Any) -> None:
            if res != pulsar.Result.Ok:
                failures.append(res)

        _per_row_json(table, lambda v: producer.send_async(v, cb), py_n)
        producer.flush()
        assert not failures, failures[:3]
        return py_n

    run_sink.keep = (client, producer)  # type: ignore[attr-defined]
    return Prepared(
        methods={
            "arrowflow PulsarSink": Method(run=run_sink, note=f"{n:,} rows"),
            "to_pylist + json.dumps + send_async per row": Method(
                run=run_per_row, note=f"on {py_n:,} rows, scaled", target=Target(min_speedup=3)
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


def setup_pubsub(config: RunConfig) -> Prepared:
    n = min(config.rows, 5_000 if config.quick else 50_000)
    table = make_table(n, config.seed)
    if not _answers(_PUBSUB):
        skip = Method(skip="pubsub emulator not answering (tests/services/pubsub.sh start)")
        return Prepared(
            methods={"arrowflow PubSubSink": skip, "to_pylist + json.dumps + publish per row": skip},
            bytes_per_row=1,
        )
    from google.cloud.pubsub_v1 import types

    from arrowflow.connectors.gcp_pubsub import PubSubSink, publisher_client

    project = "arrowflow-bench"
    topic = f"projects/{project}/topics/bench-{uuid.uuid4().hex[:8]}"
    publisher = publisher_client(
        _PUBSUB, batch_settings=types.BatchSettings(max_messages=1000, max_latency=0.01)
    )
    publisher.create_topic(name=topic)
    sink = PubSubSink(project, topic, emulator_host=_PUBSUB)
    batches = table.to_batches(max_chunksize=65_536)
    py_n = config.subset(2_000 if config.quick else 10_000)

    def run_sink() -> int:
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_per_row() -> int:
        futures: list[Any] = []
        _per_row_json(table, lambda v: futures.append(publisher.publish(topic, v)), py_n)
        for f in futures:
            f.result()
        return py_n

    return Prepared(
        methods={
            "arrowflow PubSubSink": Method(run=run_sink, note=f"{n:,} rows"),
            "to_pylist + json.dumps + publish per row": Method(
                run=run_per_row, note=f"on {py_n:,} rows, scaled", target=Target(min_speedup=3)
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


_PULSAR_BATCH = "batch_receive + orjson.loads + from_pylist, ack cumulative"


def setup_pulsar_source(config: RunConfig) -> Prepared:
    """A topic of ``n`` JSON messages; every call reads it all on a new subscription (earliest)."""
    n = min(config.rows, 10_000 if config.quick else 100_000)
    table = make_table(n, config.seed)
    names = ("arrowflow PulsarSource", _PULSAR_BATCH, "receive + json.loads + acknowledge per message")
    if not _answers(_PULSAR.replace("pulsar://", "")):
        skip = Method(skip="pulsar not answering (tests/services/pulsar.sh start)")
        return Prepared(methods=dict.fromkeys(names, skip), bytes_per_row=1)
    import orjson
    import pulsar

    from arrowflow.connectors.pulsar_broker import PulsarSink, PulsarSource
    from arrowflow.formats import Json

    topic = f"persistent://public/default/bench-src-{uuid.uuid4().hex[:8]}"
    with PulsarSink(_PULSAR, topic=topic) as sink:
        sink.write_table(table)
    schema = table.schema
    text = text_schema(schema)
    py_n = config.subset(2_000 if config.quick else 10_000)
    client = pulsar.Client(_PULSAR, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    calls = {"k": 0}
    seen: dict[str, pa.Table] = {}
    options = PulsarSource(_PULSAR, topics=topic, subscription="unused")

    def run_source() -> int:
        calls["k"] += 1
        src = PulsarSource(_PULSAR, topics=topic, subscription=f"af{calls['k']}", format=Json(schema))
        reader = src.open(src.plan()[0])
        got, out = 0, []
        while got < n:
            b = reader.read_batch(10_000, 1.0)
            if b is not None:
                got += b.num_rows
                out.append(b)
        reader.commit(reader.snapshot())
        reader.close()
        seen["af"] = pa.Table.from_batches(out)
        return got

    def run_batch_receive() -> int:
        calls["k"] += 1
        # A whole read, as the source's call does: its own client, the subscription, read, ack, close.
        own = pulsar.Client(_PULSAR, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        # The source's consumer options: receiver queue and batch receive policy.
        consumer = own.subscribe(
            topic,
            f"br{calls['k']}",
            initial_position=pulsar.InitialPosition.Earliest,
            receiver_queue_size=options.receiver_queue_size,
            batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(
                options.receiver_queue_size, -1, max(1, int(options.batch_receive_timeout * 1000))
            ),
        )
        loads, got, out, last = orjson.loads, 0, [], None
        while got < n:
            msgs = consumer.batch_receive()
            if not msgs:
                continue
            out.append(pa.RecordBatch.from_pylist([loads(m.data()) for m in msgs], schema=text))
            got += len(msgs)
            last = msgs[-1]
        consumer.acknowledge_cumulative(last)
        consumer.close()
        own.close()
        seen["batch"] = pa.Table.from_batches(out)
        return got

    def run_per_message() -> int:
        calls["k"] += 1
        consumer = client.subscribe(
            topic,
            f"pm{calls['k']}",
            initial_position=pulsar.InitialPosition.Earliest,
            receiver_queue_size=1000,
        )
        rows = []
        for _ in range(py_n):
            msg = consumer.receive(10_000)
            rows.append(json.loads(msg.data()))
            consumer.acknowledge(msg)
        seen["pm"] = pa.Table.from_batches([pa.RecordBatch.from_pylist(rows, schema=text)])
        consumer.close()
        return py_n

    def check(key: str, expected: pa.Table) -> Callable[[], str]:
        return lambda: same_rows(seen.pop(key), expected, f"{topic} read by {key}")

    run_source.keep = client  # type: ignore[attr-defined]
    return Prepared(
        methods={
            names[0]: Method(run=run_source, note=f"{n:,} msgs", check=check("af", table)),
            names[1]: Method(
                run=run_batch_receive,
                note=f"{n:,} msgs, the source's receiver queue",
                target=Target(min_speedup=1),
                check=check("batch", table),
            ),
            names[2]: Method(
                run=run_per_message,
                note=f"naive; on {py_n:,} msgs, scaled",
                check=check("pm", table.slice(0, py_n)),
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


def setup_pubsub_source(config: RunConfig) -> Prepared:
    """``n`` JSON messages published once to a topic with one subscription per timed call (Pub/Sub is
    not replayable: a call drains and acknowledges its own subscription)."""
    n = min(config.rows, 5_000 if config.quick else 10_000)
    table = make_table(n, config.seed)
    if not _answers(_PUBSUB):
        skip = Method(skip="pubsub emulator not answering (tests/services/pubsub.sh start)")
        return Prepared(
            methods={
                "arrowflow PubSubSource": skip,
                "subscribe callback + json.loads + ack per message": skip,
            },
            bytes_per_row=1,
        )
    import threading

    from arrowflow.connectors.gcp_pubsub import PubSubSink, PubSubSource, publisher_client, subscriber_client
    from arrowflow.formats import Json

    project = "arrowflow-bench"
    tag = uuid.uuid4().hex[:8]
    topic = f"projects/{project}/topics/bench-src-{tag}"
    publisher_client(_PUBSUB).create_topic(name=topic)
    py_n = config.subset(1_000 if config.quick else 2_000)
    # Calls per method: one warm-up + rounds, with room for a repeated short sample.
    calls = 2 * (config.rounds + 2)
    subscriber = subscriber_client(_PUBSUB)
    subs = {
        kind: [f"projects/{project}/subscriptions/bench-{tag}-{kind}{i}" for i in range(calls)]
        for kind in "ap"
    }
    for name in subs["a"] + subs["p"]:
        subscriber.create_subscription(request={"name": name, "topic": topic, "ack_deadline_seconds": 60})
    with PubSubSink(project, topic, emulator_host=_PUBSUB) as sink:
        sink.write_table(table)
    schema = table.schema

    def run_source() -> int:
        src = PubSubSource(project, subs["a"].pop(), emulator_host=_PUBSUB, format=Json(schema))
        reader = src.open(src.plan()[0])
        got = 0
        while got < n:
            b = reader.read_batch(10_000, 1.0)
            if b is not None:
                got += b.num_rows
                reader.commit(reader.snapshot())
        reader.close()
        return got

    def run_per_message() -> int:
        rows: list[Any] = []
        lock = threading.Lock()
        finished = threading.Event()

        def callback(message: Any) -> None:
            row = json.loads(message.data)
            message.ack()
            with lock:
                rows.append(row)
                if len(rows) >= py_n:
                    finished.set()

        future = subscriber.subscribe(subs["p"].pop(), callback)
        finished.wait(120)
        future.cancel()
        pa.RecordBatch.from_pylist(rows[:py_n])
        return py_n

    return Prepared(
        methods={
            "arrowflow PubSubSource": Method(run=run_source, note=f"{n:,} msgs"),
            "subscribe callback + json.loads + ack per message": Method(
                run=run_per_message, note=f"first {py_n:,} of {n:,} msgs"
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


register(
    Workload(
        name="pulsar-produce",
        description="8-column table -> JSON Pulsar messages (Apache Pulsar 4.0 standalone on loopback)",
        setup=setup_pulsar,
        reference="arrowflow PulsarSink",
        idiomatic=("to_pylist + json.dumps + send_async per row",),
    )
)
register(
    Workload(
        name="pubsub-publish",
        description="8-column table -> JSON Pub/Sub messages (emulator on loopback)",
        setup=setup_pubsub,
        reference="arrowflow PubSubSink",
        idiomatic=("to_pylist + json.dumps + publish per row",),
    )
)
register(
    Workload(
        name="pulsar-source",
        description="Pulsar topic of JSON messages -> batches (new exclusive subscription per call)",
        setup=setup_pulsar_source,
        reference="arrowflow PulsarSource",
        idiomatic=(_PULSAR_BATCH,),
    )
)
register(
    Workload(
        name="pubsub-source",
        description="Pub/Sub subscription of JSON messages -> batches (emulator on loopback)",
        setup=setup_pubsub_source,
        reference="arrowflow PubSubSource",
        idiomatic=("subscribe callback + json.loads + ack per message",),
    )
)
