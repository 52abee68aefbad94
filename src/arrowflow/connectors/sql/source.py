"""``SqlSource``: a SQL query read over ADBC as Arrow batches, split into ranges or polled incrementally.

Bounded mode (the default) runs ``query`` (or ``SELECT * FROM table``):

* without ``partition_column``: one split reading the whole result;
* with ``partition_column`` and ``num_partitions = n``: n splits over ranges of that numeric or
  timestamp column, like Flink's JDBC parameter providers (Spark's ``partitionColumn``). The stride
  is ``(upper_bound - lower_bound) / n``; missing bounds are taken from ``min``/``max`` of the column
  by one aggregate query in :meth:`SqlSource.plan`. The first split also takes rows below the lower
  bound and rows whose column is NULL, the last split rows at or above the upper bound, so every row
  is read by exactly one split whatever the bounds. Split i reads
  ``SELECT * FROM (query) WHERE col >= lo AND col < hi ORDER BY col``.

  Rows stream through ``cursor.fetch_record_batch()`` and are cut to ``max_rows``.
  **Position** (JSON): ``{"rows": n}``, the rows of the split already delivered. Reopening from it
  re-executes the split's query with ``OFFSET n``; this is exact when the ordering is deterministic:
  partitioned splits order by the partition column, so it must be unique (or ties must not move
  between runs); a split without partition column has no ``ORDER BY`` and relies on the table not
  changing and PostgreSQL scanning it in the same order. With ``keyset=True`` the position also holds
  the last partition value, ``{"rows": n, "last": v}``, and resuming adds ``col > v`` instead of
  ``OFFSET`` (cheap for large offsets; needs a unique, non-null partition column).

**DB-API fallback**: with ``connect=`` (a zero-argument factory returning a DB-API 2.0 connection, or
the path of a SQLite file) instead of ``uri``, the same splits, positions and incremental mode run
through ``cursor.execute`` + ``cursor.fetchmany(max_rows)``, with the dialect's quoting and
``LIMIT ... OFFSET`` (MySQL/MariaDB, SQLite, PostgreSQL; from the driver module or ``dialect=``). The
rows are converted to Arrow per column: with ``schema`` each column becomes its field's type (values
the driver returns as text or numbers, as SQLite does for timestamps, decimals and booleans, are cast
by Arrow); without it pyarrow infers each column's type from the first batch that has a non-null
value (decimals take precision/scale from ``cursor.description`` when the driver reports them), and
keeps it for later batches. Each query ends with ``rollback()`` so that no read transaction stays
open between polls. Whether ``fetchmany`` streams depends on the driver (pymysql's default cursor
buffers the whole result: pass ``cursorclass=pymysql.cursors.SSCursor`` to stream).

Incremental mode (``incremental_column=...``, unbounded, one split) polls an append-only table:
``SELECT * FROM (query) WHERE col > last ORDER BY col`` every ``poll_interval`` seconds, streaming
the new rows. **Position**: the last value delivered (a number, or an ISO-8601 string for
timestamps), ``None`` before the first row. The column must be strictly increasing in commit order
(a sequence-fed id written by one writer, an ingestion timestamp): rows committed later with a
smaller value are missed, ties across a batch boundary may be skipped on resume.

``read_batch`` blocks while the database executes a query (the first call of a split, each poll);
otherwise it returns at once, or waits up to ``timeout`` for the next poll. Database errors raise
:class:`~arrowflow.errors.ConnectorError` (``retryable`` for connection loss): a pipeline restarts
from its last checkpoint. Reads run in autocommit mode, so no transaction stays open between polls.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from ...config import NO_OPTIONS, Secret, resolve_config
from ...errors import ConfigurationError, ConnectorError
from ...source import Position, Source, Split, SplitReader
from ._conn import CONNECTION_ERROR, classify, close_quietly, connect
from ._dbapi import (
    DIALECTS,
    Dialect,
    batch_from_rows,
    classify_dbapi,
    connection_factory,
    describe_factory,
    detect_dialect,
    open_connection,
)
from .config import SqlSourceConfig, mask_uri, scrub

__all__ = ["SqlSource"]


def _json_value(value: Any) -> Any:
    """A partition/incremental value as JSON: numbers stay numbers, the rest becomes ISO/str text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


