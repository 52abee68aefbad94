"""arrowflow: each workload as the README shows it, one ``Pipeline`` with checkpoints.

* parquet: ``KafkaSource(format=Json(schema), stopping_offsets="latest", fetch="columnar")`` ->
  ``.filter(pc.field("price") < 5000)`` -> ``FileSink(format="parquet")``;
* postgres: the same source -> ``SqlSink`` (ADBC, COPY): ``mode="append"`` at least once,
  ``mode="upsert", keys="id"`` for exactly-once (idempotent);
* opensearch: the same source -> ``OpenSearchSink(index, id_column="id", document_columns=<all 8>)``
  (its defaults: 10,000 actions or 5 MiB per request, 2 in flight);
* every Kafka read uses the opt-in ``fetch="columnar"`` path (librdkafka's batch consume drained into
  Arrow buffers by a kernel; no Python object per message);
* produce: ``DataGenSource(generator=gen_batch, count=N)`` -> ``KafkaSink(format=Json())``
  (at-least-once: idempotent producer; exactly-once: one transaction per checkpoint).

``Pipeline.run(checkpoint_dir=..., checkpoint_interval=..., guarantee=...)`` with the spec's
guarantee and ``parallelism`` (parallel subtasks: the splits are shared out, each subtask runs its
own operator chain and sink).
"""

from __future__ import annotations

import os

import pyarrow.compute as pc
from _common import COLUMNS, PRICE_LIMIT, Clock, Spec, emit
from _vector import SCHEMA, gen_batch

from arrowflow import Pipeline
from arrowflow.connectors.datagen import DataGenSource
from arrowflow.connectors.filesystem import FileSink
from arrowflow.connectors.kafka import KafkaSource, kafka_sink
from arrowflow.connectors.search.opensearch import OpenSearchSink
from arrowflow.connectors.sql import SqlSink
from arrowflow.formats import Json
from arrowflow.sink import Sink
from arrowflow.source import Source


def main() -> None:
    spec = Spec.load()
    clock = Clock().start()

    checkpoint_dir = os.path.join(spec.scratch_dir, "checkpoints")
    if spec.workload == "produce":
        source: Source = DataGenSource(generator=gen_batch, count=spec.messages)
        sink: Sink = kafka_sink(
            spec.bootstrap,
            topic=spec.topic,
            format=Json(),
            partitioner="round-robin",
            guarantee=spec.guarantee,
            transactional_id_prefix=f"{spec.group_id}-tx" if spec.guarantee == "exactly-once" else None,
        )
        pipeline = Pipeline(source).to(sink)
    else:
        source = KafkaSource(
            spec.bootstrap,
            topics=[spec.topic],
            group_id=spec.group_id,
            format=Json(schema=SCHEMA),
            stopping_offsets="latest",
            fetch="columnar",
        )
        pipeline = Pipeline(source)
        if spec.workload == "parquet":
            pipeline = pipeline.filter(pc.field("price") < PRICE_LIMIT).to(
                FileSink(spec.out_dir, format="parquet")
            )
        elif spec.workload == "opensearch":
            # _id from the id column (idempotent: exactly-once in effect too); the document keeps all
            # 8 columns, as every other system's does (by default the sink leaves the id column out).
            pipeline = pipeline.to(
                OpenSearchSink(
                    hosts=[spec.search_url], index=spec.index, id_column="id", document_columns=list(COLUMNS)
                )
            )
        else:
            upsert = spec.guarantee == "exactly-once"
            sink = SqlSink(
                spec.pg_dsn,
                spec.pg_table,
                mode="upsert" if upsert else "append",
                keys="id" if upsert else None,
            )
            pipeline = pipeline.to(sink)
    result = pipeline.run(
        checkpoint_dir=checkpoint_dir,
        checkpoint_interval=spec.checkpoint_interval,
        guarantee=spec.guarantee,
        parallelism=spec.parallelism,
        progress=False,
    )
    emit(clock.result(rows_out=result.rows_written, rows_in=result.rows, checkpoints=result.checkpoints))


if __name__ == "__main__":
    main()
