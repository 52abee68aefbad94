"""The compiled ``_bulk`` kernel against its pure-Python reference and against the NDJSON grammar."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowflow._ext import bulk
from arrowflow._ext.json_encode import encode_rows
from arrowflow._reference import bulk as ref

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def _batch(ids: list[int | None], names: list[str | None], values: list[float | None]) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array(names, pa.string()),
            "value": pa.array(values, pa.float64()),
            "flag": pa.array([i is not None and i % 2 == 0 for i in ids]),
        }
    )


@st.composite
def batches(draw: st.DrawFn) -> pa.RecordBatch:
    n = draw(st.integers(0, 25))
    ids = draw(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=n, max_size=n))
    names = draw(st.lists(st.one_of(st.none(), TEXT), min_size=n, max_size=n))
    values = draw(
        st.lists(
            st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)), min_size=n, max_size=n
        )
    )
    return _batch(ids, names, values)


def _parse_entries(entries: pa.Array) -> list[list[object]]:
    out = []
    for entry in entries.to_pylist():
        assert entry.endswith(b"\n")
        out.append([json.loads(line) for line in entry[:-1].split(b"\n")])
    return out


def test_compiled() -> None:
    assert bulk.__file__.endswith(".so")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=batches(),
    action=st.sampled_from(bulk.ACTIONS),
    upsert=st.booleans(),
    routing=st.booleans(),
    fixed=st.booleans(),
    threads=st.integers(0, 4),
    skip=st.integers(0, 2),
    slice_rows=st.sampled_from([65536, 1, 3, 8]),
)
def test_entries_equal_reference(
    batch: pa.RecordBatch,
    action: str,
    upsert: bool,
    routing: bool,
    fixed: bool,
    threads: int,
    skip: int,
    slice_rows: int,
) -> None:
    batch = batch.slice(min(skip, batch.num_rows))  # non-zero array offsets
    options = {
        "action": action,
        "id_column": "id",
        "routing_column": "name" if routing else None,
        "doc_as_upsert": upsert,
    }
    if fixed:
        options["index"] = 'ïdx"\\'
    else:
        # Index from a string column: nulls are the sink's business, fill them here.
        batch = batch.set_column(1, "name", batch.column(1).fill_null("fallback"))
        options["index_column"] = "name"
        options["routing_column"] = None
    # Batches over slice_rows are encoded slice by slice into one output (65,536 in production).
    saved = bulk._tune(slice_rows=slice_rows)
    try:
        got = bulk.encode_bulk(batch, threads=threads, **options)
    finally:
        bulk._tune(*saved)
    want = ref.encode_bulk(batch, **options)
    assert got.equals(want)
    assert got.null_count == 0 and len(got) == batch.num_rows


def test_large_batch_on_two_threads_equals_one_thread() -> None:
    # From 65,536 rows on, threads=0 copies the entries on two threads, each writing its row range
    # at its final place; the output must not depend on it. The output (> 8 MiB) is a huge-page
    # block that is kept for the next call once released: a later call must write it afresh.
    n = 70_001
    rng = np.random.default_rng(3)
    ids = pa.array(rng.integers(-(2**40), 2**40, n), pa.int64())
    names = pa.array([None if i % 7 == 0 else f'n"{i}\u00e9\n' for i in range(n)], pa.string())
    pad = pa.array(["p" * (i % 200) for i in range(n)], pa.string())
    batch = pa.record_batch({"id": ids, "name": names, "value": pa.array(rng.random(n)), "pad": pad})
    options = {"index": "i", "id_column": "id", "routing_column": "name"}
    two = bulk.encode_bulk(batch.slice(1), **options)
    assert two.buffers()[2].size > 8 << 20
    one = bulk.encode_bulk(batch.slice(1), threads=1, **options)
    assert two.equals(one) and len(two) == n - 1
    sample = batch.slice(1).slice(34_990, 20)  # around the split point
    assert two.slice(34_990, 20).equals(ref.encode_bulk(sample, **options))
    del two, one
    again = bulk.encode_bulk(batch.slice(5), **options)  # reuses a released block
    assert again.equals(bulk.encode_bulk(batch.slice(5), threads=1, **options))
    assert again.slice(0, 20).equals(ref.encode_bulk(batch.slice(5, 20), **options))
    assert again.slice(len(again) - 20).equals(ref.encode_bulk(batch.slice(n - 20), **options))


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), max_size=60),
    max_actions=st.integers(1, 10),
    max_bytes=st.one_of(st.none(), st.integers(1, 1200)),
    offset=st.integers(0, 3),
)
def test_cut_equals_reference_and_limits_hold(
    sizes: list[int], max_actions: int, max_bytes: int | None, offset: int
) -> None:
    entries = pa.array([b"x" * s for s in [1] * offset + sizes], pa.binary()).slice(offset)
    bounds = bulk.cut(entries, max_actions=max_actions, max_bytes=max_bytes)
    assert bounds.tolist() == ref.cut(entries, max_actions=max_actions, max_bytes=max_bytes).tolist()
    assert bounds[0] == 0 and bounds[-1] == len(sizes)
    arr = np.array(sizes, dtype=np.int64)
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        assert 1 <= b - a <= max_actions
        nbytes = int(arr[a:b].sum())
        if max_bytes is not None:
            # Only a single oversized entry may exceed the byte limit.
            assert nbytes <= max_bytes or b - a == 1
            # Greedy: the next entry would not have fitted.
            if b < len(sizes) and b - a < max_actions:
                assert nbytes + sizes[b] > max_bytes
        elif b < len(sizes):
            assert b - a == max_actions
    bodies = bulk.split_bodies(entries, bounds)
    assert [bytes(x) for x in bodies] == ref.split_bodies(entries, bounds)


def test_bodies_parse_as_ndjson_and_pair_with_rows() -> None:
    n = 2500
    batch = pa.record_batch(
        {
            "id": pa.array([f"doc-{i}" for i in range(n)]),
            "shard": pa.array([f"r{i % 7}" for i in range(n)]),
            "text": pa.array([f'line "{i}"\n\ttab\\ é' for i in range(n)]),
            "n": pa.array(np.arange(n, dtype=np.int32)),
        }
    )
    bodies, bounds = bulk.encode_bodies(
        batch, index="logs", id_column="id", routing_column="shard", max_actions=300, max_bytes=20_000
    )
    assert len(bodies) == len(bounds) - 1 and bounds[-1] == n
    row = 0
    for j, body in enumerate(bodies):
        raw = bytes(body)
        assert len(raw) <= 20_000
        assert raw.endswith(b"\n")
        lines = raw[:-1].split(b"\n")
        assert len(lines) == 2 * (bounds[j + 1] - bounds[j]) <= 600
        for k in range(0, len(lines), 2):
            action = json.loads(lines[k])
            doc = json.loads(lines[k + 1])
            assert action == {"index": {"_index": "logs", "_id": f"doc-{row}", "routing": f"r{row % 7}"}}
            assert doc == {"text": f'line "{row}"\n\ttab\\ é', "n": row}
            row += 1
    assert row == n


def test_index_from_timestamp_template_and_other_meta_types() -> None:
    ts = pa.array([0, 86_400_000_000], pa.timestamp("us"))
    batch = pa.record_batch({"ts": ts, "k": pa.array([1.5, 2.0]), "b": pa.array([True, False])})
    index = pa.compute.strftime(ts, format="logs-%Y.%m.%d")
    entries = bulk.encode_entries(
        encode_rows(batch, columns=["b"]),
        index_values=index,
        ids=batch.column("k"),
        routing=batch.column("b"),
    )
    lines = [json.loads(e.split(b"\n")[0]) for e in entries.to_pylist()]
    assert lines == [
        {"index": {"_index": "logs-1970.01.01", "_id": "1.5", "routing": "true"}},
        {"index": {"_index": "logs-1970.01.02", "_id": "2", "routing": "false"}},
    ]


def test_delete_has_no_document_and_update_wraps_it() -> None:
    batch = pa.record_batch({"id": pa.array([7, 8]), "v": pa.array(["a", "b"])})
    deletes = bulk.encode_bulk(batch, action="delete", index="i", id_column="id")
    assert deletes.to_pylist() == [
        b'{"delete":{"_index":"i","_id":"7"}}\n',
        b'{"delete":{"_index":"i","_id":"8"}}\n',
    ]
    updates = bulk.encode_bulk(batch, action="update", index="i", id_column="id")
    assert updates[0].as_py() == b'{"update":{"_index":"i","_id":"7"}}\n{"doc":{"v":"a"}}\n'
    # Sliced inputs (non-zero array offsets) are honored.
    sliced = bulk.encode_bulk(batch.slice(1), action="create", index="i", id_column="id")
    assert sliced.to_pylist() == [b'{"create":{"_index":"i","_id":"8"}}\n{"v":"b"}\n']


def test_errors() -> None:
    batch = pa.record_batch({"id": pa.array([1])})
    with pytest.raises(ValueError, match="action"):
        bulk.encode_bulk(batch, action="upsert")
    with pytest.raises(KeyError):
        bulk.encode_bulk(batch, id_column="nope")
    with pytest.raises(ValueError, match="documents"):
        bulk.encode_entries(None, action="index", num_rows=1)
    with pytest.raises(ValueError, match="rows"):
        bulk.encode_entries(pa.array([b"{}"]), ids=pa.array([1, 2]))
    with pytest.raises(ValueError, match="max_actions"):
        bulk.cut(pa.array([b"x"]), max_actions=0)
    assert bulk.cut(pa.array([], pa.binary())).tolist() == [0]
    assert bulk.encode_bodies(batch.slice(0, 0), index="i") == ([], bulk.cut(pa.array([], pa.binary())))


def test_sliced_errors_name_the_batch_row_and_index_values_are_taken() -> None:
    values = [1.0] * 10
    values[7] = float("nan")
    batch = pa.record_batch({"id": pa.array(range(10)), "v": pa.array(values)})
    saved = bulk._tune(slice_rows=3)
    try:
        with pytest.raises(ValueError, match=r"column 'v', row 7: NaN"):
            bulk.encode_bulk(batch, index="i", id_column="id")
        names = pa.array([f"ix-{i % 3}" for i in range(10)])
        got = bulk.encode_bulk(batch, index_values=names, id_column="id", nan="null")
        with pytest.raises(ValueError, match="index_column or index_values"):
            bulk.encode_bulk(batch, index_column="id", index_values=names)
    finally:
        bulk._tune(*saved)
    with_column = batch.append_column("ix", names)
    assert got.equals(ref.encode_bulk(with_column, index_column="ix", id_column="id", nan="null"))


# Hostile or unusual meta input (issue 19).


def test_uint64_meta_values_above_int64_are_decimal_text() -> None:
    big = [2**64 - 1, 2**63, 7, None]
    batch = pa.record_batch(
        {
            "id": pa.array(big, pa.uint64()),
            "ix": pa.array(big, pa.uint64()),
            "r": pa.array(big, pa.uint64()),
            "v": [1, 2, 3, 4],
        }
    )
    entries = bulk.encode_bulk(batch, index_column="ix", id_column="id", routing_column="r", columns=["v"])
    actions = [json.loads(e.split(b"\n")[0]) for e in entries.to_pylist()[:3]]
    assert [a["index"]["_id"] for a in actions] == ["18446744073709551615", "9223372036854775808", "7"]
    assert [a["index"]["_index"] for a in actions] == [a["index"]["_id"] for a in actions]
    assert [a["index"]["routing"] for a in actions] == [a["index"]["_id"] for a in actions]


@pytest.mark.parametrize("binary_type", [pa.binary(), pa.large_binary()])
def test_binary_ids_must_be_utf8(binary_type: pa.DataType) -> None:
    ok = pa.array([b"a", "é".encode(), None], binary_type)
    entries = bulk.encode_entries(None, action="delete", ids=ok)
    assert [json.loads(e)["delete"].get("_id") for e in entries.to_pylist()] == ["a", "é", None]
    bad = pa.array([b"a", b"ok", b"\xc3(", b"z"], binary_type)
    with pytest.raises(ValueError, match=r"ids: binary value at row 2 is not valid UTF-8"):
        bulk.encode_entries(None, action="delete", ids=bad)


def test_invalid_arrow_meta_and_docs_are_refused() -> None:
    column = pa.DictionaryArray.from_arrays(pa.array([0, 5], pa.int32()), pa.array(["x"]), safe=False)
    with pytest.raises(ValueError, match=r"routing: invalid Arrow data"):
        bulk.encode_entries(None, action="delete", routing=column)
    offsets = pa.py_buffer(np.array([0, 1 << 30, 2], np.int32).tobytes())
    docs = pa.Array.from_buffers(pa.binary(), 2, [None, offsets, pa.py_buffer(b"{}")])
    with pytest.raises(ValueError, match=r"docs: invalid Arrow data"):
        bulk.encode_entries(docs, index="i")


def test_split_bodies_refuses_bounds_out_of_range() -> None:
    entries = bulk.encode_bulk(pa.record_batch({"a": [1, 2, 3]}), index="i")
    assert [b.to_pybytes() for b in bulk.split_bodies(entries, np.array([0, 2, 3]))] == ref.split_bodies(
        entries, np.array([0, 2, 3])
    )
    for bounds in ([0, -1, 3], [-3, 3], [0, 2, 1, 3], [0, 4], [1, 3], [], [0.0, 3.0]):
        with pytest.raises(ValueError, match="bounds"):
            bulk.split_bodies(entries, np.array(bounds))