def _as_datetime(value: Any, option: str) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day)
    try:
        return _dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigurationError(
            f"{option}={value!r} is neither a number nor an ISO timestamp", option=option
        ) from exc


def _boundaries(lower: Any, upper: Any, n: int) -> list[Any]:
    """The n - 1 inner boundaries between ``lower`` and ``upper`` (JSON values), deduplicated."""
    if n <= 1 or lower is None or upper is None:
        return []
    numeric = all(
        isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool) for v in (lower, upper)
    )
    out: list[Any] = []
    if numeric:
        if isinstance(lower, int) and isinstance(upper, int):
            span = upper - lower
            out = [lower + (span * i) // n for i in range(1, n)]
        else:
            lo, hi = float(lower), float(upper)
            out = [lo + (hi - lo) * i / n for i in range(1, n)]
            out = [v for v in out if math.isfinite(v)]
    else:
        lo_dt, hi_dt = _as_datetime(lower, "lower_bound"), _as_datetime(upper, "upper_bound")
        delta = hi_dt - lo_dt
        out = [(lo_dt + delta * i / n).isoformat() for i in range(1, n)]
    deduped: list[Any] = []
    for v in out:
        if not deduped or v != deduped[-1]:
            deduped.append(v)
    return deduped


class SqlSource(Source):
    """Reads a SQL query over ADBC, or DB-API with ``connect=``. See the module docstring for splits,
    positions and blocking. ``schema`` (DB-API only) fixes the Arrow types of the result."""

    name = "sql"
    replayable = True

    def __init__(
        self,
        uri: str | Secret | None = None,
        query: str | None = None,
        *,
        table: str | None = None,
        driver: str = "adbc_driver_postgresql",
        connect: Callable[[], Any] | str | None = None,
        dialect: str | None = None,
        schema: pa.Schema | None = None,
        partition_column: str | None = None,
        lower_bound: Any = None,
        upper_bound: Any = None,
        num_partitions: int = 1,
        keyset: bool = False,
        incremental_column: str | None = None,
        poll_interval: float = 1.0,
        batch_size: int = 65536,
        db_kwargs: Mapping[str, str] | None = NO_OPTIONS,
        config: SqlSourceConfig | None = None,
    ) -> None:
        self.config = c = resolve_config(SqlSourceConfig, config, locals())
        if c.schema is not None and c.connect is None:
            raise ConfigurationError("schema applies to connect= (DB-API) only", option="schema")
        self._factory = connection_factory(c.connect) if c.connect is not None else None
        self._dialect: Dialect | None = None
        if c.dialect is not None:
            self._dialect = DIALECTS[c.dialect]
        elif c.connect is None:
            self._dialect = DIALECTS["sqlite" if "sqlite" in c.driver else "postgresql"]

    def __repr__(self) -> str:
        c = self.config
        what = f"table={c.table!r}" if c.table else f"query={c.query!r}"
        return f"SqlSource({self._where!r}, {what})"

    @property
    def schema(self) -> pa.Schema | None:
        return self.config.schema

    @property
    def dbapi(self) -> bool:
        """True on the DB-API path (``connect=``)."""
        return self._factory is not None

    @property
    def _where(self) -> str:
        c = self.config
        return mask_uri(c.uri) if c.uri is not None else describe_factory(c.connect)

    def _wrap(self, exc: BaseException, what: str) -> ConnectorError:
        c = self.config
        text = scrub(str(exc), c.uri) if c.uri is not None else f"{type(exc).__name__}: {exc}"
        kind = classify_dbapi(exc) if self.dbapi else classify(exc)
        return ConnectorError(f"{what} ({self._where}): {text}", retryable=kind == CONNECTION_ERROR)

    def dialect(self, conn: Any = None) -> Dialect:
        """The SQL dialect (for DB-API without ``dialect=``, detected from an open connection)."""
        if self._dialect is None:
            if conn is None:
                raise ConfigurationError("the dialect is known once connected", option="dialect")
            self._dialect = detect_dialect(conn)
        return self._dialect

    @property
    def bounded(self) -> bool:
        return not self.config.incremental

    @property
    def base_query(self) -> str:
        """The query read (``SELECT * FROM table`` quoted in the dialect; ADBC's until connected)."""
        return self._base_query(self._dialect or DIALECTS["postgresql"])

    def _base_query(self, d: Dialect) -> str:
        c = self.config
        if c.table is not None:
            return f"SELECT * FROM {d.quote_table(c.table)}"
        assert c.query is not None
        return c.query.strip().rstrip(";")

    def _connect(self) -> Any:
        c = self.config
        if self._factory is not None:
            conn = open_connection(self._factory, self._where)
            self.dialect(conn)
            return conn
        assert c.uri is not None
        return connect(c.driver, c.uri, c.db_kwargs, autocommit=True)

    def _bounds(self) -> tuple[Any, Any]:
        c = self.config
        lower, upper = c.lower_bound, c.upper_bound
        if lower is not None and upper is not None:
            return _json_value(lower), _json_value(upper)
        conn = None
        try:
            conn = self._connect()
            d = self.dialect(conn)
            col = d.quote(c.partition_column or "")
            cur = conn.cursor()
            cur.execute(f"SELECT min({col}), max({col}) FROM ({self._base_query(d)}) AS _af_q")
            row = cur.fetchone()
            cur.close()
            if self.dbapi:
                conn.rollback()
        except ConnectorError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "planning the partition bounds") from None
        finally:
            close_quietly(conn)
        lo, hi = row if row else (None, None)
        return _json_value(lower if lower is not None else lo), _json_value(
            upper if upper is not None else hi
        )

    def plan(self) -> list[Split]:
        """One split (no partition column), ``num_partitions`` range splits, or one incremental split.

        With a partition column and a missing bound this runs one ``min``/``max`` query.
        """
        c = self.config
        if c.incremental:
            return [Split(split_id="sql-incremental", bounded=False, params={"kind": "incremental"})]
        if c.partition_column is None or c.num_partitions == 1:
            return [Split(split_id="sql-0", params={"kind": "range", "lo": None, "hi": None})]
        lower, upper = self._bounds()
        inner = _boundaries(lower, upper, c.num_partitions)
        edges: list[Any] = [None, *inner, None]
        return [
            Split(split_id=f"sql-{i}", params={"kind": "range", "lo": edges[i], "hi": edges[i + 1]})
            for i in range(len(edges) - 1)
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        if split.params.get("kind") == "incremental":
            return _IncrementalReader(self, split, position)
        return _RangeReader(self, split, position)


class _StreamingReader(SplitReader):
    """Common part: one streaming query at a time, cut to ``max_rows``."""

    def __init__(self, source: SqlSource, split: Split, position: Position) -> None:
        super().__init__(split, position)
        self._source = source
        self._conn: Any = None
        self._cursor: Any = None
        self._stream: pa.RecordBatchReader | None = None
        self._pending: pa.RecordBatch | None = None
        self._running = False  # a query is open (DB-API: a cursor to fetchmany from)
        self._names: list[str] = []
        self._description: Any = None
        self._inferred: list[pa.DataType | None] = []

    def _sql(self, d: Dialect) -> str:
        raise NotImplementedError

    def _execute(self) -> None:
        src = self._source
        try:
            if self._conn is None:
                self._conn = src._connect()
            sql = self._sql(src.dialect(self._conn))
            self._cursor = self._conn.cursor()
            self._cursor.execute(sql)
            if src.dbapi:
                self._description = self._cursor.description or ()
                names = [str(d[0]) for d in self._description]
                if names != self._names:
                    self._names = names
                    self._inferred = [None] * len(names)
            else:
                self._stream = self._cursor.fetch_record_batch()
            self._running = True
        except ConnectorError:
            self._drop_connection()
            raise
        except Exception as exc:
            self._drop_connection()
            raise src._wrap(exc, f"{self.split.split_id}: query failed") from None

    def _next_slice(self, max_rows: int) -> pa.RecordBatch | None:
        """Up to ``max_rows`` rows of the current query, or ``None`` once it is exhausted."""
        if self._source.dbapi:
            return self._fetch_rows(max_rows)
        while self._pending is None or self._pending.num_rows == 0:
            assert self._stream is not None
            try:
                self._pending = self._stream.read_next_batch()
            except StopIteration:
                self._end_query()
                return None
            except Exception as exc:
                self._drop_connection()
                raise self._source._wrap(exc, f"{self.split.split_id}: read failed") from None
        out = self._pending.slice(0, max_rows)
        self._pending = self._pending.slice(max_rows)
        return out

    def _fetch_rows(self, max_rows: int) -> pa.RecordBatch | None:
        """DB-API: one ``fetchmany(max_rows)`` converted to Arrow, ``None`` (query ended) when empty."""
        src = self._source
        try:
            rows = self._cursor.fetchmany(max_rows)
        except Exception as exc:
            self._drop_connection()
            raise src._wrap(exc, f"{self.split.split_id}: read failed") from None
        if not rows:
            self._end_query()
            return None
        return batch_from_rows(rows, self._names, src.config.schema, self._inferred, self._description)

    def _end_query(self) -> None:
        self._pending = None
        self._stream = None
        self._running = False
        if self._cursor is not None:
            try:
                self._cursor.close()
            except Exception:  # the result is complete; closing its cursor may fail
                pass
            self._cursor = None
            if self._source.dbapi and self._conn is not None:
                try:
                    self._conn.rollback()  # end the read transaction: the next poll sees new rows
                except Exception:
                    close_quietly(self._conn)
                    self._conn = None

    def _drop_connection(self) -> None:
        self._end_query()
        close_quietly(self._conn)
        self._conn = None

    def close(self) -> None:
        self._drop_connection()


class _RangeReader(_StreamingReader):
    """A bounded split: one query over the split's range, resumed by OFFSET or keyset."""

    def __init__(self, source: SqlSource, split: Split, position: Position) -> None:
        super().__init__(source, split, position)
        pos = position or {}
        self._rows = int(pos.get("rows", 0))
        self._last = pos.get("last")
        self._finished = False

    def _sql(self, d: Dialect) -> str:
        c = self._source.config
        conds: list[str] = []
        order = ""
        offset = ""
        if c.partition_column is not None:
            col = d.quote(c.partition_column)
            lo, hi = self.split.params.get("lo"), self.split.params.get("hi")
            if lo is not None:
                conds.append(f"{col} >= {d.literal(lo)}")
            if hi is not None:
                below = f"{col} < {d.literal(hi)}"
                conds.append(f"({below} OR {col} IS NULL)" if lo is None else below)
            order = f" ORDER BY {col}"
            if c.keyset and self._last is not None:
                conds.append(f"{col} > {d.literal(self._last)}")
            else:
                offset = d.offset(self._rows)
        else:
            offset = d.offset(self._rows)
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        return f"SELECT * FROM ({self._source._base_query(d)}) AS _af_q{where}{order}{offset}"

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._finished:
            return None
        if not self._running:
            self._execute()
        batch = self._next_slice(max_rows)
        if batch is None:
            self._finished = True
            self._drop_connection()
            return None
        self._rows += batch.num_rows
        c = self._source.config
        if c.keyset and c.partition_column is not None:
            self._last = _json_value(batch.column(c.partition_column)[-1].as_py())
        return batch

    @property
    def finished(self) -> bool:
        return self._finished

    def snapshot(self) -> Position:
        snap: dict[str, Any] = {"rows": self._rows}
        if self._source.config.keyset:
            snap["last"] = self._last
        return snap


class _IncrementalReader(_StreamingReader):
    """The unbounded split: polls ``col > last`` every ``poll_interval`` seconds."""

    def __init__(self, source: SqlSource, split: Split, position: Position) -> None:
        super().__init__(source, split, position)
        self._last = position
        self._next_poll = 0.0

    def _sql(self, d: Dialect) -> str:
        c = self._source.config
        assert c.incremental_column is not None
        col = d.quote(c.incremental_column)
        cond = f"{col} > {d.literal(self._last)}" if self._last is not None else f"{col} IS NOT NULL"
        return f"SELECT * FROM ({self._source._base_query(d)}) AS _af_q WHERE {cond} ORDER BY {col}"

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if not self._running:
            wait = self._next_poll - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, max(timeout, 0.0)))
                if time.monotonic() < self._next_poll:
                    return None
            self._execute()
        batch = self._next_slice(max_rows)
        if batch is None:
            self._next_poll = time.monotonic() + self._source.config.poll_interval
            return None
        column = self._source.config.incremental_column
        assert column is not None
        self._last = _json_value(batch.column(column)[-1].as_py())
        return batch

    @property
    def finished(self) -> bool:
        return False

    def snapshot(self) -> Position:
        return self._last
