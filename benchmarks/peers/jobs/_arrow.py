"""The benchmark table's Arrow schema, and rows (dicts as decoded from JSON) -> a typed table.

pyarrow only (the peers' venvs have no numpy): used by the plain loop's and Bytewax's Parquet writers,
and by :mod:`_vector` (the schema).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

#: The 8 columns with ``ts`` as it travels in JSON (ISO-8601 text).
TEXT_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("price", pa.float64()),
        ("name", pa.string()),
        ("active", pa.bool_()),
        ("ts", pa.string()),
        ("qty", pa.int32()),
        ("code", pa.string()),
        ("score", pa.float64()),
    ]
)
#: The 8 columns as written to Parquet and compared (``ts`` a naive microsecond timestamp).
SCHEMA = TEXT_SCHEMA.set(4, pa.field("ts", pa.timestamp("us")))


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """``Table.from_pylist`` with :data:`TEXT_SCHEMA`, then ``ts`` cast from its ISO text."""
    table = pa.Table.from_pylist(rows, schema=TEXT_SCHEMA)
    return table.set_column(4, SCHEMA.field("ts"), table.column("ts").cast(pa.timestamp("us")))
