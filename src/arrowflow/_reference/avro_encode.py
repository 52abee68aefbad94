"""Pure-Python reference of :mod:`arrowflow._ext.avro_encode` (a test oracle, never used at run time).

fastavro's ``schemaless_writer``, one record of ``batch.to_pylist()`` at a time: a row "encodes" when
fastavro writes it, and its payload is those bytes (after the Confluent header ``0x00`` + the 4-byte
big-endian ``schema_id`` when one is given); a row fastavro refuses is ``None``. The kernel writes
exactly these bytes for every row in its scope and fails exactly the rows fastavro refuses
(``tests/unit/test_avro_encode_kernel.py``). Needs ``fastavro``.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa

__all__ = ["encode"]


def encode(schema: dict[str, Any], batch: pa.RecordBatch, schema_id: int | None = None) -> list[bytes | None]:
    """One payload per row of ``batch``, ``None`` where fastavro refuses the row."""
    import fastavro

    parsed = fastavro.parse_schema(schema)
    header = b"" if schema_id is None else b"\x00" + schema_id.to_bytes(4, "big")
    out: list[bytes | None] = []
    for row in batch.to_pylist():
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, parsed, row)
        except Exception:  # any refusal of fastavro: the row does not encode
            out.append(None)
            continue
        out.append(header + buf.getvalue())
    return out
