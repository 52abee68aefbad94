"""Configuration of the SQL (ADBC) connector: frozen keyword-only dataclasses validated at construction.

Both configurations keep the connection URI as a :class:`~arrowflow.config.Secret`, so a password
inside it never shows in a ``repr``; :func:`mask_uri` gives the printable form (password replaced by
``***``), and :func:`scrub` removes the password from any text (error messages of the driver).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from ...config import Secret, check_choice, check_positive, check_type, deprecated_keywords, reveal
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError
from ...retry import Retry

__all__ = [
    "SQL_RETRY",
    "SqlSinkConfig",
    "SqlSourceConfig",
    "mask_uri",
    "quote_ident",
    "quote_table",
    "scrub",
    "split_table",
    "sql_literal",
]

_MODES = ("append", "upsert")


def _uri_password(uri: str) -> str | None:
    try:
        return urlsplit(uri).password
    except ValueError:
        return None


def mask_uri(uri: str | Secret) -> str:
    """``uri`` with its password (``user:password@``) and any ``password=`` parameter replaced by ``***``."""
    text = reveal(uri) or ""
    try:
        parts = urlsplit(text)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, uri: str | Secret) -> str:
    """``text`` with the password of ``uri`` (if any) replaced by ``***``."""
    password = _uri_password(reveal(uri) or "")
    if password:
        text = text.replace(password, "***")
    return text


def split_table(table: str) -> tuple[str | None, str]:
    """``"schema.table"`` -> ``("schema", "table")``; ``"table"`` -> ``(None, "table")``.

    Names with dots inside them are not supported (pass the schema with ``schema.`` prefix only).
    """
    if "." in table:
        schema, _, name = table.partition(".")
        return schema, name
    return None, table


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (embedded quotes doubled), as PostgreSQL and SQL:2003 want."""
    return '"' + name.replace('"', '""') + '"'


def quote_table(table: str) -> str:
    schema, name = split_table(table)
    return f"{quote_ident(schema)}.{quote_ident(name)}" if schema else quote_ident(name)


def sql_literal(value: Any) -> str:
    """A SQL literal for a bound or a last value: numbers bare, anything else a quoted string.

    Timestamps/dates become untyped ISO-8601 string literals, which PostgreSQL coerces to the
    column's type in ``col >= '...'``. Values come from the configuration or the data itself.
    """
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (_dt.datetime, _dt.date)):
        value = value.isoformat()
    text = str(value)
    return "'" + text.replace("'", "''") + "'"


def _check_target(config: Any) -> None:
    """Exactly one of ``uri`` (ADBC) and ``connect`` (DB-API factory or SQLite path); a known dialect."""
    uri, connect = config.uri, config.connect
    if (uri is None) == (connect is None):
        raise ConfigurationError(
            "give exactly one of uri (ADBC) or connect (a DB-API connection factory or a SQLite path)",
            option="uri" if uri is None else "connect",
        )
    if uri is not None:
        if not isinstance(uri, Secret):
            check_type("uri", uri, str)
            uri = Secret(uri)
            object.__setattr__(config, "uri", uri)
        if not uri.reveal():
            raise ConfigurationError("uri must not be empty", option="uri")
    elif not (callable(connect) or isinstance(connect, (str, os.PathLike))):
        raise ConfigurationError(
            "connect must be a callable returning a DB-API connection, or the path of a SQLite database",
            option="connect",
        )
    if config.dialect is not None:
        check_choice("dialect", config.dialect, ("mysql", "sqlite", "postgresql"))
        if uri is not None:
            raise ConfigurationError("dialect applies to connect= (DB-API) only", option="dialect")


def _check_identifier(option: str, value: str | None, *, allow_none: bool = False) -> None:
    check_type(option, value, str, allow_none=allow_none)
    if value is not None and (not value or "\x00" in value):
        raise ConfigurationError(f"{option} must be a non-empty identifier, got {value!r}", option=option)


