"""SchemaRegistryClient and ``Avro(..., registry=...)`` against a real Confluent-compatible registry
(Conduit Schema Registry, tests/services/schema-registry.sh) and real Apache Kafka (kafka.sh).

Every decode side uses a fresh SchemaRegistryClient, so writer schemas really come from the server by
id (no client cache carried over from the encode side). Not covered here: a compatibility rejection
(Conduit Schema Registry v0.2.6 has no compatibility checks; see the script's header).
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka import Producer

from arrowflow.connectors.kafka import KafkaSink, KafkaSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.formats import Avro, SchemaNotFound, SchemaRegistryClient

V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "test.registry",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "item", "type": ["null", "string"]},
    ],
}
# V2 adds a field with a default: a reader of V2 fills it in for records written with V1.
V2 = {**V1, "fields": [*V1["fields"], {"name": "qty", "type": "int", "default": 7}]}


@pytest.fixture(scope="module")
def registry_url(service: Callable[[str], tuple[str, int]]) -> str:
    host, port = service("schema-registry")
    return f"http://{host}:{port}"


@pytest.fixture
def subject() -> Iterator[str]:
    yield f"orders-{uuid.uuid4().hex[:12]}-value"


def topic_name() -> str:
    return f"registry-{uuid.uuid4().hex[:12]}"


def server_get(registry_url: str, path: str) -> object:
    """A GET on the registry's REST API, outside arrowflow (to check what the server holds)."""
    with urllib.request.urlopen(registry_url + path, timeout=30) as resp:
        return json.loads(resp.read())


def orders(ids: range, qty: int | None = None) -> pa.Table:
    cols: dict[str, pa.Array] = {
        "id": pa.array(list(ids), pa.int64()),
        "item": pa.array([None if i % 4 == 0 else f"item-{i}" for i in ids], pa.string()),
    }
    if qty is not None:
        cols["qty"] = pa.array([qty + i for i in ids], pa.int32())
    return pa.table(cols)


def write_topic(bootstrap: str, topic: str, fmt: Avro, table: pa.Table) -> pa.Table:
    """Write ``table`` (cast to the format's schema) to ``topic`` through KafkaSink; return it."""
    table = table.cast(fmt.schema)
    with KafkaSink(bootstrap, topic=topic, format=fmt) as sink:
        sink.write_table(table)
    return table


def read_topic(bootstrap: str, topic: str, fmt: Avro, **kw: Any) -> pa.Table:
    src = KafkaSource(bootstrap, topics=[topic], stopping_offsets="latest", format=fmt, **kw)
    return src.read_all(max_rows=100)


def test_register_then_look_up_by_id(registry_url: str, subject: str) -> None:
    client = SchemaRegistryClient(registry_url)
    first = client.register(subject, V1)
    # The server, not the client's cache, says which id and version the schema got.
    assert server_get(registry_url, f"/subjects/{subject}/versions") == [1]
    assert server_get(registry_url, f"/subjects/{subject}/versions/1")["id"] == first  # type: ignore[index]
    # Registering the same schema again (another client: no cache) is idempotent on the server.
    assert SchemaRegistryClient(registry_url).register(subject, V1) == first
    second = client.register(subject, V2)
    assert second != first
    assert server_get(registry_url, f"/subjects/{subject}/versions") == [1, 2]
    fresh = SchemaRegistryClient(registry_url)
    assert fresh.get_schema(first) == V1
    assert fresh.get_schema(second) == V2


def test_unknown_id_raises_schema_not_found(registry_url: str) -> None:
    unknown = 2_000_000_000
    with pytest.raises(SchemaNotFound, match=f"/schemas/ids/{unknown}"):
        SchemaRegistryClient(registry_url).get_schema(unknown)


def test_confluent_framing_round_trip_through_kafka(
    registry_url: str, subject: str, kafka_bootstrap: str
) -> None:
    topic = topic_name()
    writer = Avro(V1, registry=SchemaRegistryClient(registry_url), subject=subject)
    data = write_topic(kafka_bootstrap, topic, writer, orders(range(500)))
    schema_id = server_get(registry_url, f"/subjects/{subject}/versions/1")["id"]  # type: ignore[index]
    header = writer.encode(data.slice(0, 1).to_batches()[0]).payloads[0].as_py()[:5]
    assert header == b"\x00" + int(schema_id).to_bytes(4, "big")

    reader = Avro(V1, registry=SchemaRegistryClient(registry_url))
    got = read_topic(kafka_bootstrap, topic, reader)
    assert got.sort_by("id").equals(data)


def test_reader_schema_resolves_an_older_writer_schema(
    registry_url: str, subject: str, kafka_bootstrap: str
) -> None:
    topic = topic_name()
    old = Avro(V1, registry=SchemaRegistryClient(registry_url), subject=subject)
    new = Avro(V2, registry=SchemaRegistryClient(registry_url), subject=subject)
    write_topic(kafka_bootstrap, topic, old, orders(range(0, 300)))
    write_topic(kafka_bootstrap, topic, new, orders(range(300, 600), qty=100))
    # Both versions live under one subject on the server, with different ids.
    versions = [
        server_get(registry_url, f"/subjects/{subject}/versions/{v}")["id"]  # type: ignore[index]
        for v in server_get(registry_url, f"/subjects/{subject}/versions")  # type: ignore[attr-defined]
    ]
    assert len(versions) == 2 and versions[0] != versions[1]

    reader = Avro(V2, registry=SchemaRegistryClient(registry_url))
    got = read_topic(kafka_bootstrap, topic, reader).sort_by("id")
    expected = pa.concat_tables(
        [
            orders(range(0, 300)).append_column("qty", pa.array([7] * 300, pa.int32())),
            orders(range(300, 600), qty=100),
        ]
    ).cast(reader.schema)
    assert got.equals(expected)


def test_unknown_schema_id_goes_to_the_error_policy(
    registry_url: str, subject: str, kafka_bootstrap: str
) -> None:
    topic = topic_name()
    writer = Avro(V1, registry=SchemaRegistryClient(registry_url), subject=subject)
    data = write_topic(kafka_bootstrap, topic, writer, orders(range(200)))
    # Valid Avro bodies framed with an id the registry has never handed out.
    unknown = 2_000_000_001
    bodies = writer.encode(orders(range(1000, 1003)).cast(writer.schema).to_batches()[0]).payloads
    bad = [b"\x00" + unknown.to_bytes(4, "big") + p.as_py()[5:] for p in bodies]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for payload in bad:
        producer.produce(topic, payload)
    assert producer.flush(60) == 0

    dead = MemorySink()
    reader = Avro(V1, registry=SchemaRegistryClient(registry_url))
    got = read_topic(kafka_bootstrap, topic, reader, error_policy=dead)
    assert got.sort_by("id").equals(data)
    letters = dead.table()
    assert sorted(letters.column("payload").to_pylist()) == sorted(bad)
    assert set(letters.column("error").to_pylist()) == {
        f"KeyError: schema id {unknown} is not in the registry"
    }
