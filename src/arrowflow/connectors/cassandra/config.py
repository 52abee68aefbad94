"""The options of the Cassandra sink and source, and of the connection both use, checked in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ...config import Secret, check_choice, check_positive, check_type, reveal
from ...errors import ConfigurationError, ConnectorError
from ...writer import BatchingConfig, legacy_batching

__all__ = [
    "CASSANDRA_BATCHING",
    "CONSISTENCY_LEVELS",
    "CassandraConnection",
    "CassandraSinkConfig",
    "CassandraSourceConfig",
    "split_table",
]

CONSISTENCY_LEVELS = (
    "ANY",
    "ONE",
    "TWO",
    "THREE",
    "QUORUM",
    "ALL",
    "LOCAL_QUORUM",
    "EACH_QUORUM",
    "LOCAL_ONE",
)


def split_table(table: str, keyspace: str | None, option: str = "table") -> tuple[str, str]:
    """``"ks.table"`` or ``"table"`` (with ``keyspace``) -> (keyspace, table)."""
    check_type(option, table, str)
    parts = table.split(".")
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    if len(parts) == 1 and parts[0] and keyspace:
        return keyspace, parts[0]
    raise ConfigurationError(
        f"{option}={table!r}: give 'keyspace.table', or 'table' with connection.keyspace", option=option
    )


@dataclass(frozen=True, kw_only=True)
class CassandraConnection:
    """How to reach the cluster.

    ``hosts`` (contact points) and ``port``; ``keyspace`` (the session's keyspace, optional);
    ``consistency`` (a ``cassandra.ConsistencyLevel`` name; ``None``: the driver's default,
    LOCAL_ONE); ``local_dc`` for the default DC-aware, token-aware load balancing; ``username`` /
    ``password`` for ``PlainTextAuthProvider``; ``request_timeout`` seconds per request;
    ``cluster_options``: passed through to ``cassandra.cluster.Cluster`` unchanged (e.g.
    ``protocol_version``, ``schema_metadata_enabled``, ``ssl_context``, ``execution_profiles``).
    """

    hosts: tuple[str, ...] = ("127.0.0.1",)
    port: int = 9042
    keyspace: str | None = None
    consistency: str | None = None
    local_dc: str | None = None
    username: str | None = None
    password: str | Secret | None = None
    request_timeout: float = 10.0
    cluster_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hosts = self.hosts
        if isinstance(hosts, str):
            hosts = tuple(h.strip() for h in hosts.split(",") if h.strip())
        check_type("hosts", hosts, (tuple, list))
        if not hosts or not all(isinstance(h, str) and h for h in hosts):
            raise ConfigurationError("hosts must hold at least one host name", option="hosts")
        object.__setattr__(self, "hosts", tuple(hosts))
        check_type("port", self.port, int)
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"port={self.port!r} is not a TCP port", option="port")
        check_type("keyspace", self.keyspace, str, allow_none=True)
        if self.consistency is not None:
            check_type("consistency", self.consistency, str)
            object.__setattr__(self, "consistency", self.consistency.upper())
            check_choice("consistency", self.consistency.upper(), CONSISTENCY_LEVELS)
        check_type("local_dc", self.local_dc, str, allow_none=True)
        check_type("username", self.username, str, allow_none=True)
        if self.password is not None and not isinstance(self.password, Secret):
            check_type("password", self.password, str)
            object.__setattr__(self, "password", Secret(self.password))
        if (self.username is None) != (self.password is None):
            raise ConfigurationError("give both username and password, or neither", option="username")
        check_positive("request_timeout", self.request_timeout)
        check_type("cluster_options", self.cluster_options, Mapping)
        object.__setattr__(self, "cluster_options", dict(self.cluster_options))
        if "contact_points" in self.cluster_options or "port" in self.cluster_options:
            raise ConfigurationError(
                "set hosts/port as options, not in cluster_options", option="cluster_options"
            )

    @classmethod
    def coerce(cls, value: CassandraConnection | Mapping[str, Any] | None) -> CassandraConnection:
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        check_type("connection", value, Mapping)
        options: Mapping[str, Any] = value  # type: ignore[assignment]
        return cls(**dict(options))

    def connect(self) -> tuple[Any, Any]:
        """A new ``(Cluster, Session)``; the caller shuts the cluster down."""
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
        from cassandra.query import tuple_factory

        options = dict(self.cluster_options)
        if self.username is not None:
            options.setdefault(
                "auth_provider", PlainTextAuthProvider(self.username, reveal(self.password) or "")
            )
        if "execution_profiles" not in options and "load_balancing_policy" not in options:
            profile = ExecutionProfile(
                load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.local_dc)),
                request_timeout=self.request_timeout,
                row_factory=tuple_factory,
            )
            if self.consistency is not None:
                profile.consistency_level = getattr(ConsistencyLevel, self.consistency)
            options["execution_profiles"] = {EXEC_PROFILE_DEFAULT: profile}
        cluster = Cluster(list(self.hosts), port=self.port, **options)
        try:
            session = cluster.connect(self.keyspace)
        except Exception as exc:
            cluster.shutdown()
            raise ConnectorError(
                f"cassandra: cannot connect to {list(self.hosts)}:{self.port}: {exc}", retryable=True
            ) from exc
        return cluster, session


#: The sink's batching unless configured (0.1.0's defaults): requests of 2000 rows (no byte limit:
#: statements are sent one by one or in per-partition batches, see ``max_batch_bytes``), two requests
#: in flight, 20,000 rows buffered, 1 s in the buffer, 6 attempts with 0.05 s -> 5 s backoff.
CASSANDRA_BATCHING = BatchingConfig(
    max_request_rows=2000,
    max_request_bytes=None,
    max_in_flight=2,
    max_buffered_rows=20_000,
    max_time_in_buffer=1.0,
    max_attempts=6,
)


@legacy_batching(
    "request_rows",
    "max_in_flight_requests",
    "max_buffered_rows",
    "flush_interval",
    "max_retries",
    "initial_backoff",
    "max_backoff",
)
@dataclass(frozen=True, kw_only=True)
class CassandraSinkConfig:
    """Options of :class:`~arrowflow.connectors.cassandra.sink.CassandraSink` (see its module docstring).

    Exactly one of ``table`` (``"ks.table"``, or ``"table"`` with ``connection.keyspace``) and
    ``statement``. ``columns``: for ``table``, the columns to insert (default: every column of the
    batch); for ``statement``, the batch columns bound to the markers in order (default: by the
    markers' names). ``partition_key``: the partition key columns, for ``batch_by_partition`` and the
    null-key check (default: from the prepared statement's routing key). ``idempotent``: ``None`` =
    True for a generated INSERT, False for a user statement. ``batching``: requests, threads and
    retries (:data:`CASSANDRA_BATCHING`).

    0.1.0's request and retry options (``request_rows``, ``max_in_flight_requests``,
    ``max_buffered_rows``, ``flush_interval``, ``max_retries``, ``initial_backoff``,
    ``max_backoff``) still work, with a ``DeprecationWarning``: they are folded into ``batching``.
    """

    table: str | None = None
    statement: str | None = None
    columns: tuple[str, ...] | None = None
    partition_key: tuple[str, ...] | None = None
    ignore_null_fields: bool = False
    batch_by_partition: bool = False
    max_batch_statements: int = 50
    max_batch_bytes: int = 1 << 20
    concurrency: int = 64
    idempotent: bool | None = None
    batching: BatchingConfig = CASSANDRA_BATCHING

    def __post_init__(self) -> None:
        if (self.table is None) == (self.statement is None):
            raise ConfigurationError("give exactly one of table and statement", option="table")
        check_type("table", self.table, str, allow_none=True)
        check_type("statement", self.statement, str, allow_none=True)
        if self.statement is not None and "?" not in self.statement and ":" not in self.statement:
            raise ConfigurationError("statement has no bind markers ('?')", option="statement")
        for name in ("columns", "partition_key"):
            object.__setattr__(self, name, _column_names(name, getattr(self, name)))
        for name in ("ignore_null_fields", "batch_by_partition"):
            check_type(name, getattr(self, name), bool)
        check_type("idempotent", self.idempotent, bool, allow_none=True)
        for name in ("max_batch_statements", "max_batch_bytes", "concurrency"):
            check_type(name, getattr(self, name), int)
            check_positive(name, getattr(self, name))
        check_type("batching", self.batching, BatchingConfig)


@dataclass(frozen=True, kw_only=True)
class CassandraSourceConfig:
    """Options of :class:`~arrowflow.connectors.cassandra.source.CassandraSource` (see its module
    docstring).

    ``table``: ``"ks.table"`` (or ``"table"`` with ``connection.keyspace``); ``columns`` projects
    (default: every column); ``schema`` fixes the Arrow types (and, without ``columns``, the columns);
    ``partition_key`` names the partition key columns for ``token()`` (default: from the server);
    ``splits`` token ranges; ``page_size`` rows per page (per batch).
    """

    table: str
    columns: tuple[str, ...] | None = None
    schema: pa.Schema | None = None
    partition_key: tuple[str, ...] | None = None
    splits: int = 8
    page_size: int = 5000

    def __post_init__(self) -> None:
        check_type("table", self.table, str)
        columns = _column_names("columns", self.columns)
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        if self.schema is not None:
            if columns is not None and list(self.schema.names) != list(columns):
                raise ConfigurationError("schema must name the same columns as columns", option="schema")
            columns = tuple(self.schema.names)
        object.__setattr__(self, "columns", columns)
        key = _column_names("partition_key", self.partition_key or None)
        object.__setattr__(self, "partition_key", key)
        for name in ("splits", "page_size"):
            check_type(name, getattr(self, name), int)
            check_positive(name, getattr(self, name))


def _column_names(option: str, value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """``value`` (a name or names) as a non-empty tuple of column names, or None."""
    if isinstance(value, str):
        value = (value,)
    check_type(option, value, (tuple, list), allow_none=True)
    if value is None:
        return None
    if not value or not all(isinstance(c, str) and c for c in value):
        raise ConfigurationError(f"{option} must hold column names", option=option)
    return tuple(value)
