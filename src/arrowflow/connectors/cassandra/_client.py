"""The driver session of the Cassandra sink and source: opened on first use, shipped as options."""

from __future__ import annotations

import threading
from typing import Any

from ...config import reveal
from ...errors import ConnectorError
from .config import CassandraConnection

__all__ = ["SessionHolder", "connect", "quote_ident"]


def quote_ident(name: str) -> str:
    """A CQL identifier, always double-quoted: the exact (case-sensitive) name, and safe for names
    that are CQL keywords (``asc``, ``limit``, ``token``...), which bare would be syntax errors."""
    return '"' + name.replace('"', '""') + '"'


def connect(connection: CassandraConnection) -> tuple[Any, Any]:
    """A new ``(Cluster, Session)`` for ``connection``; the caller shuts the cluster down."""
    from cassandra import ConsistencyLevel
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
    from cassandra.query import tuple_factory

    options = dict(connection.cluster_options)
    if connection.username is not None:
        options.setdefault(
            "auth_provider", PlainTextAuthProvider(connection.username, reveal(connection.password) or "")
        )
    if "execution_profiles" not in options and "load_balancing_policy" not in options:
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=connection.local_dc)),
            request_timeout=connection.request_timeout,
            row_factory=tuple_factory,
        )
        if connection.consistency is not None:
            profile.consistency_level = getattr(ConsistencyLevel, connection.consistency)
        options["execution_profiles"] = {EXEC_PROFILE_DEFAULT: profile}
    cluster = Cluster(list(connection.hosts), port=connection.port, **options)
    try:
        session = cluster.connect(connection.keyspace)
    except Exception as exc:
        cluster.shutdown()
        raise ConnectorError(
            f"cassandra: cannot connect to {list(connection.hosts)}:{connection.port}: {exc}", retryable=True
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
                self._cluster, self._session = connect(self.connection)
            return self._session

    def close(self) -> None:
        with self._lock:
            if self._own and self._cluster is not None:
                self._cluster.shutdown()
                self._cluster = None
                self._session = None
