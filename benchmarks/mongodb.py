"""MongoDB: the BSON encoder kernel, and the sink end to end.

``bson-encode`` (no server): the 8-column table -> one BSON document per row.

* ``arrowflow encode_documents``: the compiled kernel (``arrowflow._ext.bson``); target >= 2M rows/s.
* ``pymongoarrow write path``: pymongoarrow's ``write()`` encoding loop with the insert stubbed out:
  ``RawBSONDocument(bson.encode(row))`` over its ``_tabular_generator`` rows (``to_pylist`` per batch),
  on a subset, scaled.
* ``bson.encode per row``: ``to_pylist()`` then ``bson.encode`` of each dict, on a subset, scaled.

``mongodb-insert`` (SecantusDB on 127.0.0.1:27017): ``MongoSink(mode="insert")`` vs
``collection.insert_many(table.to_pylist())``, each into its own collection (dropped per call), on a
subset; target: the sink is >= 5x faster. When the server does not answer, the methods are skipped.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

_URI = "mongodb://127.0.0.1:27017/?directConnection=true"


def _skip_all(names: tuple[str, ...], why: str) -> Prepared:
    return Prepared(methods={n: Method(skip=why) for n in names}, bytes_per_row=72)


def _pymongoarrow_missing() -> str | None:
    """Why pymongoarrow's write path cannot run here (it is optional: ``arrowflow[mongodb-arrow]``,
    and its releases pin an older pyarrow), or ``None``."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pymongoarrow.api import _tabular_generator  # noqa: F401
    except Exception as exc:
        return f"pymongoarrow not importable ({type(exc).__name__}); optional extra mongodb-arrow"
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

    pma_skip = _pymongoarrow_missing()
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
        name="mongodb-insert",
        description="8-column table -> MongoDB wire protocol (SecantusDB; loopback)",
        setup=setup_insert,
        reference="arrowflow MongoSink insert",
    )
)
