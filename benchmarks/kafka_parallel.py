"""Workload ``kafka-parallelism``: Kafka JSON -> Parquet, ``run(parallelism=2)`` against ``parallelism=1``.

Needs a real broker: ``ARROWFLOW_BENCH_KAFKA_BOOTSTRAP`` (e.g. ``127.0.0.1:9092``, the Apache Kafka of
``tests/services/kafka.sh``); without it the methods are listed as skipped (librdkafka's mock cluster
keeps only the last few MB per partition, too little for the table).

Setup (untimed): the 8-column benchmark table as one JSON message per row (arrowflow's JSON encoder)
into a fresh topic ``bench-par-*`` of ``PARTITIONS`` partitions, round-robin (every partition the same
share, so two readers get the same work). Every call then runs a whole pipeline:

  KafkaSource(topic, Json(schema), stopping_offsets="latest") -> FileSink(Parquet, fsync=False)
  .run(parallelism=N, progress=False)

into a fresh directory: planning, consumer start, decode, Parquet write and final commit included.

* ``Pipeline parallelism=2``: two reader threads (each owning half of the partitions), two operator
  chains, two FileSink instances. The reference, so the ``ratio`` of the next row is the scaling
  ratio (rows/s at parallelism 2 over rows/s at parallelism 1).
* ``Pipeline parallelism=1``: one reader, one chain, one sink (the default).

Output check (after each warm-up call): the Parquet files read back hold exactly the table's rows (by
``id``, every column). On a 2-core machine shared with other work the ideal ratio is 2x and the
measured one is lower: the broker runs on the same cores.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from .checks import same_rows
from .core import Method, Prepared, RunConfig, Workload, register
from .data import make_table

PARTITIONS = 4
_P2 = "Pipeline parallelism=2"
_P1 = "Pipeline parallelism=1"


def _fill_topic(bootstrap: str, topic: str, table: pa.Table) -> None:
    """Create ``topic`` and produce every row of ``table`` as a JSON message, round-robin over the
    partitions; waits for every delivery."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from arrowflow.formats import Json

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(60)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "log_level": 3,
            "linger.ms": 20,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    failed: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    i = 0
    for batch in table.to_batches(max_chunksize=65_536):
        for value in Json().encode(batch).payloads.to_pylist():  # setup only: untimed
            while True:
                try:
                    producer.produce(topic, value, partition=i % PARTITIONS, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            i += 1
    if producer.flush(120) or failed:
        raise RuntimeError(f"kafka-parallelism: {len(failed)} messages not delivered ({failed[:1]})")


def _delete_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})  # alive until the result
    admin.delete_topics([topic])[topic].result(60)


def setup(config: RunConfig) -> Prepared:
    bootstrap = os.environ.get("ARROWFLOW_BENCH_KAFKA_BOOTSTRAP")
    if not bootstrap:
        skip = "skipped: needs a real broker (ARROWFLOW_BENCH_KAFKA_BOOTSTRAP=host:port)"
        return Prepared(methods={_P2: Method(skip=skip), _P1: Method(skip=skip)}, bytes_per_row=0.0)
    import pyarrow.dataset as ds

    from arrowflow import Pipeline
    from arrowflow.connectors.filesystem import FileSink
    from arrowflow.connectors.kafka import KafkaSource
    from arrowflow.formats import Json

    table = make_table(config.rows, config.seed).combine_chunks()
    n = table.num_rows
    topic = f"bench-par-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    _fill_topic(bootstrap, topic, table)
    fill_s = time.monotonic() - started
    root = Path(tempfile.mkdtemp(prefix="af-bench-kpar-"))
    atexit.register(shutil.rmtree, root, True)

    def out_dir(workers: int) -> Path:
        return root / f"p{workers}"

    def pipeline(workers: int) -> Any:
        def run() -> int:
            out = out_dir(workers)
            if out.exists():
                shutil.rmtree(out)
            source = KafkaSource(
                bootstrap, topics=[topic], format=Json(table.schema), stopping_offsets="latest"
            )
            result = (
                Pipeline(source).to(FileSink(str(out), fsync=False)).run(progress=False, parallelism=workers)
            )
            if result.rows != n:
                raise RuntimeError(f"parallelism={workers}: read {result.rows:,} rows, expected {n:,}")
            return n

        return run

    def check(workers: int) -> Any:
        def run() -> str:
            got = ds.dataset(str(out_dir(workers)), format="parquet").to_table()
            return same_rows(got, table, f"parallelism={workers}")

        return run

    methods = {
        _P2: Method(
            run=pipeline(2),
            note=f"2 readers ({PARTITIONS} partitions), 2 chains, 2 FileSinks",
            check=check(2),
        ),
        _P1: Method(run=pipeline(1), note="ratio = scaling of parallelism 2 over 1", check=check(1)),
    }
    return Prepared(
        methods=methods,
        bytes_per_row=table.nbytes / max(n, 1),
        note=f"topic of {n:,} JSON messages filled in {fill_s:.1f}s (untimed)",
        teardown=lambda: _delete_topic(bootstrap, topic),
    )


WORKLOAD = register(
    Workload(
        name="kafka-parallelism",
        description="Kafka JSON topic -> KafkaSource -> FileSink Parquet, run(parallelism=2) vs 1",
        setup=setup,
        reference=_P2,
    )
)
