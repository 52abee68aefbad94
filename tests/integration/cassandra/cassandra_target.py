"""The Cassandra the tests run against: the real Apache Cassandra 5.0 that ``tests/services/cassandra.sh``
starts (``CASSANDRA_PORT``, default 9042), reached with the driver's defaults (negotiated protocol,
token-aware load balancing, schema and token metadata on), and, for the retry tests, the same server
behind :class:`cql_fault_proxy.CqlFaultProxy`.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from cql_fault_proxy import CqlFaultProxy

KEYSPACE = "arrowflow_it"
#: What a client of the fault proxy must use (see cql_fault_proxy.py).
PROXY_OPTIONS: dict[str, Any] = {"protocol_version": 4, "compression": False}


@dataclass
class Target:
    """One server: ``hosts``/``port`` to connect to; ``proxy`` when it is the fault proxy."""

    hosts: tuple[str, ...]
    port: int
    proxy: CqlFaultProxy | None = None
    _cluster: Any = field(default=None, repr=False)
    _session: Any = field(default=None, repr=False)

    def connection(self, **extra: Any) -> dict[str, Any]:
        """Options for ``CassandraConnection`` (keyspace ``arrowflow_it``; the driver's defaults)."""
        opts: dict[str, Any] = {"hosts": self.hosts, "port": self.port, "keyspace": KEYSPACE}
        if self.proxy is not None:
            opts["cluster_options"] = dict(PROXY_OPTIONS)
        opts.update(extra)
        return opts

    @property
    def session(self) -> Any:
        """A session of the tests' own (named tuples, driver defaults), in keyspace ``arrowflow_it``."""
        if self._session is None:
            from cassandra.cluster import Cluster

            options = dict(PROXY_OPTIONS) if self.proxy is not None else {}
            self._cluster = Cluster(list(self.hosts), port=self.port, **options)
            s = self._cluster.connect()
            s.execute(
                f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}"
            )
            s.set_keyspace(KEYSPACE)
            self._session = s
        return self._session

    def new_table(self, columns: str, primary_key: str) -> str:
        """Create a table with a fresh name; returns ``arrowflow_it.<name>``."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.session.execute(f"CREATE TABLE {KEYSPACE}.{name} ({columns}, PRIMARY KEY ({primary_key}))")
        return f"{KEYSPACE}.{name}"

    def drop(self, table: str) -> None:
        self.session.execute(f"DROP TABLE IF EXISTS {table}")

    def writes(self, table: str) -> int:
        """Mutations the server applied to ``table`` since it was created: Cassandra's own per-table
        write counter (the ``WriteLatency`` metric, read from ``system_views.local_write_latency``)."""
        ks, name = table.split(".")
        row = self.session.execute(
            "SELECT count FROM system_views.local_write_latency WHERE keyspace_name = %s AND table_name = %s",
            (ks, name),
        ).one()
        return 0 if row is None else int(row.count)

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
        if self.proxy is not None:
            self.proxy.close()


def real_target(host: str = "127.0.0.1", port: int | None = None) -> Target:
    """The real server (``port`` default: ``CASSANDRA_PORT`` or 9042); FAILS the test when it does not
    answer (never a skip)."""
    port = int(os.environ.get("CASSANDRA_PORT", "9042")) if port is None else port
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError:
        pytest.fail(
            f"Cassandra is not answering on {host}:{port} (env CASSANDRA_PORT); start it with "
            "`sh tests/services/up.sh cassandra` or run the suite with `make test`",
            pytrace=False,
        )
    return Target((host,), port)


def proxy_target(host: str, port: int) -> Target:
    """The real server behind a fresh fault proxy on a free loopback port."""
    proxy = CqlFaultProxy((host, port))
    return Target(("127.0.0.1",), proxy.port, proxy)
