"""Workload ``bulk``: the benchmark table -> Elasticsearch/OpenSearch ``_bulk`` request bodies.

Every method produces the bodies of ``index`` actions into index ``bench`` with ``_id`` from the
``id`` column (documents = the other 7 columns), in requests of 500 actions. No server is involved.

Methods:

* ``arrowflow encode_bodies``: :func:`arrowflow._ext.bulk.encode_bodies` over the whole table as one
  ``RecordBatch`` (documents by the JSON kernel, action lines + interleaving + cutting in C) ->
  a list of zero-copy body buffers.
* ``elasticsearch.helpers path (OrjsonSerializer)``: what ``helpers.bulk`` / ``parallel_bulk`` do
  before sending (both serialize in the calling thread): ``to_pylist`` per 10k rows, one action dict
  per row, ``expand_action`` + ``_chunk_actions`` with elasticsearch-py's ``OrjsonSerializer`` (the
  client's fast serializer), bodies joined per chunk, on a subset. The idiomatic baseline.
* ``elasticsearch.helpers path``: the same with the client's default (stdlib) ``JsonSerializer``, for
  context.
* ``polars concat_str + struct.json_encode``: the action line by ``concat_str`` and the document by
  ``struct.json_encode`` in one polars expression (DataFrame built in setup), bodies cut per 500
  rows as zero-copy slices of the result's buffer.

Workloads ``bulk-sink-opensearch`` and ``bulk-sink-elasticsearch``: end to end, opensearch-py against
the real OpenSearch 2.19 node (``tests/services/opensearch.sh``, ``OPENSEARCH_PORT``, or
``ARROWFLOW_BENCH_OPENSEARCH_URL``) and elasticsearch-py against the real Elasticsearch 9.2 node
(``tests/services/elasticsearch.sh``, ``ELASTICSEARCH_PORT``, or ``ARROWFLOW_BENCH_ES_URL``), the same
subset of the table for every method, ``index`` actions with ``_id`` from ``id``, 500 actions
per request, no refresh. Every call writes into a fresh index (created and deleted inside the call,
the same cost for every method), with one client made in setup:

* ``arrowflow <Sink>``: ``OpenSearchSink`` / ``ElasticsearchSink`` (``client=``, ``max_actions=500``,
  default ``max_in_flight=2``), ``write`` per 65,536-row batch, ``close``.
* ``<client> helpers.bulk``: ``to_pylist`` per 10k rows, one action dict per row,
  ``helpers.bulk(client, actions, chunk_size=500)`` (one request at a time).
* ``<client> helpers.parallel_bulk``: the same actions through ``parallel_bulk(thread_count=2,
  chunk_size=500)`` (two requests in flight, like the sink).
* ``<client> helpers.parallel_bulk (orjson)``: the same on a client made with an orjson serializer
  (elasticsearch-py's ``OrjsonSerializer``; for opensearch-py, which has none, its ``JSONSerializer``
  with ``dumps`` by ``orjson``, the documented way to plug a serializer in). The idiomatic baseline.
* ``pre-built bodies, POST only``: the arrowflow bodies built in setup, posted one after the other:
  the server's (and the client transport's) ceiling for any encoder.

Each call leaves its index in place until the method's next call (which deletes and recreates it):
after the warm-up call the check refreshes the index and reads every document back (``_search``),
comparing ``_id`` and ``_source`` with the rows written.
"""

from __future__ import annotations

import importlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from .checks import same_rows, text_schema
from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table
from .servers import ELASTICSEARCH_URL, OPENSEARCH_URL

BATCH = 10_000
CHUNK = 500
_HELPERS_ORJSON = "elasticsearch.helpers path (OrjsonSerializer)"
#: The request bodies of each method's last call, for its output check.
_BODIES: dict[str, list[Any]] = {}


def _bodies_check(label: str, expected: pa.Table) -> Callable[[], str]:
    """Check that ``label``'s last bodies hold one ``index`` action into ``bench`` per row of
    ``expected``, with its ``id`` as ``_id`` and the other columns as the document, at most
    ``CHUNK`` actions per body."""

    def check() -> str:
        docs = []
        for body in _BODIES.pop(label):
            lines = bytes(body).splitlines()
            if len(lines) > 2 * CHUNK or len(lines) % 2:
                raise AssertionError(f"{label}: a body of {len(lines)} lines")
            for action, source in zip(lines[::2], lines[1::2], strict=True):
                meta = json.loads(action)["index"]
                if meta["_index"] != "bench":
                    raise AssertionError(f"{label}: action {meta}")
                docs.append({**json.loads(source), "id": int(meta["_id"])})
        return same_rows(pa.Table.from_pylist(docs, schema=text_schema(expected.schema)), expected, label)

    return check


