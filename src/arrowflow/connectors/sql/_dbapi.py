"""The DB-API 2.0 fallback of the SQL connector: dialects, statements, row conversion, error kinds.

Used when a :class:`~arrowflow.connectors.sql.SqlSink` / :class:`~arrowflow.connectors.sql.SqlSource`
is given ``connect=`` (a zero-argument factory returning a DB-API 2.0 connection, e.g.
``lambda: pymysql.connect(...)``, or the path of a SQLite database file) instead of an ADBC ``uri``.

This path is for databases without an ADBC driver (MySQL/MariaDB, SQLite through the standard library,
anything with a DB-API module). It cannot stay columnar: DB-API drivers take and return one Python
tuple per row, so writes convert the batch with ``to_pylist`` per column (the casts that make the
values acceptable to the driver are vectorized first) and reads convert ``fetchmany`` rows back with
``pa.array`` per column. Use ADBC where a driver exists; this is the compatibility path.

Dialects (``mysql`` covers MariaDB; ``sqlite``; ``postgresql`` for psycopg and the ADBC path) decide
identifier quoting, the upsert statement, ``OFFSET`` syntax, literal forms and ``CREATE TABLE``
column types. The placeholder style comes from the driver module's ``paramstyle``.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ...errors import ConfigurationError, ConnectorError
from .config import split_table, sql_literal

__all__ = [
    "DIALECTS",
    "Dialect",
    "batch_from_rows",
    "classify_dbapi",
    "connection_factory",
    "describe_factory",
    "detect_dialect",
    "placeholders",
    "rows_for_driver",
]

Factory = Callable[[], Any]

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


@dataclass(frozen=True)
class Dialect:
    """What differs between SQL databases for the statements this connector writes."""

    name: str
    quote_char: str
    #: ``OFFSET n`` needs a ``LIMIT`` before it in MySQL and SQLite.
    offset_prefix: str = ""

    def quote(self, ident: str) -> str:
        q = self.quote_char
        return q + ident.replace(q, q + q) + q

    def quote_table(self, table: str) -> str:
        schema, name = split_table(table)
        return f"{self.quote(schema)}.{self.quote(name)}" if schema else self.quote(name)

    def literal(self, value: Any) -> str:
        """A SQL literal for a bound or last value (SQLite compares timestamps as text with a space)."""
        if self.name == "sqlite":
            # The form ``prepare`` stores (UTC wall time, 6 fractional digits), so text compares in order.
            if isinstance(value, str) and _ISO_DATETIME.match(value):
                try:
                    value = _dt.datetime.fromisoformat(value)
                except ValueError:
                    pass
            if isinstance(value, _dt.datetime):
                if value.tzinfo is not None:
                    value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
                value = value.isoformat(" ", "microseconds")
        return sql_literal(value)

    def offset(self, n: int) -> str:
        return f" {self.offset_prefix}OFFSET {n}" if n else ""

    def upsert_suffix(self, columns: Sequence[str], keys: Sequence[str]) -> str:
        """What follows ``INSERT INTO t (cols) VALUES (...)`` so that a key conflict updates the row."""
        updates = [c for c in columns if c not in keys]
        if self.name == "mysql":
            # VALUES(col) works on MariaDB and MySQL (deprecated, still accepted, in MySQL 8.0.20+).
            sets = [f"{self.quote(c)} = VALUES({self.quote(c)})" for c in updates] or [
                f"{self.quote(keys[0])} = {self.quote(keys[0])}"
            ]
            return " ON DUPLICATE KEY UPDATE " + ", ".join(sets)
        conflict = ", ".join(self.quote(k) for k in keys)
        if not updates:
            return f" ON CONFLICT ({conflict}) DO NOTHING"
        sets = [f"{self.quote(c)} = excluded.{self.quote(c)}" for c in updates]
        return f" ON CONFLICT ({conflict}) DO UPDATE SET " + ", ".join(sets)

    def column_type(self, field: pa.Field, key: bool) -> str:
        """The column type ``CREATE TABLE`` uses for an Arrow field (``key``: part of the primary key)."""
        t = field.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        mysql = self.name == "mysql"
        pg = self.name == "postgresql"
        if pa.types.is_boolean(t):
            return "BOOLEAN"
        if pa.types.is_int8(t):
            return "TINYINT" if mysql else "SMALLINT"
        if pa.types.is_int16(t) or pa.types.is_uint8(t):
            return "SMALLINT"
        if pa.types.is_int32(t) or pa.types.is_uint16(t):
            return "INT" if mysql else "INTEGER"
        if pa.types.is_int64(t) or pa.types.is_uint32(t):
            return "BIGINT"
        if pa.types.is_uint64(t):
            return "BIGINT UNSIGNED" if mysql else "NUMERIC(20)"
        if pa.types.is_float16(t) or pa.types.is_float32(t):
            return "REAL" if not mysql else "FLOAT"
        if pa.types.is_float64(t):
            return "DOUBLE PRECISION" if pg else "DOUBLE"
        if pa.types.is_decimal(t):
            return f"DECIMAL({t.precision}, {t.scale})"
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return "VARCHAR(255)" if mysql and key else "LONGTEXT" if mysql else "TEXT"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            if mysql:
                return "VARBINARY(255)" if key else "LONGBLOB"
            return "BYTEA" if pg else "BLOB"
        if pa.types.is_timestamp(t):
            if mysql:
                return "DATETIME(6)"
            if pg:
                return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
            return "TIMESTAMP"
        if pa.types.is_date(t):
            return "DATE"
        if pa.types.is_time(t):
            return "TIME(6)" if mysql else "TIME"
        raise ConfigurationError(
            f"column {field.name!r} has type {t}, which the DB-API path cannot create a column for "
            "(create the table yourself)",
            option="create",
        )

    def create_table(self, table: str, schema: pa.Schema, keys: Sequence[str] | None) -> str:
        keyset = set(keys or ())
        cols = [f"{self.quote(f.name)} {self.column_type(f, f.name in keyset)}" for f in schema]
        if keys:
            cols.append("PRIMARY KEY (" + ", ".join(self.quote(k) for k in keys) + ")")
        return f"CREATE TABLE IF NOT EXISTS {self.quote_table(table)} ({', '.join(cols)})"

    def prepare(self, table: pa.Table) -> pa.Table:
        """Vectorized casts so the driver accepts every value (before the per-row conversion)."""
        columns = []
        changed = False
        for col in table.columns:
            t = col.type
            new = col
            if pa.types.is_dictionary(t):
                new = col.cast(t.value_type)
                t = t.value_type
            temporal = pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t)
            if self.name == "sqlite" and (temporal or pa.types.is_decimal(t)):
                if pa.types.is_timestamp(t):
                    # One text form for every unit ("YYYY-MM-DD HH:MM:SS.ffffff", UTC wall time), so
                    # that SQLite's text comparisons order timestamps (ns are truncated to us).
                    new = new.cast(pa.timestamp("us"), safe=False)
                new = new.cast(pa.string())
            elif self.name == "mysql" and pa.types.is_timestamp(t) and t.tz is not None:
                new = new.cast(pa.timestamp(t.unit))  # DATETIME has no zone: store the UTC wall time
            elif pa.types.is_large_string(t) or pa.types.is_string_view(t):
                new = new.cast(pa.string())
            changed = changed or new is not col
            columns.append(new)
        return pa.Table.from_arrays(columns, names=table.schema.names) if changed else table


DIALECTS: dict[str, Dialect] = {
    "postgresql": Dialect("postgresql", '"'),
    "mysql": Dialect("mysql", "`", offset_prefix="LIMIT 18446744073709551615 "),
    "sqlite": Dialect("sqlite", '"', offset_prefix="LIMIT -1 "),
}

_MODULE_DIALECTS = {
    "sqlite3": "sqlite",
    "pymysql": "mysql",
    "MySQLdb": "mysql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "psycopg": "postgresql",
    "psycopg2": "postgresql",
    "pg8000": "postgresql",
}


def _driver_module(conn: Any) -> Any:
    return sys.modules.get(type(conn).__module__.split(".")[0])


def detect_dialect(conn: Any) -> Dialect:
    """The dialect of a DB-API connection, from the name of its driver module."""
    root = type(conn).__module__.split(".")[0]
    name = _MODULE_DIALECTS.get(root)
    if name is None:
        raise ConfigurationError(
            f"cannot tell the SQL dialect of a {root} connection: pass dialect='mysql', 'sqlite' or "
            "'postgresql'",
            option="dialect",
        )
    return DIALECTS[name]


def placeholders(conn: Any, n: int) -> list[str]:
    """``n`` parameter markers in the driver's ``paramstyle`` (qmark, numeric, format, pyformat)."""
    module = _driver_module(conn)
    style = getattr(module, "paramstyle", "qmark")
    if style == "qmark":
        return ["?"] * n
    if style == "numeric":
        return [f":{i + 1}" for i in range(n)]
    if style in ("format", "pyformat"):
        return ["%s"] * n
    raise ConfigurationError(f"paramstyle {style!r} of {module!r} is not supported", option="connect")


