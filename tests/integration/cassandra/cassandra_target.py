"""Where the Cassandra tests run: the CQL protocol test server, or real Cassandra when asked.

``ARROWFLOW_CASSANDRA_HOSTS`` (``host[:port],host[:port]``) points the suite at a real cluster;
without it the suite starts :class:`cql_test_server.CqlTestServer` (NOT Cassandra) in-process on a
free loopback port. Either way the tests talk to the server over a socket with the real
``cassandra-driver``. Tests that need fault injection always use a protocol test server.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

from cql_test_server import CqlTestServer

KEYSPACE = "arrowflow_it"
# The driver options the protocol test server needs (and that work against Cassandra too).
CLUSTER_OPTIONS: dict[str, Any] = {
    "protocol_version": 4,
    "schema_metadata_enabled": False,
    "token_metadata_enabled": False,
}


@dataclass
class Target:
    """One server: ``hosts``/``port`` to connect to; ``server`` when it is the protocol test server."""

    hosts: tuple[str, ...]
    port: int
    server: CqlTestServer | None = None
    _cluster: Any = field(default=None, repr=False)
    _session: Any = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return "cql-test-server" if self.server is not None else "cassandra"

    def connection(self, **extra: Any) -> dict[str, Any]:
        """Options for ``CassandraConnection`` (keyspace ``arrowflow_it``)."""
        opts: dict[str, Any] = {
            "hosts": self.hosts,
            "port": self.port,
            "keyspace": KEYSPACE,
            "cluster_options": dict(CLUSTER_OPTIONS),
        }
        opts.update(extra)
        return opts

    @property
    def session(self) -> Any:
        """A session of the tests' own (named tuples), in keyspace ``arrowflow_it``."""
        if self._session is None:
            from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
            from cassandra.policies import RoundRobinPolicy

            profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
            self._cluster = Cluster(
                list(self.hosts),
                port=self.port,
                execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                **CLUSTER_OPTIONS,
            )
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

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
        if self.server is not None:
            self.server.stop()


def _parse_hosts(spec: str) -> tuple[tuple[str, ...], int]:
    hosts = []
    port = 9042
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        host, _, p = part.partition(":")
        hosts.append(host)
        if p:
            port = int(p)
    return tuple(hosts), port


def start_target(*, force_test_server: bool = False) -> Target:
    """The real cluster from ``ARROWFLOW_CASSANDRA_HOSTS``, else a started protocol test server."""
    spec = os.environ.get("ARROWFLOW_CASSANDRA_HOSTS", "").strip()
    if spec and not force_test_server:
        hosts, port = _parse_hosts(spec)
        try:
            with socket.create_connection((hosts[0], port), timeout=5):
                pass
        except OSError as exc:
            raise RuntimeError(f"ARROWFLOW_CASSANDRA_HOSTS={spec!r} does not answer: {exc}") from exc
        return Target(hosts, port)
    server = CqlTestServer().start()
    return Target(("127.0.0.1",), server.port, server)
