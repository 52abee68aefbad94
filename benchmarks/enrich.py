"""Workload ``enrich``: asynchronous enrichment throughput against a 1 ms service.

``Enrich(fn, per="row", capacity=100, ...)`` over the benchmark table (all 8 columns, so every row
becomes a full dict), fed 8192-row batches through ``process()``/``flush()`` as the pipeline's
operator thread does. The "service":

* ``sleep 1ms``: ``async def fn(row): await asyncio.sleep(0.001); return row["id"] * 2`` - a
  service with exactly 1 ms latency and no client CPU, so only the operator's cost is measured.
  With 100 requests in flight the ceiling is 100k rows/s; the target is >= 50k rows/s.
* ``aiohttp 1ms``: a real aiohttp server in a separate process on 127.0.0.1 whose handler sleeps
  1 ms and returns ``2 * id``, called through one ``aiohttp.ClientSession`` (connection pool of
  ``capacity``). Here the aiohttp client and server CPU per request (~100 us each on these cores)
  are the limit, not the operator: no target; compare with the bare aiohttp loop.

Methods:

* ``Enrich row ordered (sleep 1ms)`` (the reference), ``... unordered``: target >= 50k rows/s.
* ``Pipeline ... .enrich(...) -> NullSink (sleep 1ms)``: the same operator inside ``Pipeline.run``.
* ``asyncio loop, 100 workers (floor)``: the same calls written by hand: ``to_pylist()`` per batch,
  100 worker coroutines on ``asyncio.run``, results appended with ``pa.array``.
* ``Enrich row ordered (aiohttp 1ms)`` and ``aiohttp loop, 100 workers (floor)``.
* ``Enrich batch (sleep 1ms)``: ``per="batch"``: one request per 8192-row batch (a bulk lookup)
  returning a column computed with pyarrow; target >= 50k rows/s.

Rows per call are a subset of the table (50k for sleep, 10k for aiohttp; the note says so).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import importlib
import subprocess
import sys
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

BATCH_ROWS = 8192
CAPACITY = 100
LATENCY_S = 0.001
REFERENCE = "Enrich row ordered (sleep 1ms)"

#: The aiohttp service, run as ``python -c`` in its own process (its own GIL, like a real service).
_SERVER = r"""
import asyncio, sys
from aiohttp import web

async def lookup(request):
    await asyncio.sleep(float(sys.argv[1]))
    return web.Response(text=str(2 * int(request.query["id"])))

