"""The conformance suite over CassandraSource and CassandraSink.

The server is the real Apache Cassandra 5.0 of ``tests/services/cassandra.sh`` (``CASSANDRA_PORT``,
default 9042; a missing server fails the tests, never skips them), reached with the driver's defaults.
Every test uses its own table.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "cassandra"))

from cassandra_target import Target, real_target

from arrowflow.connectors.cassandra import CassandraSink, CassandraSource
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

COLUMNS = "id bigint, value double, name text, flag boolean, count int, ts timestamp"
_TARGET: list[Target] = []


@pytest.fixture(scope="module", autouse=True)
def _server() -> Iterator[None]:
    _TARGET.append(real_target())
    yield
    _TARGET.pop().close()


def _ms(table: pa.Table) -> pa.Table:
    """CQL timestamps hold milliseconds: the expected ``ts`` floored to ms (kept as timestamp[us])."""
    i = table.schema.get_field_index("ts")
    us = pc.cast(table.column("ts"), pa.int64())
    floored = pc.multiply(pc.divide(us, 1000), 1000)  # ids are after 1970: truncation == floor
    return table.set_column(i, "ts", pc.cast(floored, pa.timestamp("us")))


class _Table:
    def new_table(self) -> str:
        target = _TARGET[-1]
        name = target.new_table(COLUMNS, "id")
        self.add_cleanup(lambda: target.drop(name))  # type: ignore[attr-defined]
        return name


class TestCassandraSource(_Table, SourceConformance):
    splits = 1
    ordered_per_split = False  # rows come back in token order

    def make_source(self, data: pa.Table) -> Source:
        if not hasattr(self, "_name"):
            self._name = self.new_table()
            with CassandraSink(table=self._name, connection=_TARGET[-1].connection()) as sink:
                sink.write_table(data)
        return CassandraSource(
            self._name,
            connection=_TARGET[-1].connection(),
            schema=data.schema,
            splits=self.splits,
            page_size=200,
        )

    def expected_table(self, data: pa.Table) -> pa.Table:
        return _ms(data)


class TestCassandraSourceSplits(TestCassandraSource):
    """Five token ranges."""

    splits = 5


class TestCassandraSink(_Table, SinkConformance):
    batch_by_partition = False

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self._name = self.new_table()
        return CassandraSink(
            table=self._name,
            connection=_TARGET[-1].connection(),
            error_policy=error_policy,
            request_rows=300,
            batch_by_partition=self.batch_by_partition,
        )

    def read_back(self) -> pa.Table:
        schema = make_table(1).schema
        return CassandraSource(self._name, connection=_TARGET[-1].connection(), schema=schema).read_all()

    def expected_read_back(self, data: pa.Table) -> pa.Table:
        return _ms(data)

    def bad_batch(self) -> pa.RecordBatch:
        # A null partition key cannot be written: every row goes to the error policy.
        bad = make_table(5, seed=3)
        return bad.set_column(0, "id", pa.nulls(5, pa.int64())).to_batches()[0]


class TestCassandraSinkBatched(TestCassandraSink):
    """UNLOGGED batches grouped by partition key."""

    batch_by_partition = True
