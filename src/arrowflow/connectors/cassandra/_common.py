"""Connection options and Arrow <-> driver value conversion shared by the Cassandra sink and source.

The DataStax driver (``cassandra-driver``) serializes and parses values itself and only accepts
Python objects per row, so the conversions here are column by column: one Arrow kernel or one list
comprehension per column, never a Python loop over the rows of the whole batch with per-cell type
dispatch. Where the driver accepts a cheaper representation, that one is used (timestamps as int
milliseconds, dates as the offset day count the protocol carries).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import Secret, check_choice, check_positive, check_type, reveal
from ...errors import ConfigurationError, ConnectorError, SerializationError

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
MIN_TOKEN = -(2**63)
MAX_TOKEN = 2**63 - 1
_DATE_OFFSET = 2**31  # the protocol's date: days since the epoch + 2**31, unsigned
_SIMPLE_IDENT = re.compile(r"[a-z][a-z0-9_]*")


def quote_ident(name: str) -> str:
    """A CQL identifier: bare when it is lower-case and simple, else double-quoted."""
    if _SIMPLE_IDENT.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


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


class SessionHolder:
    """A session created on first use (and shut down by :meth:`close`), or one given by the user."""

    def __init__(self, connection: CassandraConnection, session: Any = None) -> None:
        self.connection = connection
        self._session = session
        self._own = session is None
        self._cluster: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Shipped to another process (Ray read tasks): only the options travel; the receiver opens
        # its own session (a user-given session cannot travel and is replaced by one of its own).
        return {"connection": self.connection}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["connection"])  # type: ignore[misc]

    @property
    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                self._cluster, self._session = self.connection.connect()
            return self._session

    def close(self) -> None:
        with self._lock:
            if self._own and self._cluster is not None:
                self._cluster.shutdown()
                self._cluster = None
                self._session = None


# -------------------------------------------------------------------------------- Arrow -> driver


def _with_nulls(values: list[Any], col: pa.Array, null: Any = None) -> list[Any]:
    if col.null_count:
        mask = col.is_null().to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(mask).tolist():
            values[i] = null
    return values


def _cql_typename(cqltype: Any) -> str:
    return str(getattr(cqltype, "typename", "") or "")


def column_to_driver(col: pa.Array, cqltype: Any, *, null: Any = None) -> list[Any]:
    """One Arrow column -> the Python values the driver serializes for ``cqltype`` (a cqltypes class).

    Vectorized where the driver allows it: timestamps become int milliseconds (floor) and dates the
    offset day count, computed with numpy; uuids from strings or 16-byte binaries and maps (the driver
    wants dicts) take one comprehension over the column. ``null`` replaces nulls (``UNSET_VALUE`` for
    ``ignore_null_fields``).
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    values = _to_driver(col, _cql_typename(cqltype))
    return _with_nulls(values, col, null) if (null is not None or _needs_null_fill(col)) else values


def _needs_null_fill(col: pa.Array) -> bool:
    t = col.type
    return bool(col.null_count) and (pa.types.is_timestamp(t) or pa.types.is_date(t))


