"""MongoDB: the BSON encoder and decoder kernels, and the sink end to end.

``bson-encode`` (no server): the 8-column table -> one BSON document per row.

* ``arrowflow encode_documents``: the compiled kernel (``arrowflow._ext.bson``); target >= 2M rows/s.
* ``pymongoarrow write path``: pymongoarrow's ``write()`` encoding loop with the insert stubbed out:
  ``RawBSONDocument(bson.encode(row))`` over its ``_tabular_generator`` rows (``to_pylist`` per batch),
  on a subset, scaled.
* ``bson.encode per row``: ``to_pylist()`` then ``bson.encode`` of each dict, on a subset, scaled.

``bson-decode`` (no server): documents as pymongo writes them: ``bson.encode`` (setup, untimed) of
each row's dict with an ``ObjectId`` ``_id`` first (seeded bytes), concatenated into pages of 65,536
documents (raw BSON, as ``find_raw_batches`` returns it) -> one batch per page with the schema
``_id: string`` (the ObjectId's 24 hex digits) + the table's 8 columns (``ts`` as ``timestamp[ms]``,
BSON's resolution).

* ``arrowflow bson_decode``: the compiled kernel (``arrowflow._ext.bson_decode``); target >= 1M rows/s.
* ``pymongoarrow process_bson_stream``: pymongoarrow's compiled decoder (``pip install pymongoarrow``,
  skipped when it does not load against this pyarrow), ``PyMongoArrowContext.process_bson_stream``
  per page (pymongoarrow 1.15's API), the 8 columns (``_id`` left out: its ObjectId type decodes to
  12-byte binary, not hex). An idiomatic baseline (the fastest, when it loads).
* ``bson.decode_all + from_pylist``: what a pymongo user writes: ``bson.decode_all(page)``, ``_id``
  as ``str``, ``RecordBatch.from_pylist(docs, schema)``, on a subset, scaled. An idiomatic baseline.
* ``bson.decode_all + decode_documents``: arrowflow's own general path (what ``MongoSource`` took
  before the kernel, and still takes for pages the kernel declines), on a subset, for context.

Each method's output (its warm-up call's batches) is compared with the expected rows.

``mongodb-insert`` (SecantusDB on 127.0.0.1:27017): ``MongoSink(mode="insert")`` vs
``collection.insert_many(table.to_pylist())``, each into its own collection (dropped per call), on a
subset; target: the sink is >= 5x faster. When the server does not answer, the methods are skipped.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pyarrow as pa

from .checks import same_rows
from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table
from .servers import port

_MONGO_PORT = port("MONGO_PORT", 27017)
_URI = f"mongodb://127.0.0.1:{_MONGO_PORT}/?directConnection=true"
_PYMONGOARROW = "pymongoarrow process_bson_stream"
_DECODE_ALL = "bson.decode_all + from_pylist"


def _skip_all(names: tuple[str, ...], why: str) -> Prepared:
    return Prepared(methods={n: Method(skip=why) for n in names}, bytes_per_row=72)


def _pymongoarrow_missing(*imports: tuple[str, str]) -> str | None:
    """Why pymongoarrow cannot run here (optional, ``pip install pymongoarrow``; its releases pin an
    older pyarrow), or ``None``: each ``(module, name)`` must import."""
    import importlib
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for module, name in imports:
                getattr(importlib.import_module(module), name)
    except Exception as exc:
        return f"pymongoarrow not importable ({type(exc).__name__}); needs pymongoarrow (pyarrow < 25.1)"
    return None


def setup_encode(config: RunConfig) -> Prepared:
    names = ("arrowflow encode_documents", "pymongoarrow write path", "bson.encode per row")
    try:
        import bson
        from bson.raw_bson import RawBSONDocument
    except ImportError as exc:
        return _skip_all(names, f"not installed: {exc.name}")
    from arrowflow._ext.bson import encode_documents

    table = make_table(config.rows, config.seed)
    n = table.num_rows
    batches = table.to_batches(max_chunksize=65_536)
    py_n = config.subset(5_000 if config.quick else 100_000)
    py_table = table.slice(0, py_n)

    def run_kernel() -> int:
        for b in batches:
            encode_documents(b)
        return n

    def run_pymongoarrow() -> int:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pymongoarrow.api import _tabular_generator
        for row in _tabular_generator(py_table):
            RawBSONDocument(bson.encode(row))
        return py_n

    def run_bson() -> int:
        for row in py_table.to_pylist():
            bson.encode(row)
        return py_n

    pma_skip = _pymongoarrow_missing(("pymongoarrow.api", "_tabular_generator"))
    methods = {
        "arrowflow encode_documents": Method(run=run_kernel, target=Target(min_rate=2_000_000)),
        "pymongoarrow write path": Method(skip=pma_skip)
        if pma_skip
        else Method(
            run=run_pymongoarrow,
            note=f"insert stubbed; on {py_n:,} rows, scaled",
            target=Target(min_speedup=5),
        ),
        "bson.encode per row": Method(run=run_bson, note=f"to_pylist + encode; on {py_n:,} rows, scaled"),
    }
    return Prepared(methods=methods, bytes_per_row=table.nbytes / n)


def setup_decode(config: RunConfig) -> Prepared:
    names = ("arrowflow bson_decode", _PYMONGOARROW, _DECODE_ALL, "bson.decode_all + decode_documents")
    try:
        import bson
    except ImportError as exc:
        return _skip_all(names, f"not installed: {exc.name}")
    import numpy as np

    from arrowflow._ext.bson_decode import decode_documents as kernel_decode
    from arrowflow.connectors.mongodb import decode_documents

    table = make_table(config.rows, config.seed)
    n = table.num_rows
    # BSON datetimes are milliseconds (pymongo truncates; pymongoarrow decodes only timestamp[ms]).
    ts = table.schema.get_field_index("ts")
    table = table.set_column(ts, "ts", table.column("ts").cast(pa.timestamp("ms"), safe=False))
    oid_bytes = np.random.default_rng(config.seed + 2).bytes(12 * n)
    oids = [bson.ObjectId(oid_bytes[12 * i : 12 * i + 12]) for i in range(n)]
    expected = table.add_column(0, "_id", pa.array([str(o) for o in oids], pa.string()))
    schema = expected.schema
    page = 65_536
    raws = []
    for start in range(0, n, page):
        rows = table.slice(start, page).to_pylist()
        raws.append(
            b"".join(bson.encode({"_id": oid, **row}) for oid, row in zip(oids[start:], rows, strict=False))
        )
    total_bytes = sum(len(r) for r in raws)
    py_n = config.subset(5_000 if config.quick else 50_000)
    py_raw = b"".join(
        bson.encode({"_id": oid, **row})
        for oid, row in zip(oids, table.slice(0, py_n).to_pylist(), strict=False)
    )
    out: dict[str, list[pa.RecordBatch]] = {}

    def run_kernel() -> int:
        batches = []
        for raw in raws:
            batch, why = kernel_decode(raw, schema)
            if batch is None:
                raise RuntimeError(f"bson_decode declined a page of pymongo's documents: {why}")
            batches.append(batch)
        out["kernel"] = batches
        return n

    def run_decode_all() -> int:
        docs = bson.decode_all(py_raw)
        for d in docs:
            d["_id"] = str(d["_id"])
        out["decode_all"] = [pa.RecordBatch.from_pylist(docs, schema=schema)]
        return py_n

    def run_python() -> int:
        out["general"] = [decode_documents(bson.decode_all(py_raw), schema)]
        return py_n

    eight = pa.schema([f for f in schema if f.name != "_id"])

    def run_pymongoarrow() -> int:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pymongoarrow.api import Schema
            from pymongoarrow.context import PyMongoArrowContext
        tables = []
        for raw in raws:
            ctx = PyMongoArrowContext(Schema({f.name: f.type for f in eight}))
            ctx.process_bson_stream(raw)
            tables.append(ctx.finish())
        out["pymongoarrow"] = [b for t in tables for b in t.to_batches()]
        return n

    def check(key: str, want: pa.Table) -> Callable[[], str]:
        return lambda: same_rows(pa.Table.from_batches(out.pop(key)), want, key)

    pma_skip = _pymongoarrow_missing(
        ("pymongoarrow.context", "PyMongoArrowContext"), ("pymongoarrow.lib", "BuilderManager")
    )
    subset = expected.slice(0, py_n)
    methods = {
        "arrowflow bson_decode": Method(
            run=run_kernel,
            note="pages of 65,536 documents by bson.encode, ObjectId _id",
            target=Target(min_rate=1_000_000),
            check=check("kernel", expected),
        ),
        _PYMONGOARROW: Method(skip=pma_skip)
        if pma_skip
        else Method(
            run=run_pymongoarrow,
            note="same pages; the 8 columns without _id",
            target=Target(min_speedup=1),
            check=check("pymongoarrow", expected.select(eight.names)),
        ),
        _DECODE_ALL: Method(
            run=run_decode_all,
            note=f"_id as str; on {py_n:,} rows, scaled",
            target=Target(min_speedup=10),
            check=check("decode_all", subset),
        ),
        "bson.decode_all + decode_documents": Method(
            run=run_python,
            note=f"arrowflow's general path; on {py_n:,} rows, scaled",
            check=check("general", subset),
        ),
    }
    return Prepared(methods=methods, bytes_per_row=total_bytes / n, note="MB/s of BSON input")


def _answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", _MONGO_PORT), timeout=2):
            return True
    except OSError:
        return False


def setup_insert(config: RunConfig) -> Prepared:
    names = ("arrowflow MongoSink insert", "pymongo insert_many(to_pylist)")
    if not _answers():
        return _skip_all(names, f"MongoDB not answering at {_URI}")
    try:
        import pymongo
    except ImportError as exc:
        return _skip_all(names, f"not installed: {exc.name}")
    from arrowflow.connectors.mongodb import MONGODB_BATCHING, MongoSink

    n = config.subset(20_000 if config.quick else 200_000)
    table = make_table(n, config.seed)
    batches = table.to_batches(max_chunksize=65_536)
    suffix = uuid.uuid4().hex[:8]
    client: Any = pymongo.MongoClient(_URI)
    db = client["arrowflow_bench"]
    c_af, c_py = f"af_{suffix}", f"py_{suffix}"

    def run_sink() -> int:
        db.drop_collection(c_af)
        # 0.1.0's batch_size=10_000, batch_interval=None: room for four requests in the buffer.
        batching = replace(
            MONGODB_BATCHING, max_request_rows=10_000, max_buffered_rows=40_000, max_time_in_buffer=None
        )
        sink = MongoSink(_URI, "arrowflow_bench", c_af, batching=batching)
        for b in batches:
            sink.write(b)
        sink.close()
        return n

    def run_pylist() -> int:
        db.drop_collection(c_py)
        db[c_py].insert_many(table.to_pylist(), ordered=False)
        return n

    def cleanup() -> None:
        db.drop_collection(c_af)
        db.drop_collection(c_py)
        client.close()

    import atexit

    atexit.register(cleanup)
    methods = {
        "arrowflow MongoSink insert": Method(run=run_sink, note=f"{n:,} rows into SecantusDB"),
        "pymongo insert_many(to_pylist)": Method(
            run=run_pylist, note="same rows", target=Target(min_speedup=5)
        ),
    }
    return Prepared(methods=methods, bytes_per_row=table.nbytes / n)


register(
    Workload(
        name="bson-encode",
        description="8-column table -> one BSON document per row (no server)",
        setup=setup_encode,
        reference="arrowflow encode_documents",
        idiomatic=("pymongoarrow write path", "bson.encode per row"),
    )
)
register(
    Workload(
        name="bson-decode",
        description="raw BSON pages of the 8-column table -> batches (no server)",
        setup=setup_decode,
        reference="arrowflow bson_decode",
        idiomatic=(_PYMONGOARROW, _DECODE_ALL),
    )
)
register(
    Workload(
        name="mongodb-insert",
        description="8-column table -> MongoDB wire protocol (SecantusDB; loopback)",
        setup=setup_insert,
        reference="arrowflow MongoSink insert",
        idiomatic=("pymongo insert_many(to_pylist)",),
    )
)
