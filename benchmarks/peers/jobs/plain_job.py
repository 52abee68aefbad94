"""The plain client loop: confluent-kafka + orjson + pyarrow / psycopg, no framework.

Written the way a competent user would write it for throughput, with at-least-once semantics
(output made durable first, then the consumer's offsets committed, every ``checkpoint_interval``):

* consume: one consumer assigned every partition (no group rebalance), ``consume(num_messages=...)``
  in batches of 10,000, fetch sizes raised (4 MB per partition and fetch, 32 MB of local queue per
  partition instead of librdkafka's 64 MB default, which only costs memory here), stops when every
  partition reached the high watermark it had at start;
* decode: ``orjson.loads`` per message;
* parquet: rows kept by the filter, gathered into 64k-row groups (``Table.from_pylist`` with the
  schema; ``ts`` cast from its ISO text) and written with one ``ParquetWriter`` per checkpoint
  interval (a file is written under a hidden name and renamed when closed);
* postgres: psycopg 3 ``COPY ... FROM STDIN`` with ``write_row`` per row, one transaction per
  checkpoint interval;
* opensearch: per consume call one ``_bulk`` request built by hand (opensearch-py ``client.bulk``):
  an ``index`` action with ``_id`` = the message's id (``orjson.loads`` for it) followed by the
  message's own bytes, which already are the document; offsets committed after each request;
* produce: ``gen_row`` + ``orjson.dumps`` + ``produce`` per row with the producer settings of
  arrowflow's at-least-once sink (``linger.ms=5``, idempotence, errors-only delivery reports), a
  ``poll(0)`` every 10,000 messages, ``flush()`` at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pyarrow.parquet as pq
from _arrow import SCHEMA, rows_to_table
from _common import COLUMNS, PRICE_LIMIT, Clock, Spec, emit, gen_row
from confluent_kafka import Consumer, Producer, TopicPartition
from opensearchpy import OpenSearch

CONSUME_BATCH = 10_000
ROW_GROUP = 65_536
CONSUMER_TUNING = {
    "fetch.max.bytes": 16 * 1024 * 1024,
    "max.partition.fetch.bytes": 4 * 1024 * 1024,
    "queued.max.messages.kbytes": 32 * 1024,
    "fetch.wait.max.ms": 100,
}


def consume_all(spec: Spec) -> Iterator[tuple[list[Any], Any]]:
    """Yield ``(message values, consumer)`` per consume call until every partition is at its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": spec.bootstrap,
            "group.id": spec.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **CONSUMER_TUNING,
        }
    )
    ends: dict[int, int] = {}
    starts: list[Any] = []
    for p in range(spec.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(spec.topic, p), timeout=30)
        if high > low:
            ends[p] = high
            starts.append(TopicPartition(spec.topic, p, low))
    consumer.assign(starts)
    try:
        while ends:
            msgs = consumer.consume(num_messages=CONSUME_BATCH, timeout=1.0)
            values = []
            for m in msgs:
                if m.error() is not None:
                    raise RuntimeError(f"consume: {m.error()}")
                p, off = int(m.partition() or 0), int(m.offset() or 0)
                end = ends.get(p)
                if end is None or off >= end:
                    continue
                values.append(m.value())
                if off + 1 >= end:
                    del ends[p]
            yield values, consumer
    finally:
        consumer.close()


def commit(consumer: Any) -> None:
    consumer.commit(asynchronous=False)


def run_parquet(spec: Spec) -> int:
    os.makedirs(spec.out_dir, exist_ok=True)
    written = 0
    rows: list[dict[str, Any]] = []
    writer: Any = None
    part = 0
    tmp = final = ""
    last_commit = time.monotonic()

    def flush_rows() -> None:
        nonlocal writer, tmp, final, part, rows, written
        if not rows:
            return
        table = rows_to_table(rows)
        if writer is None:
            final = os.path.join(spec.out_dir, f"part-{part:05d}.parquet")
            tmp = os.path.join(spec.out_dir, f".part-{part:05d}.parquet.tmp")
            writer = pq.ParquetWriter(tmp, SCHEMA)
            part += 1
        writer.write_table(table)
        written += table.num_rows
        rows = []

    def checkpoint(consumer: Any) -> None:
        nonlocal writer
        flush_rows()
        if writer is not None:
            writer.close()
            os.replace(tmp, final)
            writer = None
        commit(consumer)

    consumer = None
    for values, consumer in consume_all(spec):
        for v in values:
            r = orjson.loads(v)
            if r["price"] < PRICE_LIMIT:
                rows.append(r)
        if len(rows) >= ROW_GROUP:
            flush_rows()
        if time.monotonic() - last_commit >= spec.checkpoint_interval:
            checkpoint(consumer)
            last_commit = time.monotonic()
    if consumer is not None:
        flush_rows()
        if writer is not None:
            writer.close()
            os.replace(tmp, final)
    return written


def run_postgres(spec: Spec) -> int:
    written = 0
    copy_sql = f"COPY {spec.pg_table} ({', '.join(COLUMNS)}) FROM STDIN"
    with psycopg.connect(spec.pg_dsn) as conn:
        last_commit = time.monotonic()
        consumer = None
        for values, consumer in consume_all(spec):
            if values:
                with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                    for v in values:
                        r = orjson.loads(v)
                        copy.write_row(
                            (
                                r["id"],
                                r["price"],
                                r["name"],
                                r["active"],
                                r["ts"],
                                r["qty"],
                                r["code"],
                                r["score"],
                            )
                        )
                written += len(values)
            if time.monotonic() - last_commit >= spec.checkpoint_interval:
                conn.commit()
                commit(consumer)
                last_commit = time.monotonic()
        conn.commit()
    return written


def run_opensearch(spec: Spec) -> int:
    client = OpenSearch(spec.search_url, timeout=120)
    written = 0
    for values, _consumer in consume_all(spec):
        if not values:
            continue
        # The message is already the document: forward its bytes, parse it only for the _id.
        body = bytearray()
        for v in values:
            body += b'{"index":{"_id":"%d"}}\n' % orjson.loads(v)["id"]
            body += v
            body += b"\n"
        resp = client.bulk(body=bytes(body), index=spec.index)
        if resp.get("errors"):
            bad = [i for i in resp["items"] if i["index"].get("error")]
            raise RuntimeError(f"{len(bad)} documents rejected: {bad[:2]}")
        written += len(values)
        _consumer.commit(asynchronous=False)
    return written


def run_produce(spec: Spec) -> int:
    failed: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": spec.bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "delivery.report.only.error": True,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    produce, dumps, topic = producer.produce, orjson.dumps, spec.topic
    for i in range(spec.messages):
        value = dumps(gen_row(i))
        while True:
            try:
                produce(topic, value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left or failed:
        raise RuntimeError(f"{left} messages undelivered, {len(failed)} failed: {failed[:3]}")
    return spec.messages


def main() -> None:
    spec = Spec.load()
    clock = Clock().start()
    run = {
        "parquet": run_parquet,
        "postgres": run_postgres,
        "produce": run_produce,
        "opensearch": run_opensearch,
    }[spec.workload]
    rows = run(spec)
    emit(clock.result(rows_out=rows))


if __name__ == "__main__":
    main()