def connection_factory(connect: Any) -> Factory:
    """A zero-argument factory from ``connect``: a callable is used as is; a ``str``/path names a
    SQLite database file (opened with ``sqlite3.connect``)."""
    if callable(connect):
        return connect  # type: ignore[no-any-return]
    if isinstance(connect, (str, os.PathLike)):
        path = os.fspath(connect)
        return lambda: sqlite3.connect(path, timeout=30.0)
    raise ConfigurationError(
        f"connect must be a callable returning a DB-API connection or a SQLite path, got "
        f"{type(connect).__name__}",
        option="connect",
    )


def describe_factory(connect: Any) -> str:
    if isinstance(connect, (str, os.PathLike)):
        return f"sqlite:{os.fspath(connect)}"
    return f"dbapi:{getattr(connect, '__qualname__', type(connect).__name__)}"


def open_connection(factory: Factory, what: str) -> Any:
    """Call the factory; any failure is a retryable :class:`ConnectorError` (the server may be down)."""
    try:
        return factory()
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConnectorError(
            f"cannot connect ({what}): {type(exc).__name__}: {exc}", retryable=True
        ) from None


def rows_for_driver(table: pa.Table) -> list[tuple[Any, ...]]:
    """The rows of ``table`` as tuples (one Python object per value: the DB-API contract)."""
    if table.num_rows == 0:
        return []
    return list(zip(*(col.to_pylist() for col in table.columns), strict=True))


