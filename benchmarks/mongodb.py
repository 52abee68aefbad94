"""MongoDB: the BSON encoder and decoder kernels, and the sink end to end.

``bson-encode`` (no server): the 8-column table -> one BSON document per row.

* ``arrowflow encode_documents``: the compiled kernel (``arrowflow._ext.bson``); target >= 2M rows/s.
* ``pymongoarrow write path``: pymongoarrow's ``write()`` encoding loop with the insert stubbed out:
  ``RawBSONDocument(bson.encode(row))`` over its ``_tabular_generator`` rows (``to_pylist`` per batch),
  on a subset, scaled.
* ``bson.encode per row``: ``to_pylist()`` then ``bson.encode`` of each dict, on a subset, scaled.

``bson-decode`` (no server): the 8-column table encoded by the BSON kernel into pages of 65,536
documents (raw BSON, as ``find_raw_batches`` returns it) -> one batch per page with the table's schema
(every column type of the table takes the kernel's fast path).

* ``arrowflow bson_decode``: the compiled kernel (``arrowflow._ext.bson_decode``); target >= 1M rows/s.
* ``bson.decode_all + decode_documents``: the general path ``MongoSource`` took before (and still takes
  for pages the kernel declines), on a subset, scaled; target: the kernel is >= 10x faster.
* ``pymongoarrow process_bson_stream``: pymongoarrow's compiled decoder (``pip install pymongoarrow``,
  skipped when it does not load against this pyarrow), ``PyMongoArrowContext.process_bson_stream``
  per page (pymongoarrow 1.15's API).

The decode schema is the table's with ``ts`` as ``timestamp[ms]`` (BSON's resolution; pymongoarrow
decodes only that).

``mongodb-insert`` (SecantusDB on 127.0.0.1:27017): ``MongoSink(mode="insert")`` vs
``collection.insert_many(table.to_pylist())``, each into its own collection (dropped per call), on a
subset; target: the sink is >= 5x faster. When the server does not answer, the methods are skipped.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pyarrow as pa

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

_URI = "mongodb://127.0.0.1:27017/?directConnection=true"


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


def _concatenated(docs: Any) -> memoryview:
    """The documents of a ``BinaryArray`` back to back (its data buffer, no copy): raw BSON as
    ``find_raw_batches`` returns it."""
    import numpy as np

    offsets = np.frombuffer(docs.buffers()[1], dtype=np.int32)[docs.offset : docs.offset + len(docs) + 1]
    return memoryview(docs.buffers()[2])[int(offsets[0]) : int(offsets[-1])]


def setup_decode(config: RunConfig) -> Prepared:
    names = (
        "arrowflow bson_decode",
        "bson.decode_all + decode_documents",
        "pymongoarrow process_bson_stream",
    )
    try:
        import bson
    except ImportError as exc:
        return _skip_all(names, f"not installed: {exc.name}")
    from arrowflow._ext.bson import encode_documents
    from arrowflow._ext.bson_decode import decode_documents as kernel_decode
    from arrowflow.connectors.mongodb import decode_documents

    table = make_table(config.rows, config.seed)
    # BSON datetimes are milliseconds (and pymongoarrow decodes only timestamp[ms]).
    schema = table.schema.set(table.schema.get_field_index("ts"), pa.field("ts", pa.timestamp("ms")))
    n = table.num_rows
    raws = [_concatenated(encode_documents(b)) for b in table.to_batches(max_chunksize=65_536)]
    total_bytes = sum(len(r) for r in raws)
    py_n = config.subset(5_000 if config.quick else 50_000)
    py_raw = _concatenated(encode_documents(table.slice(0, py_n).combine_chunks().to_batches()[0])).tobytes()
    check, why = kernel_decode(raws[0], schema)
    if check is None or not check.equals(decode_documents(bson.decode_all(bytes(raws[0])), schema)):
        raise RuntimeError(f"bson_decode does not reproduce the general path on the benchmark table: {why}")

    def run_kernel() -> int:
        for raw in raws:
            kernel_decode(raw, schema)
        return n

    def run_python() -> int:
        decode_documents(bson.decode_all(py_raw), schema)
        return py_n

    def run_pymongoarrow() -> int:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pymongoarrow.api import Schema
            from pymongoarrow.context import PyMongoArrowContext
        for raw in raws:
            ctx = PyMongoArrowContext(Schema({f.name: f.type for f in schema}))
            ctx.process_bson_stream(raw_bytes[id(raw)])
            ctx.finish()
        return n

    pma_skip = _pymongoarrow_missing(
        ("pymongoarrow.context", "PyMongoArrowContext"), ("pymongoarrow.lib", "BuilderManager")
    )
    raw_bytes = {} if pma_skip else {id(raw): bytes(raw) for raw in raws}
    methods = {
        "arrowflow bson_decode": Method(
            run=run_kernel, note="pages of 65,536 documents", target=Target(min_rate=1_000_000)
        ),
        "bson.decode_all + decode_documents": Method(
            run=run_python, note=f"on {py_n:,} rows, scaled", target=Target(min_speedup=10)
        ),
        "pymongoarrow process_bson_stream": Method(skip=pma_skip)
        if pma_skip
        else Method(run=run_pymongoarrow, note="same pages"),
    }
    return Prepared(methods=methods, bytes_per_row=total_bytes / n, note="MB/s of BSON input")


def _answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 27017), timeout=2):
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
    from arrowflow.connectors.mongodb import MongoSink

    n = config.subset(20_000 if config.quick else 200_000)
    table = make_table(n, config.seed)
    batches = table.to_batches(max_chunksize=65_536)
    suffix = uuid.uuid4().hex[:8]
    client: Any = pymongo.MongoClient(_URI)
    db = client["arrowflow_bench"]
    c_af, c_py = f"af_{suffix}", f"py_{suffix}"

    def run_sink() -> int:
        db.drop_collection(c_af)
        sink = MongoSink(_URI, "arrowflow_bench", c_af, batch_size=10_000, batch_interval=None)
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
    )
)
register(
    Workload(
        name="bson-decode",
        description="raw BSON pages of the 8-column table -> batches (no server)",
        setup=setup_decode,
        reference="arrowflow bson_decode",
    )
)
register(
    Workload(
        name="mongodb-insert",
        description="8-column table -> MongoDB wire protocol (SecantusDB; loopback)",
        setup=setup_insert,
        reference="arrowflow MongoSink insert",
    )
)
