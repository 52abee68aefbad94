"""Output checks (``Method.check``): did a method land exactly the rows it was given?

Every check compares what a method produced or landed, read back through the server's own client
(not through arrowflow), with the rows it was given: the same number of rows, the same key values and
the same value in every column. A baseline that silently does less work (drops rows, loses a column,
writes into the wrong place) then fails its check and is not timed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["conform", "json_table", "same_rows", "text_schema"]


def text_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with timestamp fields as strings: how JSON (and most stores) carry them."""
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_timestamp(f.type) else f for f in schema])


def conform(got: pa.Table, schema: pa.Schema) -> pa.Table:
    """``got``'s columns of ``schema``, in its order, cast to its types (ISO strings -> timestamps)."""
    missing = [n for n in schema.names if n not in got.column_names]
    if missing:
        raise AssertionError(f"columns {missing} missing (got {got.column_names})")
    columns = []
    for f in schema:
        col = got.column(f.name)
        if col.type != f.type:
            if pa.types.is_timestamp(f.type) and pa.types.is_string(col.type):
                # "2026-01-01T00:00:00.5" and "2026-01-01 00:00:00.5" both mean the same instant.
                col = pc.replace_substring(col, " ", "T")
            col = col.cast(f.type)
        columns.append(col)
    return pa.table(columns, schema=schema)


def same_rows(got: pa.Table, expected: pa.Table, what: str, key: str = "id") -> str:
    """Raise ``AssertionError`` unless ``got`` holds exactly ``expected``'s rows (in any order; the
    columns of ``expected``, cast to its types): none lost, none twice, none changed. Returns what
    was compared."""
    if got.num_rows != expected.num_rows:
        raise AssertionError(f"{what}: {got.num_rows:,} rows landed, expected {expected.num_rows:,}")
    g = conform(got, expected.schema).sort_by(key)
    e = expected.sort_by(key)
    if not g.column(key).equals(e.column(key)):
        raise AssertionError(f"{what}: the {key} values differ from the rows written")
    for name in expected.column_names:
        a, b = g.column(name), e.column(name)
        if not a.equals(b):
            diff = pc.invert(pc.fill_null(pc.equal(a, b), False))
            first = pc.index(diff, True).as_py()
            raise AssertionError(
                f"{what}: column {name!r} differs, e.g. at {key}={e.column(key)[first].as_py()}: "
                f"{a[first].as_py()!r} != {b[first].as_py()!r}"
            )
    return f"{expected.num_rows:,} rows x {expected.num_columns} columns"


def json_table(payloads: Iterable[bytes | str], schema: pa.Schema) -> pa.Table:
    """JSON documents (one per row) as a table of ``schema`` (timestamps from ISO strings)."""
    rows: list[Mapping[str, Any]] = [json.loads(p) for p in payloads]
    return conform(pa.Table.from_pylist(rows, schema=text_schema(schema)), schema)
