"""QueueSource: concurrent thread and asyncio producers, backpressure, drop policies, end of stream."""

from __future__ import annotations

import asyncio
import threading
import time

import pyarrow as pa
import pytest

from arrowflow.connectors import MemorySink
from arrowflow.connectors.queue import QueueFull, QueueSource
from arrowflow.errors import ConfigurationError, ConnectorError, SerializationError
from arrowflow.pipeline import Pipeline

SCHEMA = pa.schema([("producer", pa.int64()), ("seq", pa.int64())])


def test_threads_push_into_a_running_pipeline_nothing_lost(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = QueueSource(schema=SCHEMA, capacity=500)  # small: producers must wait for the reader
    sink = MemorySink()

    def produce(p: int) -> None:
        for start in range(0, 1000, 50):
            if start % 100:
                src.put([{"producer": p, "seq": s} for s in range(start, start + 50)])
            else:
                src.put(
                    pa.record_batch(
                        {"producer": [p] * 50, "seq": list(range(start, start + 50))}, schema=SCHEMA
                    )
                )

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(8)]
    for t in threads:
        t.start()

    def closer() -> None:
        for t in threads:
            t.join()
        src.close()

    threading.Thread(target=closer).start()
    Pipeline(src).to(sink).run(checkpoint_dir=str(tmp_path / "ck"), progress=False)
    table = sink.table()
    assert table.num_rows == 8000
    for p in range(8):
        seqs = table.filter(pa.compute.equal(table["producer"], p))["seq"].to_pylist()
        assert seqs == list(range(1000))  # one producer's rows stay in order
    m = src.metrics()
    assert m["accepted_rows"] == 8000 and m["dropped_rows"] == 0 and m["read_rows"] == 8000


def test_asyncio_producers_wait_without_blocking_the_loop() -> None:
    src = QueueSource(capacity=100)
    reader = src.open(src.plan()[0])
    ticks = 0

    async def produce(p: int) -> None:
        for i in range(20):
            assert await src.aput([{"p": p, "i": i * 10 + k} for k in range(10)])

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    async def main() -> None:
        tick = asyncio.create_task(ticker())
        await asyncio.gather(*(produce(p) for p in range(5)))
        tick.cancel()

    got: list[pa.RecordBatch] = []
    done = threading.Event()

    def consume() -> None:
        n = 0
        while n < 1000:
            b = reader.read_batch(64, 0.5)
            if b is not None:
                got.append(b)
                n += b.num_rows
            time.sleep(0.002)  # a slow reader: the producers hit the capacity
        done.set()

    threading.Thread(target=consume).start()
    asyncio.run(main())
    assert done.wait(30)
    rows = pa.Table.from_batches(got)
    assert rows.num_rows == 1000
    assert sorted(zip(rows["p"].to_pylist(), rows["i"].to_pylist(), strict=True)) == [
        (p, i) for p in range(5) for i in range(200)
    ]
    assert ticks > 0  # the loop kept running while producers waited
    assert all(b.num_rows <= 64 for b in got)


def test_drop_newest_counts() -> None:
    src = QueueSource(capacity=10, overflow="drop_newest")
    assert src.put(pa.table({"x": list(range(8))}))
    assert not src.put([{"x": i} for i in range(3)])
    assert src.put([{"x": 8}, {"x": 9}])
    assert src.metrics() == {"accepted_rows": 10, "dropped_rows": 3, "read_rows": 0, "buffered_rows": 10}
    src.close()
    assert src.read_all()["x"].to_pylist() == list(range(10))


def test_drop_oldest_evicts() -> None:
    src = QueueSource(capacity=10, overflow="drop_oldest")
    for i in range(5):
        src.put([{"x": i * 4 + k} for k in range(4)])
    src.close()
    assert src.read_all()["x"].to_pylist() == list(range(12, 20))
    assert src.metrics()["dropped_rows"] == 12


def test_error_policy_and_block_timeout() -> None:
    src = QueueSource(capacity=2, overflow="error")
    src.put([{"x": 1}, {"x": 2}])
    with pytest.raises(QueueFull):
        src.put({"x": 3})
    blocking = QueueSource(capacity=2)
    blocking.put([{"x": 1}, {"x": 2}])
    assert not blocking.put({"x": 3}, timeout=0.05)
    assert not blocking.put_nowait({"x": 3})
    big = QueueSource(capacity=2)
    assert big.put([{"x": i} for i in range(5)])  # larger than capacity: accepted when empty


def test_schema_mismatch_and_closed() -> None:
    src = QueueSource(schema=SCHEMA)
    with pytest.raises(SerializationError):
        src.put({"producer": "not a number", "seq": 1})
    with pytest.raises(TypeError):
        src.put(42)
    src.close()
    assert src.bounded
    with pytest.raises(ConnectorError, match="closed"):
        src.put({"producer": 1, "seq": 1})
    reader = src.open(src.plan()[0])
    assert reader.read_batch(10, 0.01) is None and reader.finished
    with pytest.raises(ConfigurationError):
        QueueSource(overflow="spill")
    with pytest.raises(ConfigurationError):
        QueueSource(capacity=0)
