"""Avro: schema mapping, round trips, Confluent framing, a real HTTP schema registry on loopback."""

from __future__ import annotations

import datetime
import decimal
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from arrowflow.errors import ConfigurationError
from arrowflow.formats import Avro, SchemaRegistryClient, avro_to_arrow, for_name

EIGHT = {
    "type": "record",
    "name": "Row",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "score", "type": ["null", "double"]},
        {"name": "name", "type": "string"},
        {"name": "flag", "type": ["null", "boolean"]},
        {"name": "ts", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {"name": "small", "type": ["null", "int"]},
        {"name": "code", "type": ["null", "string"]},
        {"name": "ratio", "type": "double"},
    ],
}

NESTED = {
    "type": "record",
    "name": "Outer",
    "namespace": "t",
    "fields": [
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}]},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "long"]}},
        {
            "name": "inner",
            "type": ["null", {"type": "record", "name": "In", "fields": [{"name": "x", "type": "int"}]}],
        },
        {"name": "again", "type": {"type": "array", "items": "In"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "raw", "type": "bytes"},
    ],
}


def test_schema_mapping() -> None:
    schema = avro_to_arrow(NESTED)
    assert schema.field("when").type == pa.timestamp("ms", tz="UTC") and not schema.field("when").nullable
    assert schema.field("day").type == pa.date32() and schema.field("day").nullable
    assert schema.field("amount").type == pa.decimal128(9, 2)
    assert schema.field("attrs").type == pa.map_(pa.string(), pa.int64())
    assert schema.field("again").type.value_type == pa.struct([pa.field("x", pa.int32(), nullable=False)])
    assert schema.field("kind").type == pa.string()
    with pytest.raises(ConfigurationError):
        avro_to_arrow({"type": "record", "name": "U", "fields": [{"name": "u", "type": ["int", "string"]}]})


def test_round_trip_eight_columns(batch8: pa.RecordBatch) -> None:
    fmt = for_name("avro", schema=json.dumps(EIGHT))
    batch = batch8.cast(fmt.schema)
    decoded = fmt.decode(fmt.encode(batch).payloads)
    assert decoded.batch.equals(batch)


def test_round_trip_nested() -> None:
    fmt = Avro(NESTED)
    rows = [
        {
            "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=datetime.timezone.utc),
            "day": datetime.date(2024, 1, 2),
            "amount": decimal.Decimal("12.34"),
            "tags": ["a", "b"],
            "attrs": [("k", 1), ("n", None)],
            "inner": {"x": 1},
            "again": [{"x": 2}],
            "kind": "B",
            "uid": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "raw": b"\x00\xff",
        },
        {
            "when": datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc),
            "day": None,
            "amount": decimal.Decimal("-0.01"),
            "tags": [],
            "attrs": [],
            "inner": None,
            "again": [],
            "kind": "A",
            "uid": "00000000-0000-0000-0000-000000000000",
            "raw": b"",
        },
    ]
    batch = pa.RecordBatch.from_pylist(rows, schema=fmt.schema)
    decoded = fmt.decode(fmt.encode(batch).payloads)
    assert decoded.batch.equals(batch)


def test_encode_failures_are_per_row() -> None:
    fmt = Avro(EIGHT)
    schema = pa.schema([f.with_nullable(True) for f in fmt.schema])
    rows = [
        {n: None for n in schema.names},
        {
            "id": 1,
            "score": 1.0,
            "name": "x",
            "flag": True,
            "ts": datetime.datetime(2024, 1, 1),
            "small": 1,
            "code": "c",
            "ratio": 0.5,
        },
    ]
    encoded = fmt.encode(pa.RecordBatch.from_pylist(rows, schema=schema))
    assert encoded.failed.tolist() == [0] and len(encoded.errors) == 1
    assert encoded.payloads.is_null().to_pylist() == [True, False]
    assert fmt.decode(encoded.payloads.slice(1)).batch.column("name").to_pylist() == ["x"]


