"""Workloads ``pulsar-produce`` and ``pubsub-publish``: the Pulsar and Pub/Sub sinks against the same
client used per message (``to_pylist`` + ``json.dumps`` + one send per row).

Both need their local server (``tests/services/pulsar.sh``, ``tests/services/pubsub.sh``); a method
whose server does not answer is listed as skipped. The workload rows are capped (the emulator is a
JVM and pulsar-lite persists to RocksDB): 200k rows for Pulsar, 50k for Pub/Sub (10k/5k with
``--quick``), and the per-row baselines run on a subset.

* ``arrowflow PulsarSink``: ``write`` per 64k-row batch (JSON kernel) then ``flush()`` (every send
  callback back). Producer batching on (1000 messages / 128 KB / 10 ms) for both methods.
* ``arrowflow PubSubSink``: ``write`` per batch then ``flush()``; client batching 1000 messages / 10 ms
  for both methods; every future resolved.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from typing import Any

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


register(
    Workload(
        name="pulsar-produce",
        description="8-column table -> JSON Pulsar messages (pulsar-lite on loopback)",
        setup=setup_pulsar,
        reference="arrowflow PulsarSink",
    )
)
register(
    Workload(
        name="pubsub-publish",
        description="8-column table -> JSON Pub/Sub messages (emulator on loopback)",
        setup=setup_pubsub,
        reference="arrowflow PubSubSink",
    )
)