# -- reading -----------------------------------------------------------------------------------------


def _convert_column(values: Sequence[Any], t: pa.DataType | None) -> pa.Array:
    if t is None:
        return pa.array(values)
    try:
        return pa.array(values, type=t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        # SQLite hands timestamps/dates/decimals back as text, booleans as 0/1: let Arrow cast them.
        return pa.array(values).cast(t)


def _description_type(desc: Any) -> pa.DataType | None:
    """A decimal type from a ``cursor.description`` entry when the driver reports precision/scale."""
    try:
        precision, scale = desc[4], desc[5]
    except (IndexError, TypeError):
        return None
    ints = isinstance(precision, int) and isinstance(scale, int)
    if ints and 0 < precision <= 38 and 0 <= scale <= precision:
        return pa.decimal128(precision, scale)
    return None


def batch_from_rows(
    rows: Sequence[Sequence[Any]],
    names: Sequence[str],
    schema: pa.Schema | None,
    inferred: list[pa.DataType | None],
    description: Sequence[Any] | None = None,
) -> pa.RecordBatch:
    """Rows of ``fetchmany`` -> a batch: with ``schema`` every column is converted to its field's type
    (by name); without it types are inferred by pyarrow and remembered in ``inferred`` (a column that
    is all null so far stays ``null`` until a batch has a value)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    if schema is not None:
        arrays = []
        for f in schema:
            try:
                i = names.index(f.name)
            except ValueError:
                raise ConnectorError(f"the query has no column {f.name!r} named in schema") from None
            arrays.append(_convert_column(columns[i], f.type))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)
    arrays = []
    for i, values in enumerate(columns):
        t = inferred[i]
        if t is None:
            arr = pa.array(values)
            if pa.types.is_decimal(arr.type) and description is not None:
                arr = arr.cast(_description_type(description[i]) or arr.type)
            if not pa.types.is_null(arr.type):
                inferred[i] = arr.type
        else:
            arr = _convert_column(values, t)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


# -- errors ------------------------------------------------------------------------------------------

ROW = "row"
CONNECTION = "connection"
FATAL = "fatal"

#: MySQL/MariaDB client and server error numbers after which a reconnect and retry may succeed.
_MYSQL_CONNECTION_CODES = frozenset({1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055, 4031})
#: MySQL/MariaDB error numbers that reject the data (CHECK constraints, values out of range, ...).
_MYSQL_ROW_CODES = frozenset({1048, 1062, 1264, 1265, 1292, 1366, 1406, 1451, 1452, 3819, 4025})
_PG_MODULES = frozenset({"psycopg", "psycopg2", "pg8000"})
_CONNECTION_WORDS = (
    "lost connection",
    "gone away",
    "server closed",
    "connection refused",
    "connection reset",
    "broken pipe",
    "terminating connection",
    "database is locked",
    "connection already closed",
    "the connection is closed",
)


def classify_dbapi(exc: BaseException) -> str:
    """``ROW`` (the data was rejected), ``CONNECTION`` (reconnect and retry) or ``FATAL``.

    Uses the DB-API exception classes by name (every driver has its own), MySQL error numbers
    (``args[0]``), a SQLSTATE where the driver gives one (class 22/23 row, 08/40/57P connection),
    and, for drivers that give neither, the wording of connection loss.
    """
    if isinstance(exc, ConnectorError):
        return CONNECTION if exc.retryable else FATAL
    if isinstance(exc, (OSError, EOFError)):
        return CONNECTION
    names = {c.__name__ for c in type(exc).__mro__}
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None) or ""
    if not isinstance(sqlstate, str):
        sqlstate = ""
    message = str(exc).lower()
    if code in _MYSQL_CONNECTION_CODES or sqlstate[:2] in ("08", "40") or sqlstate[:3] == "57P":
        return CONNECTION
    if "IntegrityError" in names or "DataError" in names or code in _MYSQL_ROW_CODES:
        return ROW
    if sqlstate[:2] in ("22", "23"):
        return ROW
    if "InterfaceError" in names:
        return CONNECTION
    if any(w in message for w in _CONNECTION_WORDS):
        return CONNECTION
    module = type(exc).__module__.split(".")[0]
    if "OperationalError" in names and code is None and not sqlstate and module in _PG_MODULES:
        # psycopg2/pg8000 without a SQLSTATE: the connection went away.
        return CONNECTION
    return FATAL