async def main():
    app = web.Application()
    app.router.add_get("/lookup", lookup)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _start_server() -> tuple[subprocess.Popen[str], str]:
    """Start the aiohttp service; it is terminated (by its own handle) when this process exits."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(LATENCY_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        err = proc.stderr.read() if proc.stderr is not None else ""
        raise RuntimeError(f"the aiohttp benchmark server did not start: {err.strip()[-300:]}")

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()

    atexit.register(stop)
    return proc, f"http://127.0.0.1:{int(line)}/lookup"


async def _sleep_lookup(row: dict[str, Any]) -> int:
    await asyncio.sleep(LATENCY_S)
    return int(row["id"]) * 2


async def _sleep_lookup_batch(batch: pa.RecordBatch) -> pa.Array:
    await asyncio.sleep(LATENCY_S)
    return pc.multiply(batch.column("id"), 2)


def _drive(op: Any, batches: list[pa.RecordBatch]) -> tuple[int, int]:
    """Feed ``batches`` to an opened operator like the pipeline's operator thread; close it.

    Returns (rows out, checksum of the enriched column minus twice the ids: 0 when correct).
    """
    out: list[pa.RecordBatch] = []
    try:
        for b in batches:
            out.extend(op.process(b))
        out.extend(op.flush())
    finally:
        op.close()
    rows = sum(b.num_rows for b in out)
    bad = sum(
        int(pc.sum(pc.not_equal(b.column("enriched"), pc.multiply(b.column("id"), 2))).as_py() or 0)
        for b in out
    )
    return rows, bad


async def _floor(fn: Any, batches: list[pa.RecordBatch], capacity: int) -> int:
    """The hand-written version: rows as dicts, ``capacity`` worker coroutines, one column back."""
    rows = 0
    for batch in batches:
        args = batch.to_pylist()
        results: list[Any] = [None] * len(args)
        todo = collections.deque(enumerate(args))

        async def worker(todo: collections.deque[tuple[int, Any]], results: list[Any]) -> None:
            while todo:
                i, arg = todo.popleft()
                results[i] = await fn(arg)

        await asyncio.gather(*(worker(todo, results) for _ in range(capacity)))
        enriched = batch.append_column("enriched", pa.array(results))
        rows += enriched.num_rows
    return rows


def setup(config: RunConfig) -> Prepared:
    n_sleep = config.subset(2_000 if config.quick else 50_000)
    n_http = config.subset(1_000 if config.quick else 10_000)
    table = make_table(max(n_sleep, n_http), config.seed).combine_chunks()
    sleep_batches = table.slice(0, n_sleep).to_batches(max_chunksize=BATCH_ROWS)
    http_batches = table.slice(0, n_http).to_batches(max_chunksize=BATCH_ROWS)
    methods: dict[str, Method] = {}
    try:
        enrich_cls = importlib.import_module("arrowflow.ops").Enrich
    except (ImportError, AttributeError):
        enrich_cls = None

    def checked(rows_bad: tuple[int, int], expected: int, what: str) -> int:
        rows, bad = rows_bad
        if rows != expected or bad:
            raise AssertionError(f"{what}: {rows} rows out ({bad} wrong), expected {expected}")
        return rows

    sleep_note = f"{n_sleep:,} rows, {BATCH_ROWS}-row batches, capacity {CAPACITY}"
    if enrich_cls is None:
        for label in (REFERENCE, "Enrich row unordered (sleep 1ms)", "Enrich batch (sleep 1ms)"):
            methods[label] = Method(skip="not built (arrowflow.ops.Enrich)", target=Target(min_rate=50e3))
    else:

        def run_rows(ordered: bool) -> int:
            op = enrich_cls(_sleep_lookup, per="row", capacity=CAPACITY, ordered=ordered)
            op.open()
            return checked(_drive(op, sleep_batches), n_sleep, "enrich per row")

        def run_batch() -> int:
            op = enrich_cls(_sleep_lookup_batch, per="batch", capacity=CAPACITY, ordered=True)
            op.open()
            return checked(_drive(op, sleep_batches), n_sleep, "enrich per batch")

        methods[REFERENCE] = Method(run=lambda: run_rows(True), target=Target(min_rate=50e3), note=sleep_note)
        methods["Enrich row unordered (sleep 1ms)"] = Method(
            run=lambda: run_rows(False), target=Target(min_rate=50e3), note=sleep_note
        )
        pipeline_cls = _attr("arrowflow.pipeline", "Pipeline")
        source_cls = _attr("arrowflow.connectors.collection", "CollectionSource")
        sink_cls = _attr("arrowflow.connectors.null", "NullSink")
        if pipeline_cls is not None and source_cls is not None and sink_cls is not None:
            sleep_table = pa.Table.from_batches(sleep_batches, schema=table.schema)

            def run_pipeline() -> int:
                sink = sink_cls()
                (
                    pipeline_cls(source_cls(sleep_table, batch_size=BATCH_ROWS))
                    .enrich(_sleep_lookup, per="row", capacity=CAPACITY, ordered=True)
                    .to(sink)
                    .run(progress=False)
                )
                return checked((int(sink.metrics()["rows"]), 0), n_sleep, "pipeline enrich")

            methods["Pipeline .enrich(...) -> NullSink (sleep 1ms)"] = Method(
                run=run_pipeline, note="ordered, in Pipeline.run"
            )
        methods["Enrich batch (sleep 1ms)"] = Method(
            run=run_batch, target=Target(min_rate=50e3), note=f"{n_sleep:,} rows, one request per batch"
        )

    def run_floor() -> int:
        return asyncio.run(_floor(_sleep_lookup, sleep_batches, CAPACITY))

    methods["asyncio loop, 100 workers (floor)"] = Method(
        run=run_floor, note="to_pylist + worker coroutines, hand-written"
    )

    http_note = f"{n_http:,} rows; client+server CPU bound, no target"
    aiohttp: Any
    try:
        aiohttp = importlib.import_module("aiohttp")
    except ImportError:
        aiohttp = None
    if aiohttp is None:
        methods["Enrich row ordered (aiohttp 1ms)"] = Method(skip="aiohttp not installed")
        return Prepared(methods=methods, bytes_per_row=table.nbytes / max(table.num_rows, 1))
    _, url = _start_server()

    class Client:
        """One session per operator run, opened/closed on the operator's loop (setup/teardown)."""

        def __init__(self) -> None:
            self.session: Any = None

        async def open(self) -> None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CAPACITY))

        async def close(self) -> None:
            await self.session.close()

        async def lookup(self, row: dict[str, Any]) -> int:
            async with self.session.get(url, params={"id": str(row["id"])}) as resp:
                resp.raise_for_status()
                return int(await resp.read())

    if enrich_cls is not None:

        def run_http() -> int:
            client = Client()
            op = enrich_cls(
                client.lookup,
                per="row",
                capacity=CAPACITY,
                ordered=True,
                setup=client.open,
                teardown=client.close,
            )
            op.open()
            return checked(_drive(op, http_batches), n_http, "enrich over aiohttp")

        methods["Enrich row ordered (aiohttp 1ms)"] = Method(run=run_http, note=http_note)

    def run_http_floor() -> int:
        async def main() -> int:
            client = Client()
            await client.open()
            try:
                return await _floor(client.lookup, http_batches, CAPACITY)
            finally:
                await client.close()

        return asyncio.run(main())

    methods["aiohttp loop, 100 workers (floor)"] = Method(
        run=run_http_floor, note=f"{n_http:,} rows, hand-written"
    )
    return Prepared(methods=methods, bytes_per_row=table.nbytes / max(table.num_rows, 1))


def _attr(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


WORKLOAD = register(
    Workload(
        name="enrich",
        description="Enrich (async I/O, capacity 100) against a 1 ms service: per row, per batch, aiohttp",
        setup=setup,
        reference=REFERENCE,
        idiomatic=("asyncio loop, 100 workers (floor)",),
    )
)
