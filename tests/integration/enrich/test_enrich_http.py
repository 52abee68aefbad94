"""Enrich (async I/O) against a real local HTTP service, called with aiohttp.ClientSession."""

from __future__ import annotations

from typing import Any

import aiohttp
import pyarrow as pa
import pytest

from arrowflow.ops import Enrich, EnrichError
from arrowflow.retry import Retry


class Http:
    """One aiohttp session per operator, opened and closed on the operator's loop thread."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def setup(self) -> None:
        self.session = aiohttp.ClientSession()

    async def teardown(self) -> None:
        assert self.session is not None
        await self.session.close()

    async def get_json(self, url: str, **params: Any) -> Any:
        assert self.session is not None
        async with self.session.get(url, params={k: str(v) for k, v in params.items()}) as resp:
            resp.raise_for_status()
            return await resp.json()


def make(http: Http, fn: Any, **kwargs: Any) -> Enrich:
    op = Enrich(fn, setup=http.setup, teardown=http.teardown, **kwargs)
    op.open()
    return op


def run(op: Enrich, batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    out: list[pa.RecordBatch] = []
    try:
        for b in batches:
            out += op.process(b)
        out += op.flush()
    finally:
        op.close()
    return out


def batches_of(n_batches: int, size: int) -> list[pa.RecordBatch]:
    return [pa.record_batch({"x": list(range(i * size, (i + 1) * size))}) for i in range(n_batches)]


def test_ordered_output_keeps_input_order(svc: Any) -> None:
    http = Http()

    async def lookup(row: dict) -> int:
        # later rows answer sooner, so completion order is the reverse of input order
        delay = 0.002 * (30 - row["x"] % 30)
        body = await http.get_json(f"{svc.url}/slow", x=row["x"], delay=delay)
        return body["y"]

    op = make(http, lookup, ordered=True, capacity=50, output="y")
    out = run(op, batches_of(6, 10))
    xs = [v for b in out for v in b.column("x").to_pylist()]
    assert xs == list(range(60))
    assert [v for b in out for v in b.column("y").to_pylist()] == [2 * x for x in range(60)]
    assert [b.num_rows for b in out] == [10] * 6  # batches are emitted whole
    assert out[0].schema.field("y").type == pa.int64()


def test_unordered_emits_every_batch_whole(svc: Any) -> None:
    http = Http()

    async def lookup(row: dict) -> int:
        # the first batch is slow, so an unordered operator lets later batches overtake it
        delay = 1.0 if row["x"] < 5 else 0.0
        return (await http.get_json(f"{svc.url}/slow", x=row["x"], delay=delay))["y"]

    op = make(http, lookup, ordered=False, capacity=100, output="y", output_type=pa.int32())
    inputs = batches_of(8, 5)
    out = run(op, inputs)
    assert sorted(tuple(b.column("x").to_pylist()) for b in out) == sorted(
        tuple(b.column("x").to_pylist()) for b in inputs
    )
    assert out[-1].column("x").to_pylist() == [0, 1, 2, 3, 4]  # the slow batch left last
    assert all(b.schema.field("y").type == pa.int32() for b in out)
    assert all(b.column("y").to_pylist() == [2 * x for x in b.column("x").to_pylist()] for b in out)


def test_capacity_bounds_concurrent_requests(svc: Any) -> None:
    http = Http()

    async def lookup(row: dict) -> int:
        return (await http.get_json(f"{svc.url}/slow", x=row["x"], delay=0.03))["y"]

    op = make(http, lookup, capacity=4, output="y")
    out = run(op, batches_of(3, 12))
    assert sum(b.num_rows for b in out) == 36
    assert svc.stats.requests == 36
    assert 2 <= svc.stats.peak <= 4


def test_timeout_uses_default_value(svc: Any) -> None:
    http = Http()

    async def lookup(row: dict) -> int:
        delay = 2.0 if row["x"] % 2 else 0.0
        return (await http.get_json(f"{svc.url}/slow", x=row["x"], delay=delay))["y"]

    op = make(http, lookup, timeout=0.2, on_error=("default", -1), output="y")
    out = run(op, batches_of(1, 6))
    assert out[0].column("y").to_pylist() == [0, -1, 4, -1, 8, -1]
    assert op.failures == 3


def test_drop_removes_failed_rows(svc: Any) -> None:
    http = Http()

    async def lookup(row: dict) -> int:
        path = "error" if row["x"] % 3 == 0 else "fast"
        return (await http.get_json(f"{svc.url}/{path}", x=row["x"]))["y"]

    op = make(http, lookup, on_error="drop", output="y")
    out = run(op, batches_of(2, 6))
    assert [v for b in out for v in b.column("x").to_pylist()] == [1, 2, 4, 5, 7, 8, 10, 11]
    assert [v for b in out for v in b.column("y").to_pylist()] == [2, 4, 8, 10, 14, 16, 20, 22]


def test_fail_raises_enrich_error_with_cause(svc: Any) -> None:
    http = Http()

    async def lookup(row: dict) -> int:
        return (await http.get_json(f"{svc.url}/error"))["y"]

    op = make(http, lookup, on_error="fail")
    with pytest.raises(EnrichError) as info:
        run(op, batches_of(2, 3))
    assert isinstance(info.value.__cause__, aiohttp.ClientResponseError)
    assert info.value.__cause__.status == 500


def test_http_500_is_retried_then_succeeds(svc: Any) -> None:
    http = Http()

    async def lookup(row: dict) -> int:
        return (await http.get_json(f"{svc.url}/flaky", id=row["x"], fails=2))["y"]

    # aiohttp's ClientResponseError carries status 500, which default_classify retries.
    op = make(http, lookup, retry=Retry(max_attempts=3, initial_backoff=0.01, max_backoff=0.01), output="y")
    out = run(op, batches_of(1, 5))
    assert out[0].column("y").to_pylist() == [0, 1, 2, 3, 4]
    assert all(svc.stats.attempts[str(x)] == 3 for x in range(5))
    assert op.retries == 10


def test_retries_exhausted_then_policy(svc: Any) -> None:
    http = Http()

    async def lookup(row: dict) -> int:
        return (await http.get_json(f"{svc.url}/flaky", id=row["x"], fails=5))["y"]

    retry = Retry(max_attempts=3, initial_backoff=0.005, max_backoff=0.02)
    op = make(http, lookup, retry=retry, on_error=("default", None), output="y")
    out = run(op, batches_of(1, 3))
    assert out[0].column("y").to_pylist() == [None, None, None]
    assert all(svc.stats.attempts[str(x)] == 3 for x in range(3))


def test_retry_predicates(svc: Any) -> None:
    http = Http()

    async def lookup(row: dict) -> dict:
        try:
            body = await http.get_json(f"{svc.url}/flaky", id=row["x"], fails=1)
        except aiohttp.ClientResponseError as exc:
            return {"status": exc.status}
        return body

    # the service's 500 arrives as a result, retried by the result predicate
    retry = Retry(max_attempts=2, initial_backoff=0.0, max_backoff=0.0, classify=lambda e: False)
    op = make(
        http, lookup, retry=retry, retry_on_result=lambda r: r.get("status") == 500, output=["y", "status"]
    )
    out = run(op, batches_of(1, 4))
    assert out[0].column("y").to_pylist() == [0, 1, 2, 3]
    assert out[0].column("status").to_pylist() == [None] * 4
    assert svc.stats.attempts == {str(x): 2 for x in range(4)}


def test_per_batch_requests(svc: Any) -> None:
    http = Http()

    async def lookup(batch: pa.RecordBatch) -> list[int]:
        assert http.session is not None
        async with http.session.post(f"{svc.url}/batch", json=batch.column("x").to_pylist()) as resp:
            return await resp.json()

    op = make(http, lookup, per="batch", output="y")
    out = run(op, batches_of(4, 25))
    assert svc.stats.requests == 4
    assert [v for b in out for v in b.column("y").to_pylist()] == [2 * x for x in range(100)]


def test_per_batch_drop_and_close_is_idempotent(svc: Any) -> None:
    http = Http()

    async def lookup(batch: pa.RecordBatch) -> list[int]:
        if batch.column("x")[0].as_py() == 0:
            return (await http.get_json(f"{svc.url}/error"))["y"]
        return [0] * batch.num_rows

    op = make(http, lookup, per="batch", on_error="drop")
    out = run(op, batches_of(3, 2))
    assert [b.column("x").to_pylist() for b in out] == [[2, 3], [4, 5]]
    op.close()  # second close is a no-op
    assert op.flush() == []
