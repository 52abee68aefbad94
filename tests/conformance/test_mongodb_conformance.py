"""The conformance suite over MongoSource and MongoSink, against SecantusDB (MongoDB protocol) on loopback.

The server is ``tests/services/mongodb.sh`` (SecantusDB, not a real mongod). Every test uses its own
collection (uuid suffix) and drops it afterwards. A missing server fails the tests, it never skips them.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from arrowflow.connectors.mongodb import (
    MONGODB_BATCHING,
    MONGODB_KEYED_BATCHING,
    MongoSink,
    MongoSource,
    decode_documents,
)
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

# The port tests/services/mongodb.sh listens on (MONGO_PORT, as tests/integration/conftest.py reads it).
PORT = int(os.environ.get("MONGO_PORT", "27017"))
URI = f"mongodb://127.0.0.1:{PORT}/?directConnection=true"
DB = "arrowflow_conformance"


def _uri() -> str:
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=2):
            pass
    except OSError:
        pytest.fail(
            f"MongoDB (SecantusDB) is not answering on 127.0.0.1:{PORT}; "
            "start it with `sh tests/services/mongodb.sh start`",
            pytrace=False,
        )
    return URI


def _ms(table: pa.Table) -> pa.Table:
    """BSON datetimes hold milliseconds: the expected ``ts`` floored to ms."""
    i = table.schema.get_field_index("ts")
    raw = pc.cast(table.column("ts"), pa.int64())
    floored = pc.multiply(pc.floor(pc.divide(pc.cast(raw, pa.float64()), 1000.0)), 1000.0)
    return table.set_column(i, "ts", pc.cast(pc.cast(floored, pa.int64()), pa.timestamp("us")))


class _Collection:
    def new_collection(self) -> str:
        import pymongo

        name = f"c_{uuid.uuid4().hex[:10]}"
        client = pymongo.MongoClient(_uri())

        def drop() -> None:
            client[DB].drop_collection(name)
            client.close()

        self.add_cleanup(drop)  # type: ignore[attr-defined]
        return name


class TestMongoSource(_Collection, SourceConformance):
    num_splits = 1

    def make_source(self, data: pa.Table) -> Source:
        if not hasattr(self, "_name"):
            self._name = self.new_collection()
            withid = data.append_column("_id", data.column("id"))
            sink = MongoSink(_uri(), DB, self._name, batching=replace(MONGODB_BATCHING, max_request_rows=500))
            sink.write_table(withid)
            sink.close()
        return MongoSource(_uri(), DB, self._name, schema=data.schema, num_splits=self.num_splits)

    def expected_table(self, data: pa.Table) -> pa.Table:
        return _ms(data)


class TestMongoSourceSplit(TestMongoSource):
    """Four ``_id`` ranges cut at ``$sample`` quantiles."""

    num_splits = 4


class TestMongoSink(_Collection, SinkConformance):
    mode = "insert"

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self._name = self.new_collection()
        base = MONGODB_BATCHING if self.mode == "insert" else MONGODB_KEYED_BATCHING
        batching = replace(base, max_request_rows=300)
        return MongoSink(
            _uri(), DB, self._name, mode=self.mode, keys="id", batching=batching, error_policy=error_policy
        )

    def read_back(self) -> pa.Table:
        import bson
        import pymongo

        with pymongo.MongoClient(_uri()) as client:
            raw = b"".join(client[DB][self._name].find_raw_batches({}))
        docs = bson.decode_all(raw) if raw else []
        return pa.Table.from_batches([decode_documents(docs, make_table(1).schema)])

    def expected_read_back(self, data: pa.Table) -> pa.Table:
        return _ms(data)

    def bad_batch(self) -> pa.RecordBatch:
        # uint64 values above 2**63 - 1 have no BSON type: every row fails in the encoder.
        bad = make_table(5, seed=3)
        ids = pa.array(np.full(5, 2**64 - 1, dtype=np.uint64))
        return bad.set_column(0, "id", ids).to_batches()[0]


class TestMongoSinkReplace(TestMongoSink):
    """``ReplaceOne(upsert=True)`` keyed on ``id``."""

    mode = "replace"