#: The ADBC drivers the ADBC path speaks to. Its SQL is PostgreSQL's (``to_regclass``, temporary
#: staging tables, ``ON CONFLICT``, ``DELETE ... USING``, the source's quoting and range queries), and
#: other drivers' ``dbapi.connect`` take other arguments: another database goes through ``connect=``
#: (a DB-API factory, with its dialect: MySQL/MariaDB, SQLite, PostgreSQL).
ADBC_DRIVERS = ("adbc_driver_postgresql",)


def _check_driver(driver: str) -> None:
    if driver not in ADBC_DRIVERS:
        raise ConfigurationError(
            f"driver must be one of {ADBC_DRIVERS} (the ADBC path speaks PostgreSQL only), got {driver!r}; "
            "for another database pass connect= (a DB-API connection factory, or a SQLite path)",
            option="driver",
        )


#: How :class:`~arrowflow.connectors.sql.SqlSink` retries a flush unless configured (0.1.0's
#: defaults): six attempts (five retries), full-jitter waits from 0.2 s doubling up to 5 s; retried
#: are connection loss and attempts that overran ``timeout`` (``classify`` sees a
#: :class:`~arrowflow.errors.ConnectorError` whose ``retryable`` says so).
SQL_RETRY = Retry(max_attempts=6, initial_backoff=0.2, max_backoff=5.0)


def _fold_legacy_retry(kwargs: dict[str, Any], old: dict[str, Any]) -> None:
    """0.1.0's ``max_retries`` (retries after the first attempt) and ``retry_backoff`` (the first
    wait, doubling up to 5 s) as ``retry``, on top of :data:`SQL_RETRY`."""
    if "max_retries" in old:
        value = old["max_retries"]
        check_type("max_retries", value, int)
        if isinstance(value, bool) or value < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {value!r}", option="max_retries")
    if "retry_backoff" in old:
        check_positive("retry_backoff", old["retry_backoff"])
    base = kwargs.get("retry", SQL_RETRY)
    if base != SQL_RETRY:
        raise ConfigurationError(
            f"give retry or the deprecated {', '.join(old)}, not both", option=next(iter(old))
        )
    initial = old.get("retry_backoff", base.initial_backoff)
    kwargs["retry"] = dataclasses.replace(
        base,
        max_attempts=old["max_retries"] + 1 if "max_retries" in old else base.max_attempts,
        initial_backoff=initial,
        max_backoff=max(base.max_backoff, initial),  # 0.1.0 refused a first wait over 5 s
    )


def _legacy_retry(config: SqlSinkConfig, name: str) -> Any:
    if name == "retry_backoff":
        return config.retry.initial_backoff
    attempts = config.retry.max_attempts
    return None if attempts is None else attempts - 1


