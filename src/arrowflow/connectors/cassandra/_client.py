"""The driver session of the Cassandra sink and source: opened on first use, shipped as options."""

from __future__ import annotations

import threading
from typing import Any

from .config import CassandraConnection

__all__ = ["SessionHolder", "quote_ident"]


def quote_ident(name: str) -> str:
    """A CQL identifier, always double-quoted: the exact (case-sensitive) name, and safe for names
    that are CQL keywords (``asc``, ``limit``, ``token``...), which bare would be syntax errors."""
    return '"' + name.replace('"', '""') + '"'


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
