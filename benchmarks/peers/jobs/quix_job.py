"""Quix Streams, written the way its documentation shows (Application + StreamingDataFrame + Sinks).

* parquet: ``app.dataframe(app.topic(..., value_deserializer="json"))``, the DataFrame filter idiom
  ``sdf = sdf[sdf["price"] < 5000]``, ``sdf["ts"] = sdf["ts"].apply(datetime.fromisoformat)`` (so the
  Parquet column is a timestamp, as every other system writes it), ``sdf.sink(LocalFileSink(directory,
  format="parquet"))`` (the community file sink: one Parquet file per partition and commit);
* postgres: the same source, ``sdf.sink(PostgreSQLSink(..., table_name, include_metadata=False,
  schema_auto_update=False))`` into the harness's table (the sink batches rows per commit and inserts
  them with psycopg2 ``execute_values``);
* produce: the Quickstart's producer idiom, ``with app.get_producer() as producer`` +
  ``topic.serialize(value=row)`` + ``producer.produce(...)`` per row (Quix's JSON serializer passes
  datetimes through, so ``ts`` is written as ISO text first).

``app.run(count=N, timeout=...)`` stops after the N expected outputs (its documented stop condition);
``commit_interval`` is the harness's checkpoint interval, ``processing_guarantee="at-least-once"`` (its
default). The consumer's fetch settings are Quix's own defaults.
"""

from __future__ import annotations

import os
from datetime import datetime
from urllib.parse import urlparse

from _common import PRICE_LIMIT, Clock, Spec, emit, gen_row
from quixstreams import Application
from quixstreams.sinks.community.file.local import LocalFileSink
from quixstreams.sinks.community.postgresql import PostgreSQLSink


def main() -> None:
    spec = Spec.load()
    clock = Clock().start()
    app = Application(
        broker_address=spec.bootstrap,
        consumer_group=spec.group_id,
        auto_offset_reset="earliest",
        commit_interval=spec.checkpoint_interval,
        processing_guarantee="at-least-once",
        producer_extra_config={"linger.ms": 5, "enable.idempotence": True},
        loglevel="WARNING",
    )
    if spec.workload == "produce":
        topic = app.topic(spec.topic, value_serializer="json")
        with app.get_producer() as producer:
            for i in range(spec.messages):
                row = gen_row(i)
                row["ts"] = row["ts"].isoformat()
                msg = topic.serialize(key=None, value=row)
                producer.produce(topic=topic.name, value=msg.value, key=msg.key)
        emit(clock.result(rows_out=spec.messages))
        return
    topic = app.topic(spec.topic, value_deserializer="json")
    sdf = app.dataframe(topic)
    if spec.workload == "parquet":
        sdf = sdf[sdf["price"] < PRICE_LIMIT]
        sdf["ts"] = sdf["ts"].apply(datetime.fromisoformat)
        # LocalFileSink accepts only [a-zA-Z0-9 ._] in its directory (no "/" or "-"): a relative one.
        os.chdir(spec.out_dir)
        sdf.sink(LocalFileSink(directory=".", format="parquet"))
    else:
        dsn = urlparse(spec.pg_dsn)
        sdf.sink(
            PostgreSQLSink(
                host=dsn.hostname or "127.0.0.1",
                port=dsn.port or 5432,
                dbname=dsn.path.lstrip("/") or "postgres",
                user=dsn.username or "postgres",
                password=dsn.password or "",
                table_name=spec.pg_table,
                schema_auto_update=False,
                include_metadata=False,
            )
        )
    # Stops after the expected outputs, or after 60 s without a message (then the harness's check fails).
    app.run(count=spec.expected_out, timeout=60, collect=False)
    emit(clock.result(rows_out=spec.expected_out))


if __name__ == "__main__":
    main()