@deprecated_keywords(
    "max_retries",
    "retry_backoff",
    advice=lambda old: (
        "retry=Retry(...) (max_retries=n is max_attempts=n + 1, retry_backoff is initial_backoff)"
    ),
    fold=_fold_legacy_retry,
    read=_legacy_retry,
)
@dataclass(frozen=True, kw_only=True)
class SqlSinkConfig:
    """Options of :class:`~arrowflow.connectors.sql.SqlSink` (see there for their meaning).

    ``retry``: how a flush is retried (:data:`SQL_RETRY`). 0.1.0's ``max_retries`` and
    ``retry_backoff`` still work, with a ``DeprecationWarning``: they are folded into ``retry``
    (``max_attempts = max_retries + 1``, ``initial_backoff = retry_backoff``).
    """

    uri: Secret | None = None
    table: str
    driver: str = "adbc_driver_postgresql"
    connect: Any = None
    dialect: str | None = None
    mode: str = "append"
    keys: tuple[str, ...] | None = None
    create: bool = False
    delete_column: str | None = None
    flush_rows: int = 100_000
    flush_interval: float | None = 5.0
    retry: Retry = SQL_RETRY
    db_kwargs: Mapping[str, str] = field(default_factory=dict)
    error_policy: ErrorPolicyLike = "fail"
    timeout: float | None = 60.0

    def __post_init__(self) -> None:
        _check_target(self)
        _check_identifier("table", self.table)
        check_type("driver", self.driver, str)
        _check_driver(self.driver)
        check_choice("mode", self.mode, _MODES)
        if self.keys is not None:
            if isinstance(self.keys, str):
                object.__setattr__(self, "keys", (self.keys,))
            else:
                check_type("keys", self.keys, (list, tuple))
                object.__setattr__(self, "keys", tuple(self.keys))
            assert self.keys is not None
            if not self.keys:
                raise ConfigurationError("keys must name at least one column", option="keys")
            for k in self.keys:
                _check_identifier("keys", k)
        if self.mode == "upsert" and not self.keys:
            raise ConfigurationError("mode='upsert' needs keys (the conflict columns)", option="keys")
        check_type("create", self.create, bool)
        _check_identifier("delete_column", self.delete_column, allow_none=True)
        if self.delete_column is not None and self.mode != "upsert":
            raise ConfigurationError(
                "delete_column needs mode='upsert' (deletes are keyed)", option="delete_column"
            )
        if self.delete_column is not None and self.keys and self.delete_column in self.keys:
            raise ConfigurationError("delete_column must not be a key column", option="delete_column")
        check_type("flush_rows", self.flush_rows, int)
        check_positive("flush_rows", self.flush_rows)
        check_positive("flush_interval", self.flush_interval, allow_none=True)
        check_type("retry", self.retry, Retry)
        check_type("db_kwargs", self.db_kwargs, Mapping, allow_none=True)
        object.__setattr__(self, "db_kwargs", {str(k): str(v) for k, v in (self.db_kwargs or {}).items()})
        check_positive("timeout", self.timeout, allow_none=True)


@dataclass(frozen=True, kw_only=True)
class SqlSourceConfig:
    """Options of :class:`~arrowflow.connectors.sql.SqlSource` (see there for their meaning)."""

    uri: Secret | None = None
    query: str | None = None
    table: str | None = None
    driver: str = "adbc_driver_postgresql"
    connect: Any = None
    dialect: str | None = None
    schema: pa.Schema | None = None
    partition_column: str | None = None
    lower_bound: Any = None
    upper_bound: Any = None
    num_partitions: int = 1
    keyset: bool = False
    incremental_column: str | None = None
    poll_interval: float = 1.0
    batch_size: int = 65536
    db_kwargs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_target(self)
        if (self.query is None) == (self.table is None):
            raise ConfigurationError("give exactly one of query or table", option="query")
        check_type("query", self.query, str, allow_none=True)
        _check_identifier("table", self.table, allow_none=True)
        check_type("driver", self.driver, str)
        _check_driver(self.driver)
        _check_identifier("partition_column", self.partition_column, allow_none=True)
        _check_identifier("incremental_column", self.incremental_column, allow_none=True)
        check_type("num_partitions", self.num_partitions, int)
        check_positive("num_partitions", self.num_partitions)
        check_type("keyset", self.keyset, bool)
        for name in ("lower_bound", "upper_bound"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float, str, _dt.date, _dt.datetime))
            ):
                raise ConfigurationError(
                    f"{name} must be a number, a date/datetime or an ISO string, got {type(value).__name__}",
                    option=name,
                )
        if self.incremental_column is not None and self.partition_column is not None:
            raise ConfigurationError(
                "incremental_column and partition_column exclude each other", option="incremental_column"
            )
        if self.num_partitions > 1 and self.partition_column is None:
            raise ConfigurationError("num_partitions > 1 needs partition_column", option="num_partitions")
        if self.keyset and self.partition_column is None:
            raise ConfigurationError("keyset=True needs a (unique) partition_column", option="keyset")
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        check_positive("poll_interval", self.poll_interval)
        check_type("batch_size", self.batch_size, int)
        check_positive("batch_size", self.batch_size)
        check_type("db_kwargs", self.db_kwargs, Mapping, allow_none=True)
        object.__setattr__(self, "db_kwargs", {str(k): str(v) for k, v in (self.db_kwargs or {}).items()})

    @property
    def incremental(self) -> bool:
        return self.incremental_column is not None