def _helpers_path(table: pa.Table, rows: int, *, fast: bool, label: str) -> Callable[[], int] | str:
    try:
        from elasticsearch.helpers.actions import _chunk_actions, expand_action
        from elasticsearch.serializer import JsonSerializer, OrjsonSerializer
    except ImportError:
        return "not installed (elasticsearch with orjson)"
    serializer = OrjsonSerializer() if fast else JsonSerializer()
    sub = table.slice(0, rows)

    def run() -> int:
        bodies = _BODIES[label] = []
        for start in range(0, rows, BATCH):
            docs = sub.slice(start, BATCH).to_pylist()
            actions = ({"_index": "bench", "_id": d.pop("id"), "_source": d} for d in docs)
            for _, chunk in _chunk_actions(
                map(expand_action, actions), CHUNK, 100 * 1024 * 1024, None, serializer
            ):
                bodies.append(b"\n".join(chunk) + b"\n")
        return rows

    return run


def setup(config: RunConfig) -> Prepared:
    import polars as pl

    table = make_table(config.rows, config.seed).combine_chunks()
    n = table.num_rows
    batch = table.to_batches()[0] if n else pa.RecordBatch.from_pylist([], schema=table.schema)
    methods: dict[str, Method] = {}

    try:
        bulk: Any = importlib.import_module("arrowflow._ext.bulk")
    except ImportError:
        methods["arrowflow encode_bodies"] = Method(skip="not built (arrowflow._ext.bulk)")
    else:

        def run_kernel() -> int:
            bodies, bounds = bulk.encode_bodies(batch, index="bench", id_column="id", max_actions=CHUNK)
            _BODIES["kernel"] = bodies
            return int(bounds[-1])

        methods["arrowflow encode_bodies"] = Method(
            run=run_kernel,
            target=Target(min_rate=2e6),
            note=f"whole table as one batch, {CHUNK}/request",
            check=_bodies_check("kernel", table),
        )

    helpers_n = config.subset(5_000 if config.quick else 50_000)
    for label, fast in ((_HELPERS_ORJSON, True), ("elasticsearch.helpers path", False)):
        helpers = _helpers_path(table, helpers_n, fast=fast, label=label)
        if isinstance(helpers, str):
            methods[label] = Method(skip=helpers)
        else:
            methods[label] = Method(
                run=helpers,
                target=Target(min_speedup=20) if fast else None,
                note=f"on {helpers_n:,} rows, scaled" + ("" if fast else "; stdlib json"),
                check=_bodies_check(label, table.slice(0, helpers_n)),
            )

    df = pl.from_arrow(table)
    others = [c for c in table.schema.names if c != "id"]

    def run_polars() -> int:
        entries = df.select(  # type: ignore[union-attr]
            pl.concat_str(
                [
                    pl.lit('{"index":{"_index":"bench","_id":"'),
                    pl.col("id").cast(pl.Utf8),
                    pl.lit('"}}\n'),
                    pl.struct(others).struct.json_encode(),
                    pl.lit("\n"),
                ]
            ).alias("e")
        )
        arr = entries.to_series().to_arrow()
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(pa.large_string()) if not pa.types.is_large_string(arr.type) else arr
        offsets = arr.buffers()[1]
        data = arr.buffers()[2]
        import numpy as np

        ends = np.frombuffer(offsets, dtype=np.int64)
        _BODIES["polars"] = [
            data.slice(int(ends[a]), int(ends[min(a + CHUNK, n)] - ends[a])) for a in range(0, n, CHUNK)
        ]
        return n

    methods["polars concat_str + struct.json_encode"] = Method(
        run=run_polars,
        target=Target(min_speedup=1.0),
        note="DataFrame built in setup",
        check=_bodies_check("polars", table),
    )
    return Prepared(methods=methods, bytes_per_row=table.nbytes / max(n, 1))


_PARALLEL_ORJSON = "helpers.parallel_bulk (orjson)"


def _actions(table: pa.Table, index: str) -> Iterator[dict[str, Any]]:
    """What a helpers user writes: one action dict per row, ``to_pylist`` per 10k rows."""
    for start in range(0, table.num_rows, BATCH):
        for d in table.slice(start, BATCH).to_pylist():
            yield {"_index": index, "_id": d.pop("id"), "_source": d}


