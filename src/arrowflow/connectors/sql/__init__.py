"""SQL databases over ADBC (Flink's JDBC connector, the Arrow way); extra ``arrowflow[postgres]``.

* :class:`SqlSink`: append by COPY (``adbc_ingest``) or keyed upsert through a staging table, one
  transaction per flush, reconnect-and-retry on connection loss, bad rows isolated for the error policy.
* :class:`SqlSource`: a bounded query split into ranges of a numeric/timestamp column, or an
  incremental poll of ``col > last_value``.

Tested against PostgreSQL 15 with ``adbc-driver-postgresql``. ADBC is imported only when a connection
is opened, so importing this package needs no driver.
"""

from __future__ import annotations

from .config import SqlSinkConfig, SqlSourceConfig, mask_uri
from .sink import SqlSink, dedupe_last
from .source import SqlSource

__all__ = ["SqlSink", "SqlSinkConfig", "SqlSource", "SqlSourceConfig", "dedupe_last", "mask_uri"]