def test_confluent_framing_without_registry(batch8: pa.RecordBatch) -> None:
    fmt = Avro(EIGHT, schema_id=42)
    batch = batch8.cast(fmt.schema)
    payloads = fmt.encode(batch).payloads
    assert all(p[:5] == b"\x00\x00\x00\x00\x2a" for p in payloads.to_pylist())
    plain = Avro(EIGHT).encode(batch).payloads.to_pylist()
    other_id = b"\x00\x00\x00\x00\x2b" + plain[0][0:]
    mixed = pa.array([plain[0], *payloads.to_pylist()[:3], other_id, b"\x00\x00"], pa.binary())
    decoded = fmt.decode(mixed)
    assert decoded.row_indices.tolist() == [1, 2, 3]
    assert decoded.failed.tolist() == [0, 4, 5]
    assert "magic byte" in decoded.errors[0] and "unknown schema id 43" in decoded.errors[1]
    assert decoded.batch.equals(batch.slice(0, 3))


class _Registry(BaseHTTPRequestHandler):
    schemas: dict[int, str] = {}
    requests: list[str] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        prefix = "/schemas/ids/"
        if self.path.startswith(prefix) and int(self.path[len(prefix) :]) in self.schemas:
            self._reply(200, {"schema": self.schemas[int(self.path[len(prefix) :])]})
        else:
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})

    def do_POST(self) -> None:
        self.requests.append(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for sid, text in self.schemas.items():
            if text == body["schema"]:
                return self._reply(200, {"id": sid})
        sid = max(self.schemas, default=0) + 1
        self.schemas[sid] = body["schema"]
        self._reply(200, {"id": sid})

    def _reply(self, code: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    _Registry.schemas = {}
    _Registry.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_schema_registry_round_trip_with_evolution(registry_url: str, batch8: pa.RecordBatch) -> None:
    client = SchemaRegistryClient(registry_url)
    writer = Avro(EIGHT, registry=client, subject="rows-value")
    batch = batch8.cast(writer.schema)
    payloads = writer.encode(batch).payloads
    assert _Registry.requests == ["/subjects/rows-value/versions"]
    schema_id = int.from_bytes(payloads[0].as_py()[1:5], "big")
    assert schema_id == 1

    # The reader's schema adds a defaulted field: the writer schema comes from the registry by id.
    evolved = dict(EIGHT, fields=[*EIGHT["fields"], {"name": "extra", "type": "string", "default": "d"}])
    reader = Avro(evolved, registry=registry_url)
    unknown = b"\x00\x00\x00\x00\x09" + payloads[0].as_py()[5:]
    decoded = reader.decode(pa.array([*payloads.to_pylist(), unknown], pa.binary()))
    assert decoded.batch.select(batch.schema.names).equals(batch)
    assert set(decoded.batch.column("extra").to_pylist()) == {"d"}
    assert decoded.failed.tolist() == [batch.num_rows]
    assert "not in the registry" in decoded.errors[0]
    # One lookup per id, then cached.
    reader.decode(payloads)
    assert _Registry.requests.count("/schemas/ids/1") == 1


def test_values_python_cannot_hold_fail_their_row_not_the_call() -> None:
    # Found by the avro_encode fuzz target: on the fastavro path (here: an array field, outside the
    # kernel's scope) a timestamp beyond datetime's range made batch.to_pylist() raise OverflowError
    # for the whole call.
    fmt = Avro(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {"name": "t", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
                {"name": "a", "type": {"type": "array", "items": "long"}},
            ],
        }
    )
    ms = pa.array([6795574959383183360, 0, -(2**62), None], pa.int64()).cast(pa.timestamp("ms", "UTC"))
    encoded = fmt.encode(pa.record_batch({"t": ms, "a": [[1], [2], [3], []]}))
    assert encoded.failed.tolist() == [0, 2]
    assert all("Python cannot hold" in e for e in encoded.errors)
    good = encoded.payloads.filter(encoded.payloads.is_valid())
    # (a failed row in the middle must not shift the payloads after it)
    assert fmt.decode(good).batch.to_pylist() == [
        {"t": datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc), "a": [2]},
        {"t": None, "a": []},
    ]
