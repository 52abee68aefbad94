"""Workloads ``avro-decode`` (one schemaless Avro record per payload -> an Arrow batch) and
``avro-encode`` (the reverse: an Arrow batch -> one Avro record per row).

The 8-column benchmark table (all eight columns: long, double, string, boolean,
local-timestamp-micros, int, string, double; ``price``, ``active`` and ``code`` declared as
``["null", T]`` unions, as Kafka schemas often are) is encoded by fastavro during setup (untimed),
one payload per row. Methods:

* ``arrowflow Avro.decode``: the whole binary array in one call; the compiled kernel
  (:mod:`arrowflow._ext.avro_decode`) decodes every payload.
* ``arrowflow Avro.decode (Confluent)``: the same payloads behind the 5-byte Confluent header
  (``schema_id=1``).
* ``fastavro path (before the kernel)``: ``Avro``'s fastavro path (``schemaless_reader`` per payload,
  then ``from_pylist``), what ``Avro.decode`` ran before the kernel, on a subset.
* ``fastavro schemaless_reader per row + from_pylist``: the baseline a user writes: the payloads as
  Python ``bytes`` (converted in setup, untimed), ``schemaless_reader`` on each, then
  ``pa.RecordBatch.from_pylist`` of the records, on a subset.

``avro-encode``, on the same table cast to the Avro schema's Arrow types: ``arrowflow Avro.encode``
(the compiled kernel, :mod:`arrowflow._ext.avro_encode`), its Confluent variant, ``Avro``'s fastavro
path (what ``encode`` ran before the kernel) and the user's baseline (``to_pylist``, then
``schemaless_writer`` per row into a ``BytesIO`` each, then one ``BinaryArray``), the last two on a
subset.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Row",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "price", "type": ["null", "double"]},
        {"name": "name", "type": "string"},
        {"name": "active", "type": ["null", "boolean"]},
        {"name": "ts", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {"name": "qty", "type": "int"},
        {"name": "code", "type": ["null", "string"]},
        {"name": "score", "type": "double"},
    ],
}


def setup(config: RunConfig) -> Prepared:
    import fastavro

    from arrowflow.formats import Avro

    fmt = Avro(SCHEMA)
    framed_fmt = Avro(SCHEMA, schema_id=1)
    table = make_table(config.rows, config.seed).combine_chunks()
    batch = table.to_batches()[0].cast(fmt.schema)
    payloads = fmt.encode(batch).payloads
    framed = framed_fmt.encode(batch).payloads
    n = len(payloads)
    check = fmt.decode(payloads)
    if not check.batch.equals(batch) or len(check.failed):
        raise RuntimeError("avro-decode: the kernel's decode differs from the table")

    def run_kernel() -> int:
        fmt.decode(payloads)
        return n

    def run_framed() -> int:
        framed_fmt.decode(framed)
        return n

    methods: dict[str, Method] = {
        "arrowflow Avro.decode": Method(
            run=run_kernel, target=Target(min_rate=1e6), note="whole array in one call, compiled kernel"
        ),
        "arrowflow Avro.decode (Confluent)": Method(
            run=run_framed, target=Target(min_rate=1e6), note="5-byte header, schema_id=1"
        ),
    }

    slow_n = config.subset(5_000 if config.quick else 100_000)
    sub = payloads.slice(0, slow_n)

    def run_before() -> int:
        fmt._decode_rows(sub, None, fmt._resolver())
        return slow_n

    methods["fastavro path (before the kernel)"] = Method(
        run=run_before, note=f"Avro's fastavro path, on {slow_n:,} rows, scaled"
    )

    parsed = fastavro.parse_schema(SCHEMA)
    values = sub.to_pylist()
    arrow_schema = fmt.schema
    reader = fastavro.schemaless_reader

    def run_fastavro() -> int:
        records = [reader(io.BytesIO(v), parsed, None) for v in values]
        pa.RecordBatch.from_pylist(records, schema=arrow_schema)
        return slow_n

    methods["fastavro schemaless_reader per row + from_pylist"] = Method(
        run=run_fastavro,
        note=f"payloads as bytes (setup), on {slow_n:,} rows, scaled",
        target=Target(min_speedup=5),
    )
    return Prepared(methods=methods, bytes_per_row=payloads.nbytes / max(n, 1))


def setup_encode(config: RunConfig) -> Prepared:
    import fastavro

    from arrowflow.formats import Avro

    fmt = Avro(SCHEMA)
    framed_fmt = Avro(SCHEMA, schema_id=1)
    table = make_table(config.rows, config.seed).combine_chunks()
    batch = table.to_batches()[0].cast(fmt.schema)
    n = batch.num_rows
    encoded = fmt.encode(batch)
    if len(encoded.failed) or fmt._encoder.encode(batch, b"") is None:  # type: ignore[attr-defined]
        raise RuntimeError("avro-encode: the kernel did not encode the table")
    slow_n = config.subset(5_000 if config.quick else 100_000)
    sub = batch.slice(0, slow_n)
    if not fmt._encode_rows(sub, b"").payloads.equals(encoded.payloads.slice(0, slow_n)):
        raise RuntimeError("avro-encode: the kernel's payloads differ from fastavro's")

    def run_kernel() -> int:
        fmt.encode(batch)
        return n

    def run_framed() -> int:
        framed_fmt.encode(batch)
        return n

    methods: dict[str, Method] = {
        "arrowflow Avro.encode": Method(
            run=run_kernel, target=Target(min_rate=1e6), note="whole batch in one call, compiled kernel"
        ),
        "arrowflow Avro.encode (Confluent)": Method(
            run=run_framed, target=Target(min_rate=1e6), note="5-byte header, schema_id=1"
        ),
    }

    def run_before() -> int:
        fmt._encode_rows(sub, b"")
        return slow_n

    methods["fastavro path (before the kernel)"] = Method(
        run=run_before, note=f"Avro's fastavro path, on {slow_n:,} rows, scaled"
    )

    parsed = fastavro.parse_schema(SCHEMA)
    writer = fastavro.schemaless_writer

    def run_fastavro() -> int:
        out = []
        for row in sub.to_pylist():
            buf = io.BytesIO()
            writer(buf, parsed, row)
            out.append(buf.getvalue())
        pa.array(out, pa.binary())
        return slow_n

    methods["fastavro to_pylist + schemaless_writer per row"] = Method(
        run=run_fastavro,
        note=f"one bytes per row, then a BinaryArray, on {slow_n:,} rows, scaled",
        target=Target(min_speedup=5),
    )
    return Prepared(methods=methods, bytes_per_row=encoded.payloads.nbytes / max(n, 1))


WORKLOAD = register(
    Workload(
        name="avro-decode",
        description="one Avro record per payload (8-column table) -> Arrow batch",
        setup=setup,
        reference="arrowflow Avro.decode",
        idiomatic=("fastavro schemaless_reader per row + from_pylist",),
    )
)

ENCODE_WORKLOAD = register(
    Workload(
        name="avro-encode",
        description="Arrow batch (8-column table) -> one Avro record per row",
        setup=setup_encode,
        reference="arrowflow Avro.encode",
        idiomatic=("fastavro to_pylist + schemaless_writer per row",),
    )
)
