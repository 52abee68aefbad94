"""``CassandraRangeReader.read_batch`` keeps its ``timeout`` while a page is late: the real Cassandra
behind the byte-level fault proxy (``tests/faults/proxy.py``), stalled while a page request is in
flight. The call returns ``None`` (no batch yet) instead of waiting for the page, the request stays in
flight, and the range is then read to its end with every row once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from cassandra_target import Target

from arrowflow.connectors.cassandra import CassandraSink, CassandraSource
from arrowflow.testing import assert_same_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "faults"))

from proxy import FaultProxy

STALL_S = 6.0  # below the driver's 10 s request timeout: the page comes once the stall ends


def test_read_batch_returns_none_within_its_timeout_while_the_page_is_stalled(
    cassandra: Target, service: Callable[[str], tuple[str, int]]
) -> None:
    table = cassandra.new_table("id bigint, v text", "id")
    n = 60
    data = pa.table({"id": pa.array(range(n), pa.int64()), "v": [f"v{i}" for i in range(n)]})
    with CassandraSink(table=table, connection=cassandra.connection()) as sink:
        sink.write_table(data)

    with FaultProxy(service("cassandra")) as proxy:
        through = Target(("127.0.0.1",), proxy.port)
        source = CassandraSource(
            table, connection=through.connection(), schema=data.schema, page_size=10, splits=1
        )
        (split,) = source.plan()
        reader = source.open(split)
        try:
            first = reader.read_batch(10, 60.0)  # connects, prepares, reads the first page
            assert first is not None and first.num_rows == 10
            before = reader.snapshot()
            proxy.stall(STALL_S)
            late = reader.read_batch(10, 0.2)
            # Without the request in flight the call would wait out the stall and return the page.
            assert late is None, "read_batch waited for a stalled page instead of returning at its timeout"
            assert reader.snapshot() == before  # the position moves only with a returned page
            batches = [first]
            while not reader.finished:
                b = reader.read_batch(10, 60.0)
                if b is not None:
                    batches.append(b)
        finally:
            reader.close()
    assert proxy.stats()["connections"] >= 1
    assert_same_rows(pa.Table.from_batches(batches), data)