def _to_driver(col: pa.Array, name: str) -> list[Any]:
    t = col.type
    if pa.types.is_timestamp(t) or pa.types.is_date64(t):
        raw = pc.cast(col, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        if pa.types.is_timestamp(t):
            div = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}[t.unit]
            ms = raw * 1000 if div is None else np.floor_divide(raw, div)
        else:
            ms = raw
        if name == "date":
            return (np.floor_divide(ms, 86_400_000) + _DATE_OFFSET).tolist()  # type: ignore[no-any-return]
        return ms.tolist()  # type: ignore[no-any-return]
    if pa.types.is_date32(t):
        days32 = pc.cast(col, pa.int32()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        if name == "timestamp":
            return (days32 * 86_400_000).tolist()  # type: ignore[no-any-return]
        return (days32 + _DATE_OFFSET).tolist()  # type: ignore[no-any-return]
    if name in ("uuid", "timeuuid"):
        if pa.types.is_fixed_size_binary(t) and t.byte_width == 16:
            return [None if b is None else uuid.UUID(bytes=b) for b in col.to_pylist()]
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            try:
                return [None if s is None else uuid.UUID(s) for s in col.to_pylist()]
            except ValueError as exc:
                raise SerializationError(f"not a UUID: {exc}") from exc
    if name == "map" and pa.types.is_map(t):
        return [None if v is None else dict(v) for v in col.to_pylist()]
    if name == "blob" and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        col = pc.cast(col, pa.binary())
    return col.to_pylist()  # type: ignore[no-any-return]


# -------------------------------------------------------------------------------- driver -> Arrow


def arrow_type_for(cqltype: Any) -> pa.DataType:
    """The default Arrow type of a CQL type (a ``cassandra.cqltypes`` class)."""
    name = _cql_typename(cqltype)
    simple = {
        "int": pa.int32(),
        "bigint": pa.int64(),
        "counter": pa.int64(),
        "smallint": pa.int16(),
        "tinyint": pa.int8(),
        "double": pa.float64(),
        "float": pa.float32(),
        "boolean": pa.bool_(),
        "text": pa.string(),
        "varchar": pa.string(),
        "ascii": pa.string(),
        "blob": pa.binary(),
        "timestamp": pa.timestamp("ms"),
        "date": pa.date32(),
        "time": pa.time64("ns"),
        "uuid": pa.string(),
        "timeuuid": pa.string(),
        "inet": pa.string(),
        "varint": pa.string(),
        "decimal": pa.string(),
    }
    if name in simple:
        return simple[name]
    subs: Sequence[Any] = getattr(cqltype, "subtypes", ())
    if name in ("list", "set"):
        return pa.list_(arrow_type_for(subs[0]))
    if name == "map":
        return pa.map_(arrow_type_for(subs[0]), arrow_type_for(subs[1]))
    raise SerializationError(f"cassandra: CQL type {name or cqltype!r} has no Arrow mapping; give a schema")


def _scalar_fn(cqlname: str, target: pa.DataType) -> Any:
    """A per-value conversion of a driver value into something ``pa.array(type=target)`` takes."""
    if cqlname == "date":
        return lambda v: v.days_from_epoch
    if cqlname in ("uuid", "timeuuid"):
        if pa.types.is_fixed_size_binary(target):
            return lambda v: v.bytes
        return str
    if cqlname in ("inet", "varint") or (cqlname == "decimal" and pa.types.is_string(target)):
        return str
    if cqlname == "time":
        return lambda v: v.nanosecond_time
    return None


def column_from_driver(values: Sequence[Any], cqltype: Any, target: pa.DataType) -> pa.Array:
    """One column of a page (driver values) -> an Arrow array of ``target``.

    ``pa.array`` converts in C; only values the driver returns as its own classes (``util.Date``,
    ``UUID``, ``SortedSet``, ``OrderedMapSerializedKey``, ``util.Time``) take one comprehension first.
    """
    name = _cql_typename(cqltype)
    fn = _scalar_fn(name, target)
    if fn is not None:
        vals = [None if v is None else fn(v) for v in values]
        if name == "date":
            return pc.cast(pa.array(vals, pa.int32()), target)
        if name == "time":
            return pc.cast(pa.array(vals, pa.int64()), target)
        return pa.array(vals, target)
    if name == "timestamp" and pa.types.is_timestamp(target):
        # CQL timestamps are whole milliseconds, but the driver decodes them through a float and
        # far from the epoch its datetimes may be 1 us off either way: round to the nearest ms.
        us = pa.array(values, pa.timestamp("us"))
        raw = pc.cast(us, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        ms = np.floor_divide(raw + 500, 1000)
        mask = us.is_null().to_numpy(zero_copy_only=False) if us.null_count else None
        out = pa.array(ms, pa.int64(), mask=mask).cast(pa.timestamp("ms"))
        return out if target == out.type else pc.cast(out, target)
    if name == "set":
        return pa.array([None if v is None else list(v) for v in values], target)
    if name == "map":
        return pa.array([None if v is None else list(v.items()) for v in values], target)
    return pa.array(values, target)
