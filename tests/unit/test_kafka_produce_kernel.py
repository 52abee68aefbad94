"""``arrowflow._ext.kafka_produce.produce_rows`` against the pure-Python reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow._ext import kafka_produce as kernel
from arrowflow._reference import kafka_produce as reference


class Recorder:
    """A stand-in for ``Producer.produce`` that records calls and raises at chosen calls."""

    def __init__(self, fail_at: set[int]) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_at = fail_at
        self.attempts = 0

    def __call__(self, *args: Any) -> None:
        self.attempts += 1
        if self.attempts - 1 in self.fail_at:
            raise BufferError("queue full")
        self.calls.append(args)


def _drive(
    impl: Any, values: pa.Array, keys: pa.Array | None, parts: np.ndarray, fail_at: set[int]
) -> Recorder:
    rec = Recorder(fail_at)
    i = 0
    while i < len(values):
        i, exc = impl(rec, "t", values, keys, parts, i, min(len(values), i + 7))
        if exc is not None:
            assert isinstance(exc, BufferError)  # retried, as the sink does
    return rec


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.binary(max_size=20), max_size=30),
    st.booleans(),
    st.sets(st.integers(0, 40), max_size=5),
    st.integers(0, 3),
)
def test_kernel_matches_reference(raw: list[bytes], with_keys: bool, fail_at: set[int], cut: int) -> None:
    values = pa.array([b"x" * cut, *raw], pa.binary()).slice(1)  # a sliced array: offset honoured
    keys = pa.array([r[::-1] for r in raw], pa.binary()) if with_keys else None
    parts = np.arange(len(raw), dtype=np.int32) % 3 - 1
    got = _drive(kernel.produce_rows, values, keys, parts, fail_at)
    want = _drive(reference.produce_rows, values, keys, parts, fail_at)
    assert got.calls == want.calls
    assert [c[1] for c in got.calls] == raw
    assert all(type(c[1]) is bytes and type(c[3]) is int for c in got.calls)


def test_returns_the_failing_row_and_its_exception() -> None:
    values = pa.array([b"a", b"b", b"c"], pa.binary())
    rec = Recorder({1})
    row, exc = kernel.produce_rows(rec, "t", values, None, np.zeros(3, np.int32))
    assert row == 1 and isinstance(exc, BufferError)
    assert rec.calls == [("t", b"a", None, 0)]
    assert kernel.produce_rows(rec, "t", values, None, np.zeros(3, np.int32), 1) == (3, None)
    assert [c[1] for c in rec.calls] == [b"a", b"b", b"c"]


def test_rejects_bad_inputs() -> None:
    values = pa.array([b"a", None], pa.binary())
    with pytest.raises(TypeError, match="nulls"):
        kernel.produce_rows(print, "t", values, None, np.zeros(2, np.int32))
    good = pa.array([b"a"], pa.binary())
    with pytest.raises(ValueError, match="partitions"):
        kernel.produce_rows(print, "t", good, None, np.zeros(2, np.int32))
    with pytest.raises(TypeError, match="keys"):
        kernel.produce_rows(print, "t", good, pa.array(["k"]), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="start"):
        kernel.produce_rows(print, "t", good, None, np.zeros(1, np.int32), 5)
    with pytest.raises(ValueError, match="stop"):
        kernel.produce_rows(print, "t", good, None, np.zeros(1, np.int32), 0, 2)


def test_stop_bounds_the_window() -> None:
    values = pa.array([b"a", b"b", b"c", b"d"], pa.binary())
    rec = Recorder(set())
    assert kernel.produce_rows(rec, "t", values, None, np.zeros(4, np.int32), 1, 3) == (3, None)
    assert [c[1] for c in rec.calls] == [b"b", b"c"]
    assert kernel.produce_rows(rec, "t", values, None, np.zeros(4, np.int32), 3, 3) == (3, None)
    assert reference.produce_rows(rec, "t", values, None, np.zeros(4, np.int32), 3, 4) == (4, None)
    assert [c[1] for c in rec.calls] == [b"b", b"c", b"d"]
