"""Apache Cassandra (and CQL-compatible servers) through the DataStax driver; extra ``arrowflow[cassandra]``.

* :class:`CassandraSink`: a prepared INSERT built from the columns (or a user CQL statement), run
  concurrently with a bound on statements in flight, optional UNLOGGED batches per partition,
  retries of retryable errors, the error policy for the rest; idempotent for keyed upserts.
* :class:`CassandraSource`: a bounded read split by Murmur3 token ranges that follow the ring, one
  page per batch, resumable from the paging state.

Tested against Apache Cassandra 5.0 (one node, 16 vnodes; ``tests/services/cassandra.sh``) with the
driver's default load balancing and metadata. The driver is imported only when a session is opened,
so importing this package needs no driver.
"""

from __future__ import annotations

from ._convert import arrow_type_for, column_from_driver, column_to_driver
from .config import CASSANDRA_BATCHING, CassandraConnection, CassandraSinkConfig, CassandraSourceConfig
from .sink import CassandraSink, is_retryable_cassandra_error
from .source import CassandraRangeReader, CassandraSource, token_ranges

__all__ = [
    "CASSANDRA_BATCHING",
    "CassandraConnection",
    "CassandraRangeReader",
    "CassandraSink",
    "CassandraSinkConfig",
    "CassandraSource",
    "CassandraSourceConfig",
    "arrow_type_for",
    "column_from_driver",
    "column_to_driver",
    "is_retryable_cassandra_error",
    "token_ranges",
]
