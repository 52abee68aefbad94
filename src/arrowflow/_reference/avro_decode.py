"""Pure-Python reference of :mod:`arrowflow._ext.avro_decode` (a test oracle, never used at run time).

fastavro's ``schemaless_reader``, one payload at a time, then ``pa.RecordBatch.from_pylist`` one row
at a time: a payload "decodes" when fastavro reads exactly its bytes (after the Confluent header
when ``ids`` is given, whose schema id must be one of ``ids``) and Arrow takes the record as a row
of ``arrow_schema``.

The kernel is stricter than fastavro on purpose (it leaves to fastavro what fastavro reads in its own
way: a boolean byte other than 0/1, a negative enum index, an overlong varint beyond 64 bits): its
decoded rows are a subset of these, with equal values, and on payloads a writer produced the two
decode the same rows. Needs ``fastavro``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["decode"]


def decode(
    schema: dict[str, Any],
    arrow_schema: pa.Schema,
    payloads: Sequence[bytes | None],
    ids: Sequence[int] | None = None,
) -> tuple[pa.RecordBatch, np.ndarray]:
    """``(batch of the payloads that decode, bool mask of those payloads)``."""
    import fastavro

    parsed = fastavro.parse_schema(schema)
    rows: list[pa.RecordBatch] = []
    ok = np.zeros(len(payloads), dtype=bool)
    for i, payload in enumerate(payloads):
        if payload is None:
            continue
        body = io.BytesIO(payload)
        if ids is not None:
            if len(payload) < 5 or payload[0] != 0 or int.from_bytes(payload[1:5], "big") not in ids:
                continue
            body.seek(5)
        try:
            record = fastavro.schemaless_reader(body, parsed, None)
            if body.tell() != len(payload):
                continue
            row = pa.RecordBatch.from_pylist([record], schema=arrow_schema)
        except Exception:  # any failure of fastavro or Arrow: the payload does not decode
            continue
        rows.append(row)
        ok[i] = True
    if not rows:
        return pa.RecordBatch.from_pylist([], schema=arrow_schema), ok
    table = pa.Table.from_batches(rows, schema=arrow_schema).combine_chunks()
    return table.to_batches()[0], ok
