"""Workloads ``kafka-produce`` and ``kafka-decode`` against the librdkafka mock cluster (in process).

``kafka-produce``: the 8-column table with a 16-byte key per row, JSON values.

* ``arrowflow KafkaSink``: ``KafkaSink.write`` per 64k-row batch (JSON kernel + murmur2 kernel +
  the compiled produce loop ``arrowflow._ext.kafka_produce``, which cuts value/key ``bytes`` straight
  from the Arrow buffers), then ``flush()``.
* ``bare produce() over pre-serialized bytes``: the ceiling: values and keys serialized beforehand
  (untimed), one ``produce(topic, value, key)`` per message, then ``flush()``.
* ``to_pylist + orjson + produce per row``: the usual Python path, on a subset.
* ``arrowflow KafkaSink exactly-once``: the transactional sink (acks=all, idempotent), one transaction
  per round with its commit marker and its journal (every row also written to local disk, fsynced):
  what exactly-once costs next to the at-least-once path.

``kafka-decode``: what the source does with a batch of consumed JSON values.

* ``arrowflow Json.decode``: one ``pa.array(list of bytes)`` (what the source builds from the
  consumed messages) + :meth:`arrowflow.formats.Json.decode` (its flat fast path: the compiled scan
  ``arrowflow._ext.json_decode`` + Arrow casts).
* ``json.loads + RecordBatch.from_pylist``: one dict per message, on a subset.

Producers use ``linger.ms=5`` and ``acks=1`` (as the baselines in BASELINES.md). The mock cluster
keeps only the last few MB per partition, which does not matter for producing.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_keys, make_table

_PRODUCER = {"linger.ms": 5, "acks": 1, "log_level": 3, "queue.buffering.max.messages": 1_000_000}


def _delete_bench_topics(bootstrap: str) -> None:
    import time

    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    old = [t for t in admin.list_topics(timeout=10).topics if t.startswith("bench-")]
    for fut in admin.delete_topics(old).values() if old else ():
        fut.result(60)
    deadline = time.monotonic() + 60
    while old and set(old) & set(admin.list_topics(timeout=10).topics):
        if time.monotonic() > deadline:
            raise RuntimeError(f"kafka: the old benchmark topics {old} were not deleted")
        time.sleep(0.2)


def _mock_cluster() -> tuple[Any, str]:
    """``(holder, bootstrap)`` of the cluster to produce into: librdkafka's in-process mock cluster
    (alive while ``holder`` is), or, when ``ARROWFLOW_BENCH_KAFKA_BOOTSTRAP`` is set (e.g. to
    ``127.0.0.1:9092``, the Apache Kafka broker of ``tests/services/kafka.sh``), that real broker, on
    which the ``bench-*`` topics of an earlier run are deleted first (the output checks count the
    messages in a topic: each run needs empty ones, as the mock cluster gives)."""
    import os

    from confluent_kafka import Producer

    real = os.environ.get("ARROWFLOW_BENCH_KAFKA_BOOTSTRAP")
    if real:
        _delete_bench_topics(real)
        return None, real
    holder = Producer({"test.mock.num.brokers": 1, "log_level": 3})
    md = holder.list_topics(timeout=10)
    return holder, ",".join(f"{b.host}:{b.port}" for b in md.brokers.values())


def setup_produce(config: RunConfig) -> Prepared:
    import orjson
    from confluent_kafka import Producer

    from arrowflow.connectors.kafka import KafkaSink

    holder, bootstrap = _mock_cluster()
    table = make_table(config.rows, config.seed)
    keys = make_keys(config.rows, config.seed, 16, 16)
    keyed = table.append_column("key", keys)
    batches = keyed.to_batches(max_chunksize=65_536)
    n = keyed.num_rows
    sink = KafkaSink(
        bootstrap, topic="bench-af", key_columns=["key"], guarantee="none", config=_PRODUCER | {"acks": 1}
    )
    from arrowflow.formats import Json

    values = Json().encode(table.to_batches()[0] if table.num_columns else table).payloads
    pre_values = values.to_pylist()
    pre_keys = keys.to_pylist()
    bare = Producer({"bootstrap.servers": bootstrap, **_PRODUCER})
    per_row = Producer({"bootstrap.servers": bootstrap, **_PRODUCER})
    py_n = config.subset(20_000 if config.quick else 200_000)
    py_table = table.slice(0, py_n)
    py_keys = pre_keys[:py_n]

    def run_sink() -> int:
        for b in batches:
            sink.write(b)
        sink._wait_delivered()
        return n

    def run_bare() -> int:
        produce, poll = bare.produce, bare.poll
        for v, k in zip(pre_values, pre_keys, strict=True):
            try:
                produce("bench-bare", v, k)
            except BufferError:
                poll(0.05)
                produce("bench-bare", v, k)
        bare.flush(60)
        return n

    def run_per_row() -> int:
        produce, poll, dumps = per_row.produce, per_row.poll, orjson.dumps
        for start in range(0, py_n, 10_000):
            rows = py_table.slice(start, 10_000).to_pylist()
            for row, k in zip(rows, py_keys[start : start + 10_000], strict=True):
                v = dumps(row)
                try:
                    produce("bench-row", v, k)
                except BufferError:
                    poll(0.05)
                    produce("bench-row", v, k)
        per_row.flush(60)
        return py_n

    # Exactly-once: one transaction per round, with the commit marker and the journal a checkpointed
    # pipeline gives it (Arrow IPC in a temporary directory, fsynced at prepare_commit).
    journal_dir = Path(tempfile.mkdtemp(prefix="arrowflow-bench-kafka-"))
    atexit.register(shutil.rmtree, journal_dir, True)
    eos = KafkaSink(
        bootstrap,
        topic="bench-eos",
        key_columns=["key"],
        guarantee="exactly-once",
        transactional_id_prefix="bench-eos",
        config={k: v for k, v in _PRODUCER.items() if k != "acks"},
    )
    eos.attach_state_dir(journal_dir)  # type: ignore[attr-defined]
    eos.recover([])  # type: ignore[attr-defined]

    def run_eos() -> int:
        for b in batches:
            eos.write(b)
        eos.commit(eos.prepare_commit())  # type: ignore[attr-defined]
        return n

    run_sink.holder = holder  # type: ignore[attr-defined]  # keeps the mock cluster alive
    methods = {
        "arrowflow KafkaSink": Method(run=run_sink),
        "arrowflow KafkaSink exactly-once": Method(
            run=run_eos, note="one transaction + journal fsync per round (acks=all)"
        ),
        "bare produce() over pre-serialized bytes": Method(
            run=run_bare, note="values/keys serialized untimed", target=Target(min_speedup=0.8)
        ),
        "to_pylist + orjson + produce per row": Method(
            run=run_per_row, note=f"on {py_n:,} rows, scaled", target=Target(min_speedup=2.5)
        ),
    }

    def teardown() -> None:
        # Clients first: once the mock cluster is gone they would reconnect (and log) until collected.
        sink.close()
        eos.close()
        bare.flush(10)
        per_row.flush(10)

    return Prepared(methods=methods, bytes_per_row=keyed.nbytes / n, teardown=teardown)


def setup_decode(config: RunConfig) -> Prepared:
    from arrowflow.formats import Json

    table = make_table(config.rows, config.seed)
    fmt = Json(table.schema)
    payloads = Json().encode(table.combine_chunks().to_batches()[0]).payloads.to_pylist()
    n = len(payloads)
    py_n = config.subset(20_000 if config.quick else 100_000)
    schema = table.schema
    assert fmt.decode(pa.array(payloads[:100], pa.binary())).batch.num_rows == 100

    def run_af() -> int:
        fmt.decode(pa.array(payloads, pa.binary()))
        return n

    def run_loads() -> int:
        loads = json.loads
        rows = [loads(p) for p in payloads[:py_n]]
        pa.RecordBatch.from_pylist(
            rows,
            schema=pa.schema(
                [f if not pa.types.is_timestamp(f.type) else pa.field(f.name, pa.string()) for f in schema]
            ),
        )
        return py_n

    methods = {
        "arrowflow Json.decode": Method(run=run_af, target=Target(min_rate=1e6)),
        "json.loads + RecordBatch.from_pylist": Method(
            run=run_loads, note=f"on {py_n:,} msgs, scaled", target=Target(min_speedup=3)
        ),
    }
    return Prepared(methods=methods, bytes_per_row=float(np.mean([len(p) for p in payloads[:1000]])))


register(
    Workload(
        name="kafka-produce",
        description="8-column table + 16 B key -> JSON Kafka messages (librdkafka mock cluster)",
        setup=setup_produce,
        reference="arrowflow KafkaSink",
    )
)
register(
    Workload(
        name="kafka-decode",
        description="consumed JSON values -> Arrow batch (the Kafka source's decode path)",
        setup=setup_decode,
        reference="arrowflow Json.decode",
    )
)
