"""The conformance suite over the built-in connectors (collections, memory, null, loopback sockets)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from arrowflow.connectors import (
    CollectionSource,
    MemorySink,
    NullSink,
    PrintSink,
    SocketSink,
    SocketSource,
)
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import (
    CollectingServer,
    SinkConformance,
    SourceConformance,
    make_table,
    serve_bytes,
)

# -- collections --------------------------------------------------------------------------------


class TestCollectionSourceTable(SourceConformance):
    def make_source(self, data: pa.Table) -> Source:
        return CollectionSource(data, batch_size=50, split_count=3)


class TestCollectionSourceChunkedTable(SourceConformance):
    """Chunks of uneven size, more splits than chunks: batches stop at chunk boundaries."""

    def make_source(self, data: pa.Table) -> Source:
        chunked = pa.Table.from_batches(data.to_batches(max_chunksize=61))
        return CollectionSource(chunked, split_count=4)


class TestCollectionSourceRows(SourceConformance):
    def make_source(self, data: pa.Table) -> Source:
        return CollectionSource(data.to_pylist(), schema=data.schema, split_count=2)


class TestCollectionSourceGeneratorFunction(SourceConformance):
    """A generator *function* is replayable: a resume calls it again and skips what was delivered."""

    def make_source(self, data: pa.Table) -> Source:
        def generate() -> Iterator[Any]:
            yield from data.to_batches(max_chunksize=40)

        return CollectionSource(generate)


class TestCollectionSourceIterator(SourceConformance):
    """A plain iterator of single rows: bounded, not replayable."""

    replayable = False

    def make_source(self, data: pa.Table) -> Source:
        return CollectionSource(iter(data.to_pylist()), schema=data.schema, batch_size=64)


# -- in-process sinks ---------------------------------------------------------------------------


class TestMemorySink(SinkConformance):
    has_error_policy = False
    ordered = True

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.sink = MemorySink()
        return self.sink

    def read_back(self) -> pa.Table:
        return self.sink.table()


class TestNullSink(SinkConformance):
    """The null sink keeps nothing: its counters are what can be read back."""

    has_error_policy = False

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.sink = NullSink()
        return self.sink

    def read_back(self) -> pa.Table:
        raise AssertionError("unused: check_written compares the counters")

    def check_written(self, sink: Sink, expected: pa.Table) -> None:
        metrics = sink.metrics()
        assert metrics["rows"] == expected.num_rows
        assert metrics["batches"] >= 1 if expected.num_rows else metrics["batches"] == 0
        assert (metrics["bytes"] > 0) == (expected.num_rows > 0)
        assert sink.idempotent


class TestPrintSinkNdjson(SinkConformance):
    """NDJSON printed to a text stream, parsed back line by line."""

    has_error_policy = False
    ordered = True

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.stream = io.StringIO()
        return PrintSink(stream=self.stream, mode="ndjson", prefix="test")

    def read_back(self) -> pa.Table:
        lines = self.stream.getvalue().splitlines()
        assert all(line.startswith("test> ") for line in lines)
        return pa.Table.from_pylist([json.loads(line[len("test> ") :]) for line in lines])


# -- loopback sockets ---------------------------------------------------------------------------


def line_table(num_rows: int) -> pa.Table:
    """Lines for the socket tests: the default table's names, plus empty and non-ASCII lines."""
    names = make_table(num_rows).column("name").to_pylist()
    lines = [("" if i % 97 == 5 else f"{i}:{n}") for i, n in enumerate(names)]
    return pa.table({"line": pa.array(lines, pa.string())})


def encode_lines(data: pa.Table) -> bytes:
    return "".join(f"{line}\n" for line in data.column("line").to_pylist()).encode()


class TestSocketSourceBounded(SourceConformance):
    """Every connection gets the whole text and is then closed: ``bounded=True`` finishes at EOF."""

    replayable = False  # the server happens to resend, but a socket source promises no replay

    def make_data(self) -> pa.Table:
        return line_table(self.num_rows)

    def make_source(self, data: pa.Table) -> Source:
        server = serve_bytes(encode_lines(data))
        self.add_cleanup(server.stop)
        return SocketSource("127.0.0.1", server.port, bounded=True, linger=0.01, recv_size=4096)


class TestSocketSourceUnbounded(SourceConformance):
    """The server keeps the connection open: the source never finishes; reading stops when idle."""

    replayable = False

    def make_data(self) -> pa.Table:
        return line_table(self.num_rows)

    def make_source(self, data: pa.Table) -> Source:
        server = serve_bytes(encode_lines(data), close=False)
        self.add_cleanup(server.stop)
        return SocketSource("127.0.0.1", server.port, linger=0.01, delimiter=b"\n")


class _SocketSinkBase(SinkConformance):
    fmt: str = "ndjson"

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.server = CollectingServer()
        self.add_cleanup(self.server.stop)
        sink = SocketSink("127.0.0.1", self.server.port, format=self.fmt, error_policy=error_policy)
        self.add_cleanup(sink.close)
        return sink

    def complete_bytes(self) -> bytes:
        data = self.server.received()
        return data[: data.rfind(b"\n") + 1]  # a partly received last line is not there yet


class TestSocketSinkNdjson(_SocketSinkBase):
    fmt = "ndjson"

    def read_back(self) -> pa.Table:
        data = self.complete_bytes()
        schema = self.make_data().schema
        if not data:
            return schema.empty_table()
        return pajson.read_json(
            pa.BufferReader(data), parse_options=pajson.ParseOptions(explicit_schema=schema)
        )

    def bad_batch(self) -> pa.RecordBatch:
        # JSON has no NaN: the kernel refuses the batch, so all its rows go to the policy.
        return pa.record_batch({"id": pa.array([1, 2], pa.int64()), "value": pa.array([float("nan"), 1.0])})


class TestSocketSinkCsv(_SocketSinkBase):
    fmt = "csv"

    def read_back(self) -> pa.Table:
        schema = self.make_data().schema
        parts = [p[: p.rfind(b"\n") + 1] for p in self.server.per_connection()]
        tables = [
            pacsv.read_csv(
                pa.BufferReader(p),
                convert_options=pacsv.ConvertOptions(
                    column_types=schema, strings_can_be_null=False, quoted_strings_can_be_null=False
                ),
            )
            for p in parts
            if p.count(b"\n") > 0
        ]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def bad_batch(self) -> pa.RecordBatch:
        # CSV cannot hold a struct column.
        return pa.record_batch({"s": pa.array([{"a": 1}, {"a": 2}, None], pa.struct([("a", pa.int64())]))})


class TestSocketSinkLines(_SocketSinkBase):
    fmt = "lines"
    ordered = True

    def make_data(self) -> pa.Table:
        return line_table(self.num_rows)

    def read_back(self) -> pa.Table:
        text = self.complete_bytes().decode()
        return pa.table({"line": pa.array(text.split("\n")[:-1], pa.string())})

    def bad_batch(self) -> pa.RecordBatch:
        # Two columns and no column= chosen: which one is "the line" is ambiguous.
        return pa.record_batch({"a": ["x", "y"], "b": ["z", "w"]})
