"""Row-by-row checks of what a job landed, read back with clients independent of arrowflow's code paths
(pyarrow's Parquet and JSON readers, ADBC for PostgreSQL, a plain confluent-kafka consumer).

Every check returns ``None`` when the output holds exactly the expected rows (same count, no
duplicates, every column equal after the type normalization below), else a message naming the first
difference. Normalization: the 8 columns are selected (a peer may add its own, e.g. Quix's
``_timestamp``/``_key``), integer and float columns are cast to the expected width when the cast is
exact (ISO text as a timestamp; :func:`benchmarks.checks.conform`), a UTC-adjusted timestamp is read
as the naive one, and rows are sorted by ``id``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..checks import conform
from .jobs._common import COLUMNS
from .jobs._vector import SCHEMA

__all__ = ["compare", "read_parquet_dir", "verify_index", "verify_parquet", "verify_postgres", "verify_topic"]


def normalize(table: pa.Table) -> pa.Table:
    """``table``'s 8 columns in the expected types, sorted by id (``AssertionError`` if a column is
    missing, ``ArrowInvalid`` if one cannot be cast exactly)."""
    for i, name in enumerate(table.column_names):
        col = table.column(i)
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            table = table.set_column(i, name, col.cast(pa.timestamp(col.type.unit)))
    out = conform(table, SCHEMA)
    return out.sort_by("id") if out.num_rows else out


def compare(got: pa.Table, expected: pa.Table) -> str | None:
    """``None`` when ``got`` (any column order/type/row order) equals ``expected`` row by row."""
    try:
        got = normalize(got)
    except (AssertionError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return f"output columns: {exc}"
    expected = normalize(expected)
    if got.num_rows != expected.num_rows:
        ids = got.column("id")
        dupes = got.num_rows - len(pc.unique(ids))
        return f"{got.num_rows} rows, expected {expected.num_rows} ({dupes} duplicate ids)"
    if got.equals(expected):
        return None
    for name in COLUMNS:
        a, b = got.column(name), expected.column(name)
        if not a.equals(b):
            neq = pc.invert(pc.fill_null(pc.equal(a, b), False))
            idx = pc.indices_nonzero(neq.combine_chunks() if isinstance(neq, pa.ChunkedArray) else neq)
            i = idx[0].as_py() if len(idx) else 0
            return (
                f"column {name!r} differs in {len(idx)} rows; first at id {got.column('id')[i].as_py()}: "
                f"got {a[i].as_py()!r}, expected {b[i].as_py()!r}"
            )
    return "tables differ"  # pragma: no cover - equals() and the column loop disagree


def read_parquet_dir(path: str | Path) -> pa.Table:
    """Every visible Parquet file below ``path`` (names starting with ``.`` or ``_`` are in-progress or
    metadata files by the conventions of Flink, Spark and arrowflow), the 8 columns of each."""
    root = Path(path)
    tables = []
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).parts
        if not f.is_file() or any(p.startswith((".", "_")) for p in rel):
            continue
        t = pq.read_table(f)
        tables.append(normalize(t.select([c for c in COLUMNS if c in t.column_names])))
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables(tables)


def verify_parquet(out_dir: str | Path, expected: pa.Table) -> str | None:
    try:
        got = read_parquet_dir(out_dir)
    except (OSError, AssertionError, pa.ArrowInvalid) as exc:
        return f"reading the Parquet files: {exc}"
    return compare(got, expected)


def verify_postgres(dsn: str, table: str, expected: pa.Table) -> str | None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM {table}")
        got = cur.fetch_arrow_table()
    return compare(got, expected)


def read_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 120.0) -> list[bytes]:
    """Every committed message value of ``topic`` (read_committed, from the start to the high
    watermark of each partition)."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"peers-verify-{topic}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": False,
            "log_level": 3,
        }
    )
    try:
        ends = {}
        assign = []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                ends[p] = high
                assign.append(TopicPartition(topic, p, low))
        consumer.assign(assign)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"reading {topic}: partitions {sorted(ends)} not at their end after {timeout} s"
                )
            for m in consumer.consume(num_messages=10_000, timeout=0.5):
                if m.error() is not None:
                    raise RuntimeError(f"reading {topic}: {m.error()}")
                value = m.value()
                if value is not None:  # a null value is not a row: the count check reports it
                    values.append(value)
            # Transaction markers take offsets without a message: the position says where we are.
            for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        return values
    finally:
        consumer.close()


def verify_topic(bootstrap: str, topic: str, partitions: int, expected: pa.Table) -> str | None:
    import pyarrow.json as pj

    try:
        values = read_topic(bootstrap, topic, partitions)
    except (TimeoutError, RuntimeError) as exc:
        return str(exc)
    if not values:
        return f"0 messages, expected {expected.num_rows}"
    if any(b"\n" in v for v in values):
        return "a message holds a newline (not one compact JSON object per message)"
    try:
        got = pj.read_json(
            pa.py_buffer(b"\n".join(values) + b"\n"),
            parse_options=pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="error"),
        )
    except pa.ArrowInvalid as exc:
        return f"messages are not the expected JSON: {exc}"
    return compare(got, expected)


def verify_index(url: str, index: str, expected: pa.Table) -> str | None:
    """Every document of ``index`` (refreshed, read by opensearch-py's scroll), its ``_source`` as a
    row; a document whose ``_id`` is not its ``id`` counts as a difference."""
    from opensearchpy import OpenSearch, helpers

    from .jobs._arrow import TEXT_SCHEMA

    client = OpenSearch(url, timeout=120)
    client.indices.refresh(index=index)
    rows = []
    for hit in helpers.scan(client, index=index, size=10_000, query={"query": {"match_all": {}}}):
        src = hit["_source"]
        if str(src.get("id")) != hit["_id"]:
            return f"document _id {hit['_id']!r} holds id {src.get('id')!r}"
        rows.append(src)
    if not rows:
        return f"0 documents, expected {expected.num_rows}"
    try:
        got = pa.Table.from_pylist(rows, schema=TEXT_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        return f"documents are not the expected rows: {exc}"
    return compare(got, expected)
