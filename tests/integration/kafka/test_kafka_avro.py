"""Avro with Confluent framing through a real broker: KafkaSink encodes, KafkaSource decodes (the
compiled kernel for payloads of this schema id, fastavro for the rest), bad payloads dead-lettered."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import numpy as np
import pyarrow as pa
from kafka_helpers import Broker, produce, wait_partitions

from arrowflow.connectors.kafka import KafkaSink, KafkaSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.formats import Avro

SCHEMA = {
    "type": "record",
    "name": "Event",
    "namespace": "test.kafka",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": ["null", "string"]},
        {"name": "score", "type": "double"},
        {"name": "ok", "type": "boolean"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    ],
}


def events(n: int) -> pa.Table:
    ids = np.arange(n, dtype=np.int64)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return pa.table(
        {
            "id": ids,
            "name": pa.array([None if i % 5 == 0 else f"name-{i}" for i in range(n)]),
            "score": ids.astype(np.float64) / 8,
            "ok": ids % 2 == 0,
            "kind": pa.array(["ABC"[i % 3] for i in range(n)]),
            "at": pa.array(
                [None if i % 7 == 0 else start + datetime.timedelta(seconds=i) for i in range(n)],
                pa.timestamp("us", tz="UTC"),
            ),
            "day": pa.array([datetime.date(2026, 1, 1) + datetime.timedelta(days=i % 400) for i in range(n)]),
        }
    )


def test_avro_confluent_round_trip_and_bad_payloads(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    fmt = Avro(SCHEMA, schema_id=3)
    data = events(2_000).cast(fmt.schema)
    with KafkaSink(broker.bootstrap, topic=topic, format=fmt) as sink:
        sink.write_table(data)
    good = fmt.encode(data.slice(0, 1).to_batches()[0]).payloads[0].as_py()
    bad = [good[:-3], b"\x00\x00\x00\x00\x04" + good[5:], b"plain", good + b"\x00"]
    produce(broker, topic, [(None, m) for m in bad], partition=2)
    wait_partitions(broker, topic)

    dead = MemorySink()
    src = KafkaSource(
        broker.bootstrap, topics=[topic], stopping_offsets="latest", format=fmt, error_policy=dead
    )
    got = src.read_all(max_rows=300)
    assert got.sort_by("id").equals(data)
    letters = dead.table()
    assert sorted(letters.column("payload").to_pylist()) == sorted(bad)
    errors = dict(
        zip(letters.column("payload").to_pylist(), letters.column("error").to_pylist(), strict=True)
    )
    assert "unknown schema id 4" in errors[bad[1]]
    assert "magic byte" in errors[b"plain"]
    assert errors[good + b"\x00"] == "ValueError: 1 trailing bytes after the record"
