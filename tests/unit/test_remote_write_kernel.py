"""``arrowflow._ext.remote_write`` against the Python reference and the ``protobuf`` runtime.

The WriteRequest bytes must equal both the reference encoder's and ``SerializeToString()`` of the
same message built with the protobuf package (proto3 defaults left out), and parse back to the
input labels, values and timestamps.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow._ext import remote_write as kernel
from arrowflow._reference import remote_write as reference

WriteRequest = reference.write_request_class()

names = st.sampled_from(["up", "http_requests_total", "a:b", "bad name", "", None, "x"])
label_values = st.one_of(st.none(), st.text(max_size=6))
map_keys = st.sampled_from(["job", "zone", "A", "__name__", "9bad", "b_2", "env"])


def test_kernel_is_compiled() -> None:
    assert kernel.__file__.endswith((".so", ".pyd"))


@st.composite
def label_inputs(draw: st.DrawFn) -> tuple[int, list, pa.Array | None]:
    n = draw(st.integers(0, 12))
    metric = pa.array(draw(st.lists(names, min_size=n, max_size=n)), pa.string())
    env = pa.array(draw(st.lists(label_values, min_size=n, max_size=n)), pa.large_string())
    columns: list = [(b"__name__", metric), (b"env", env), (b"job", b"static")]
    label_map = None
    if draw(st.booleans()):
        rows = draw(
            st.lists(
                st.one_of(st.none(), st.lists(st.tuples(map_keys, label_values), max_size=3)),
                min_size=n,
                max_size=n,
            )
        )
        label_map = pa.array(rows, pa.map_(pa.string(), pa.string()))
    if n > 2 and draw(st.booleans()):
        # Sliced inputs: the kernel must honour array offsets.
        columns = [(k, v if isinstance(v, bytes) else v.slice(1, n - 2)) for k, v in columns]
        label_map = label_map.slice(1, n - 2) if label_map is not None else None
        n -= 2
    return n, columns, label_map


@settings(max_examples=150, deadline=None)
@given(label_inputs())
def test_encode_labels_equals_reference(args: tuple[int, list, pa.Array | None]) -> None:
    n, columns, label_map = args
    got, got_errs, got_bad = kernel.encode_labels(n, columns, label_map)
    want, want_errs, want_bad = reference.encode_labels(n, columns, label_map)
    assert got.to_pylist() == want.to_pylist()
    assert got_errs.tolist() == want_errs.tolist()
    assert got_bad == want_bad


def test_label_errors_and_sorting() -> None:
    metric = pa.array(["up", None, "up", "bad-name", "up"])
    m = pa.array(
        [[("Z", "1"), ("a", "2")], [], [("job", "dup")], [], [("1x", "v")]],
        pa.map_(pa.string(), pa.string()),
    )
    labels, errs, bad = kernel.encode_labels(5, [(b"__name__", metric), (b"job", b"j")], m)
    assert errs.tolist() == [0, 1, 2, 4, 3]
    assert bad == 4
    ts = WriteRequest()
    ts.ParseFromString(kernel.encode_write_request(labels.slice(0, 1), np.zeros(1), np.ones(1), np.ones(1)))
    assert [(lab.name, lab.value) for lab in ts.timeseries[0].labels] == [
        ("Z", "1"),
        ("__name__", "up"),
        ("a", "2"),
        ("job", "j"),
    ]
    assert labels.to_pylist()[1:] == [b""] * 4


def test_encode_labels_rejects_bad_input() -> None:
    with pytest.raises(TypeError):
        kernel.encode_labels(1, [(b"__name__", pa.array([1]))])
    with pytest.raises(ValueError, match="rows"):
        kernel.encode_labels(2, [(b"__name__", pa.array(["a"]))])
    with pytest.raises(TypeError):
        kernel.encode_labels(1, [("__name__", b"a")])


floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.0])
stamps = st.integers(-(2**62), 2**62) | st.sampled_from([0, -1, 1_700_000_000_000])


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(st.tuples(st.integers(0, k - 1), floats, stamps), max_size=40),
        )
    )
)
def test_write_request_equals_reference_and_protobuf(args: tuple[int, list]) -> None:
    k, samples = args
    metric = pa.array([f"m{i}" for i in range(k)])
    labels, errs, _ = kernel.encode_labels(
        k, [(b"__name__", metric), (b"i", pa.array([str(i) for i in range(k)]))]
    )
    assert not errs.any()
    series = np.array([s for s, _, _ in samples], dtype=np.int64)
    values = np.array([v for _, v, _ in samples], dtype=np.float64)
    ts = np.array([t for _, _, t in samples], dtype=np.int64)
    order = np.lexsort((ts, series))
    got = kernel.encode_write_request(labels, series, values, ts, order)
    assert got == reference.encode_write_request(labels, series, values, ts, order)
    # The protobuf runtime builds the same message to the same bytes.
    msg = WriteRequest()
    i = 0
    idx = order.tolist()
    while i < len(idx):
        sid = int(series[idx[i]])
        t = msg.timeseries.add()
        t.labels.add(name="__name__", value=f"m{sid}")
        t.labels.add(name="i", value=str(sid))
        while i < len(idx) and series[idx[i]] == sid:
            t.samples.add(value=values[idx[i]], timestamp=int(ts[idx[i]]))
            i += 1
    assert got == msg.SerializeToString()
    back = WriteRequest()
    back.ParseFromString(got)
    flat = [(s.timestamp, s.value) for t in back.timeseries for s in t.samples]
    want = [(int(ts[j]), float(values[j])) for j in idx]
    assert len(flat) == len(want)
    for (t1, v1), (t2, v2) in zip(flat, want, strict=True):
        assert t1 == t2
        assert (math.isnan(v1) and math.isnan(v2)) or v1 == v2


def test_write_request_checks_inputs() -> None:
    labels = pa.array([b"\x0a\x00"], pa.large_binary())
    assert kernel.encode_write_request(labels, np.zeros(0), np.zeros(0), np.zeros(0)) == b""
    with pytest.raises(ValueError, match="series ids"):
        kernel.encode_write_request(labels, np.array([1]), np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="equal lengths"):
        kernel.encode_write_request(labels, np.zeros(2), np.zeros(1), np.zeros(2))
    with pytest.raises(ValueError, match="order"):
        kernel.encode_write_request(labels, np.zeros(1), np.zeros(1), np.zeros(1), np.array([3]))