def _orjson_serializer(kind: str) -> Any:
    """The client's orjson serializer: elasticsearch-py ships ``OrjsonSerializer``; opensearch-py has
    none, so its ``JSONSerializer`` gets ``dumps`` by orjson (decoded to ``str``: opensearch-py's bulk
    helpers encode what ``dumps`` returns)."""
    import orjson

    if kind == "elasticsearch":
        from elasticsearch.serializer import OrjsonSerializer

        return OrjsonSerializer()
    from opensearchpy.serializer import JSONSerializer

    class OpenSearchOrjson(JSONSerializer):  # type: ignore[misc]
        def dumps(self, data: Any) -> Any:
            return data if isinstance(data, str | bytes) else orjson.dumps(data).decode()

        def loads(self, s: Any) -> Any:
            return orjson.loads(s)

    return OpenSearchOrjson()


def _setup_sink(config: RunConfig, kind: str) -> Prepared:
    from arrowflow.connectors.search import ELASTICSEARCH, OPENSEARCH

    flavor = OPENSEARCH if kind == "opensearch" else ELASTICSEARCH
    client_name = "opensearch-py" if kind == "opensearch" else "elasticsearch-py"
    sink_name = "OpenSearchSink" if kind == "opensearch" else "ElasticsearchSink"
    names = (
        f"arrowflow {sink_name}",
        f"{client_name} {_PARALLEL_ORJSON}",
        f"{client_name} helpers.bulk",
        f"{client_name} helpers.parallel_bulk",
        "pre-built bodies, POST only",
    )
    try:
        if kind == "opensearch":
            from opensearchpy import helpers

            from arrowflow.connectors.search.opensearch import OpenSearchSink as sink_cls
        else:
            from elasticsearch import helpers  # type: ignore[no-redef]

            from arrowflow.connectors.search.elasticsearch import ElasticsearchSink as sink_cls  # type: ignore[assignment]
        fast_serializer = _orjson_serializer(kind)
    except ImportError as exc:
        return Prepared(
            methods={n: Method(skip=f"not installed: {exc.name}") for n in names}, bytes_per_row=72
        )
    url = OPENSEARCH_URL if kind == "opensearch" else ELASTICSEARCH_URL
    options: dict[str, Any] = {"max_retries": 0, "request_timeout": 120}
    try:
        client = flavor.make_client(url, options)
        # Not GET /: the test Elasticsearch node has no rest-root module (see elasticsearch.sh).
        flavor.request(client, "GET", "/_cluster/health")
        fast_client = flavor.make_client(url, {**options, "serializer": fast_serializer})
    except Exception as exc:
        why = f"no {kind} server at {url} ({type(exc).__name__})"
        return Prepared(methods={n: Method(skip=why) for n in names}, bytes_per_row=72)

    # Every method is bound by the node (index creation and indexing; 3-8k rows/s of this table on the
    # shared 2-core box): the subset keeps a call under a second or two.
    n = config.subset(500 if config.quick else 2_000)
    table = make_table(n, config.seed).combine_chunks()
    batches = table.to_batches(max_chunksize=65_536)
    bulk: Any = importlib.import_module("arrowflow._ext.bulk")
    prefix = f"af-bench-{kind}-{uuid.uuid4().hex[:8]}"

    def fresh(tag: str) -> str:
        name = f"{prefix}-{tag}"
        try:
            flavor.request(client, "DELETE", f"/{name}")
        except Exception:
            pass
        flavor.request(client, "PUT", f"/{name}", body={})
        return name

    def run_sink() -> int:
        index = fresh("af")
        sink = sink_cls(client=client, index=index, id_column="id", max_actions=CHUNK)
        for b in batches:
            sink.write(b)
        sink.close()
        if sink.metrics()["rows_written"] != n:
            raise RuntimeError(f"sink wrote {sink.metrics()['rows_written']} of {n} rows")
        return n

    def run_helpers() -> int:
        index = fresh("helpers")
        ok, errors = helpers.bulk(client, _actions(table, index), chunk_size=CHUNK, max_retries=0)
        if ok != n or errors:
            raise RuntimeError(f"helpers.bulk: {ok} ok, errors {errors!r:.200}")
        return n

    def parallel(tag: str, on: Any) -> Callable[[], int]:
        def run() -> int:
            index = fresh(tag)
            ok = sum(
                1
                for success, _ in helpers.parallel_bulk(
                    on, _actions(table, index), thread_count=2, chunk_size=CHUNK
                )
                if success
            )
            if ok != n:
                raise RuntimeError(f"helpers.parallel_bulk: {ok} of {n} ok")
            return n

        return run

    post_index = f"{prefix}-post"
    post_bodies = [
        body.to_pybytes()
        for body in bulk.encode_bodies(
            table.to_batches()[0], index=post_index, id_column="id", max_actions=CHUNK
        )[0]
    ]

    def run_post_only() -> int:
        fresh("post")
        for body in post_bodies:
            answer = flavor.request(client, "POST", "/_bulk", body=body, ndjson=True)
            if answer.get("errors"):
                raise RuntimeError("POST only: item errors")
        return n

    def landed(tag: str) -> Callable[[], str]:
        def check() -> str:
            index = f"{prefix}-{tag}"
            flavor.request(client, "POST", f"/{index}/_refresh")
            answer = flavor.request(
                client, "POST", f"/{index}/_search", body={"query": {"match_all": {}}, "size": n + 1}
            )
            hits = answer["hits"]["hits"]
            docs = [{**h["_source"], "id": int(h["_id"])} for h in hits]
            got = pa.Table.from_pylist(docs, schema=text_schema(table.schema))
            return same_rows(got, table, index)

        return check

    tags = ("af", "helpers", "parallel", "parallel-orjson", "post")

    def cleanup() -> None:
        for tag in tags:
            try:
                flavor.request(client, "DELETE", f"/{prefix}-{tag}")
            except Exception:
                pass
        client.close()
        fast_client.close()

    # The server's CPU dominates the wall time, so the client's own CPU (this process, every thread)
    # is what tells the methods apart; it is summed per method and printed to stderr at exit.
    cpu: dict[str, list[float]] = {}

    def cpu_timed(name: str, fn: Callable[[], int]) -> Callable[[], int]:
        def run() -> int:
            start = time.process_time()
            rows = fn()
            cpu.setdefault(name, []).append((time.process_time() - start) / rows * 1e3)
            return rows

        return run

    def report_cpu() -> None:
        for name, per_k in cpu.items():
            med = statistics.median(per_k)
            print(
                f"[bulk-sink-{kind}] {name}: client CPU {med * 1e3:.0f} ms per 1k rows (median)",
                file=sys.stderr,
            )

    import atexit

    atexit.register(cleanup)
    atexit.register(report_cpu)
    same = f"{n:,} rows, fresh index per call"
    methods = {
        names[0]: Method(run=cpu_timed(names[0], run_sink), note=same, check=landed("af")),
        # No target: the server bounds every method (compare the client CPU printed at exit).
        names[1]: Method(
            run=cpu_timed(names[1], parallel("parallel-orjson", fast_client)),
            note="same rows, 2 threads, orjson serializer",
            check=landed("parallel-orjson"),
        ),
        names[2]: Method(
            run=cpu_timed(names[2], run_helpers),
            note="same rows, to_pylist + action dicts",
            check=landed("helpers"),
        ),
        names[3]: Method(
            run=cpu_timed(names[3], parallel("parallel", client)),
            note="same rows, 2 threads, stdlib json",
            check=landed("parallel"),
        ),
        names[4]: Method(
            run=cpu_timed(names[4], run_post_only),
            note="server ceiling: arrowflow bodies, 1 in flight",
            check=landed("post"),
        ),
    }
    return Prepared(methods=methods, bytes_per_row=table.nbytes / n)


WORKLOAD = register(
    Workload(
        name="bulk",
        description="benchmark table -> _bulk bodies (index, _id from a column, 500 actions/request)",
        setup=setup,
        reference="arrowflow encode_bodies",
        idiomatic=(_HELPERS_ORJSON,),
    )
)


def _sink_setup(kind: str) -> Callable[[RunConfig], Prepared]:
    def setup(config: RunConfig) -> Prepared:
        return _setup_sink(config, kind)

    return setup


for _kind, _sink, _client, _server in (
    ("opensearch", "OpenSearchSink", "opensearch-py", "OpenSearch 2.19"),
    ("elasticsearch", "ElasticsearchSink", "elasticsearch-py", "Elasticsearch 9.2"),
):
    register(
        Workload(
            name=f"bulk-sink-{_kind}",
            description=f"8-column table -> {_sink} vs helpers against a real {_server} node",
            setup=_sink_setup(_kind),
            reference=f"arrowflow {_sink}",
            idiomatic=(f"{_client} {_PARALLEL_ORJSON}",),
        )
    )
