"""Unit tests of the built-in connectors: collection inputs, line splitting, print/memory/null sinks."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow.connectors import CollectionSource, MemorySink, NullSink, PrintSink
from arrowflow.connectors.registry import CONNECTORS
from arrowflow.connectors.socket import find_delimiters, split_lines
from arrowflow.errors import ArrowflowError, ConfigurationError

SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.string())])
EXPECTED = pa.table({"a": [1, 2, 3], "b": ["x", "y", None]}, schema=SCHEMA)


# -- CollectionSource inputs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": None}], id="list-of-dicts"),
        pytest.param({"a": [1, 2, 3], "b": ["x", "y", None]}, id="dict-of-lists"),
        pytest.param([(1, "x"), (2, "y"), (3, None)], id="list-of-tuples"),
        pytest.param(EXPECTED, id="table"),
        pytest.param(EXPECTED.to_batches()[0], id="record-batch"),
        pytest.param(EXPECTED.to_batches(max_chunksize=2), id="list-of-batches"),
        pytest.param(pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]}), id="pandas"),
        pytest.param(pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]}), id="polars"),
        pytest.param(iter(EXPECTED.to_batches(max_chunksize=1)), id="iterator-of-batches"),
        pytest.param(iter([(1, "x"), (2, "y"), (3, None)]), id="iterator-of-tuples"),
        pytest.param(lambda: iter(EXPECTED.to_pylist()), id="generator-function"),
        pytest.param(pa.RecordBatchReader.from_batches(SCHEMA, EXPECTED.to_batches()), id="batch-reader"),
    ],
)
def test_collection_inputs(data: object) -> None:
    source = CollectionSource(data, schema=SCHEMA)
    assert source.bounded
    assert source.read_all().equals(EXPECTED)


def test_tuples_need_a_schema() -> None:
    with pytest.raises(ConfigurationError) as info:
        CollectionSource([(1, "x")])
    assert info.value.option == "schema"


@pytest.mark.parametrize(("option", "value"), [("batch_size", 0), ("split_count", -1), ("batch_size", 1.5)])
def test_collection_config_is_validated(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        CollectionSource(EXPECTED, **{option: value})  # type: ignore[arg-type]
    assert info.value.option == option


def test_table_batches_are_zero_copy_slices() -> None:
    table = pa.table({"x": np.arange(1000, dtype=np.int64)})
    source = CollectionSource(table, batch_size=100)
    (split,) = source.plan()
    address = table.column("x").chunks[0].buffers()[1].address
    with source.open(split, 300) as reader:
        batch = reader.read_batch(1000, 0)
    assert batch is not None
    assert batch.num_rows == 100
    assert batch.column(0).buffers()[1].address == address
    assert batch.column(0).offset == 300


def test_batches_stop_at_chunk_boundaries() -> None:
    table = pa.Table.from_batches(pa.table({"x": range(10)}).to_batches(max_chunksize=4))
    source = CollectionSource(table)
    assert [b.num_rows for b in source.batches(max_rows=3)] == [3, 1, 3, 1, 2]


def test_split_ranges_cover_the_table() -> None:
    source = CollectionSource(pa.table({"x": range(10)}), split_count=4)
    ranges = [(s.params["start"], s.params["stop"]) for s in source.plan()]
    assert ranges == [(0, 2), (2, 5), (5, 7), (7, 10)]
    with pytest.raises(ArrowflowError):
        source.open(source.plan()[0], 3)  # outside the split's rows


def test_iterator_resume_in_process_keeps_pending_rows() -> None:
    source = CollectionSource(iter([EXPECTED]))
    (split,) = source.plan()
    reader = source.open(split)
    first = reader.read_batch(1, 0)
    assert first is not None and first.num_rows == 1
    position = reader.snapshot()
    reader.close()
    # The iterator yielded all 3 rows at once; the 2 not delivered are still handed out.
    rest = source.open(split, position)
    second = rest.read_batch(10, 0)
    assert second is not None
    assert second.column("a").to_pylist() == [2, 3]
    with pytest.raises(ArrowflowError, match="consumed iterator"):
        source.open(split, 0)


def test_generator_function_resume_skips() -> None:
    def rows():  # type: ignore[no-untyped-def]
        for i in range(10):
            yield {"i": i}

    source = CollectionSource(rows, batch_size=3)
    (split,) = source.plan()
    with source.open(split, 7) as reader:
        batch = reader.read_batch(100, 0)
    assert batch is not None
    assert batch.column("i").to_pylist() == [7, 8, 9]
    with pytest.raises(ArrowflowError, match="ended after"):
        source.open(split, 11)


def test_rows_then_chunks_in_one_iterator() -> None:
    items = [{"a": 1, "b": "x"}, pa.table({"a": [2], "b": ["y"]}), {"a": 3, "b": None}]
    assert CollectionSource(iter(items)).read_all().equals(EXPECTED)


def test_importing_connectors_loads_no_dataframe_library() -> None:
    # Only imports: pyarrow itself loads pandas the first time it converts Python or numpy data.
    code = (
        "import sys\n"
        "from arrowflow.connectors import CollectionSource, SocketSource, SocketSink, PrintSink\n"
        "from arrowflow.connectors import MemorySink, NullSink\n"
        "import arrowflow.testing\n"
        "bad = [m for m in ('polars', 'pandas', 'confluent_kafka', 'rich', 'click', 'yaml')\n"
        "       if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_registry_names_resolve() -> None:
    import arrowflow.connectors as connectors

    builtins = {"collection", "socket", "print", "null", "memory"}
    listed = {name for info in CONNECTORS for name in (*info.sources, *info.sinks)}
    assert listed <= set(dir(connectors))
    for info in CONNECTORS:
        if info.name not in builtins:
            continue
        module = importlib.import_module(info.module)
        for name in (*info.sources, *info.sinks):
            assert getattr(module, name) is getattr(connectors, name)
    with pytest.raises(AttributeError):
        _ = connectors.NoSuchConnector  # type: ignore[attr-defined]


# -- line splitting -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=30), max_size=8),
    delimiter=st.sampled_from([b"\n", b"\r\n", b"aa", b"|"]),
)
def test_find_delimiters_and_split_lines_match_bytes_split(chunks: list[bytes], delimiter: bytes) -> None:
    data = delimiter.join(chunks) + delimiter
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = find_delimiters(arr, delimiter)
    lines = split_lines(arr, ends, len(delimiter), binary=True)
    assert lines.to_pylist() == data.split(delimiter)[:-1]
    lines.validate(full=True)


def test_find_delimiters_from_offset() -> None:
    arr = np.frombuffer(b"a\nb\nc\n", dtype=np.uint8)
    assert find_delimiters(arr, b"\n", 2).tolist() == [3, 5]
    assert find_delimiters(arr, b"\n\n").tolist() == []


# -- PrintSink ----------------------------------------------------------------------------------


def test_print_table_mode_with_prefix() -> None:
    out = io.StringIO()
    sink = PrintSink(stream=out, max_rows=2, prefix="job")
    sink.write(pa.record_batch({"id": [1, 22, 333], "s": ["a", None, "c\nd"]}))
    sink.close()
    assert out.getvalue().splitlines() == [
        "job> id | s",
        "job> ---+-----",
        "job>  1 | a",
        "job> 22 | null",
        "job> ... 1 more row (3 in this batch)",
    ]
    assert sink.metrics() == {"rows": 3, "batches": 1}


def test_print_ndjson_mode_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    sink = PrintSink(stream="stderr", mode="ndjson", prefix="p")
    sink.write(pa.record_batch({"a": [1, 2], "b": ["x", None]}))
    sink.write(pa.record_batch({"a": pa.array([], pa.int64()), "b": pa.array([], pa.string())}))
    sink.flush()
    out, err = capfd.readouterr()
    assert out == ""
    assert err.splitlines() == ['p> {"a":1,"b":"x"}', 'p> {"a":2,"b":null}']
    assert [json.loads(line[3:]) for line in err.splitlines()] == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]
    sink.close()
    with pytest.raises(ArrowflowError):
        sink.write(pa.record_batch({"a": [1]}))


def test_print_config_is_validated() -> None:
    with pytest.raises(ConfigurationError) as info:
        PrintSink(mode="html")
    assert info.value.option == "mode"
    with pytest.raises(ConfigurationError) as info:
        PrintSink(stream="stdlog")
    assert info.value.option == "stream"


# -- MemorySink / NullSink ----------------------------------------------------------------------


def test_memory_sink_views_and_threads() -> None:
    sink = MemorySink()

    def writer(k: int) -> None:
        for i in range(50):
            sink.write(pa.record_batch({"k": [k] * 3, "i": [i] * 3}))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    table = sink.table()
    assert table.num_rows == 600
    assert sorted(table.column("k").to_pylist()) == sorted([k for k in range(4) for _ in range(150)])
    assert sink.to_polars().shape == (600, 2)
    assert sink.to_pandas().shape == (600, 2)
    assert sink.metrics()["batches"] == 200
    assert not sink.idempotent


def test_memory_sink_unifies_schemas() -> None:
    sink = MemorySink()
    assert sink.table().num_rows == 0
    sink.write(pa.record_batch({"a": [1]}))
    sink.write(pa.record_batch({"a": [2], "b": ["x"]}))
    assert sink.table().to_pylist() == [{"a": 1, "b": None}, {"a": 2, "b": "x"}]


def test_null_sink_counts() -> None:
    sink = NullSink()
    batch = pa.record_batch({"a": np.arange(100)})
    sink.write(batch)
    sink.write(batch.slice(0, 0))
    assert sink.metrics() == {"rows": 100, "bytes": batch.nbytes, "batches": 2}
    sink.close()
    sink.close()
    with pytest.raises(ArrowflowError):
        sink.write(batch)


@pytest.mark.parametrize("kind", ["source", "sink"])
def test_socket_connectors_take_their_options_or_one_config(kind: str) -> None:
    # Issue 17's one convention: the keywords mirror the config dataclass, and config= is the same.
    from arrowflow.connectors.socket import SocketSink, SocketSinkConfig, SocketSource, SocketSourceConfig

    cls, config_cls = (
        (SocketSource, SocketSourceConfig) if kind == "source" else (SocketSink, SocketSinkConfig)
    )
    config = config_cls(host="127.0.0.1", port=9, delimiter=b";")
    connector = cls(config=config)
    assert connector.config is config
    assert cls("127.0.0.1", 9, delimiter=b";").config == config
    with pytest.raises(ConfigurationError, match="either config or individual options") as err:
        cls("127.0.0.1", 9, config=config)
    assert err.value.option == "host"
    with pytest.raises(ConfigurationError) as err:
        cls(port=9)
    assert err.value.option == "host"
