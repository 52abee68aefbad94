"""``arrowflow._ext.datagen`` against its Python reference, plus the properties DataGen relies on.

The reference (:mod:`arrowflow._reference.datagen`) models every formula of the kernel row by row;
hypothesis drives both with small random specs. The other tests pin what DataGenSource needs:
prefix consistency, independence from the thread count, SplitMix64 golden values, and the
distributions (means, ranges, character frequencies) being right.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow._ext import datagen as kernel
from arrowflow._reference import datagen as reference

ALPHABET64 = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
U64 = st.integers(0, 2**64 - 1)


def as_python(spec: tuple[Any, ...], result: Any, n: int) -> Any:
    """A kernel result in the reference's shape."""
    kind = spec[0]
    if kind == "int":
        width = spec[4]
        return [v % 2 ** (8 * width) for v in np.frombuffer(result, dtype=f"<u{width}", count=n).tolist()]
    if kind == "float":
        return np.frombuffer(result, dtype=f"<f{spec[4]}", count=n).tolist()
    if kind == "normal":
        return np.frombuffer(result, dtype="<f8", count=n).tolist()
    if kind == "seq":
        return np.frombuffer(result, dtype="<u8", count=n).tolist()
    if kind == "bits":
        buf, count = result
        return pa.Array.from_buffers(pa.bool_(), n, [None, buf]).to_pylist(), count
    offsets, data, large = result
    return pa.Array.from_buffers(
        pa.large_binary() if large else pa.binary(), n, [None, offsets, data]
    ).to_pylist()


def expected(spec: tuple[Any, ...], value: Any) -> Any:
    if spec[0] == "int":
        return [v % 2 ** (8 * spec[4]) for v in value]
    return value


def test_kernel_is_compiled() -> None:
    assert (kernel.__file__ or "").endswith((".so", ".pyd"))


def test_splitmix64_golden_values() -> None:
    # SplitMix64 seeded with 0 (Vigna's reference implementation's first outputs).
    assert [kernel.word(0, c) for c in range(3)] == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]
    for key, c in [(0, 0), (2**64 - 1, 5), (12345, 2**63)]:
        assert kernel.word(key, c) == reference.word(key, c)
    assert kernel.stream_key(2**100 + 7, 3, 1, 2) == reference.stream_key(2**100 + 7, 3, 1, 2)
    assert kernel.stream_key(1, 0, 0, 0) != kernel.stream_key(1, 0, 0, 1)
    with pytest.raises(ValueError):
        kernel.stream_key(2**128, 0, 0, 0)


int_specs = st.builds(
    lambda key, width, a, b: ("int", key, min(a, b), max(a, b), width),
    U64,
    st.sampled_from([1, 2, 4, 8]),
    st.integers(-100, 100),
    st.integers(-100, 100),
) | st.builds(lambda key: ("int", key, 0, 2**64 - 1, 8), U64)
float_specs = st.builds(
    lambda key, width, a, b: ("float", key, min(a, b), max(a, b), width),
    U64,
    st.sampled_from([4, 8]),
    st.floats(-1e6, 1e6),
    st.floats(-1e6, 1e6),
)
normal_specs = st.builds(
    lambda key, key2, mean, std: ("normal", key, key2, mean, std),
    U64,
    U64,
    st.floats(-100, 100),
    st.floats(0, 10),
)
bits_specs = st.builds(
    lambda key, thr, inv: ("bits", key, thr, inv), U64, st.integers(0, 2**32), st.booleans()
)
string_specs = st.builds(
    lambda k1, k2, a, b, alphabet: ("string", k1, k2, min(a, b), max(a, b), alphabet),
    U64,
    U64,
    st.integers(0, 12),
    st.integers(0, 12),
    st.binary(min_size=1, max_size=100) | st.sampled_from([ALPHABET64, ALPHABET64[:62], ALPHABET64[:2]]),
)
seq_specs = st.builds(
    lambda first, step: ("seq", first, step), st.integers(-(2**63), 2**63 - 1), st.integers(-1000, 1000)
)
any_spec = int_specs | float_specs | normal_specs | bits_specs | string_specs | seq_specs


@settings(max_examples=60, deadline=None)
@given(specs=st.lists(any_spec, min_size=1, max_size=4), n=st.integers(0, 150), threads=st.integers(1, 3))
def test_kernel_equals_reference(specs: list[tuple[Any, ...]], n: int, threads: int) -> None:
    got = kernel.generate(specs, n, threads)
    want = reference.generate(specs, n)
    for spec, g, w in zip(specs, got, want, strict=True):
        assert as_python(spec, g, n) == expected(spec, w), spec


def test_normal_slow_paths_equal_reference() -> None:
    # ~1.3% of rows leave the ziggurat's fast path and ~0.03% take the tail: 20k rows cover both.
    n = 20_000
    spec = ("normal", 99, 100, 0.0, 1.0)
    got = as_python(spec, kernel.generate([spec], n, 2)[0], n)
    want = reference.generate([spec], n)[0]
    assert got == want
    x = reference.ZIG_X
    ratio = reference.ZIG_RATIO
    slow = [
        c
        for c in range(n)
        if not abs(2.0 * reference.unit(reference.word(99, c)) - 1.0) < ratio[reference.word(99, c) & 0xFF]
    ]
    assert 100 < len(slow) < 500
    assert max(abs(v) for v in got) > x[1]  # some values come from the tail beyond R


def test_prefix_and_thread_independence() -> None:
    specs: list[tuple[Any, ...]] = [
        ("string", 1, 2, 15, 25, ALPHABET64),
        ("string", 3, 4, 0, 7, b"0123456789"),
        ("normal", 5, 6, 0.0, 1.0),
        ("bits", 7, 2**31, True),
        ("int", 8, -(2**31), 2**31 - 1, 4),
    ]
    full = kernel.generate(specs, 50_000, 1)
    for threads in (2, 3):
        again = kernel.generate(specs, 50_000, threads)
        for spec, a, b in zip(specs, full, again, strict=True):
            assert as_python(spec, a, 50_000) == as_python(spec, b, 50_000)
    short = kernel.generate(specs, 12_345, 2)
    for spec, a, b in zip(specs, full, short, strict=True):
        prefix, whole = as_python(spec, b, 12_345), as_python(spec, a, 50_000)
        if spec[0] == "bits":
            prefix, whole = prefix[0], whole[0]
        assert prefix == whole[:12_345]


def test_distributions() -> None:
    n = 200_000
    ints, floats, normals, bits, strings, strings62 = kernel.generate(
        [
            ("int", 1, -3, 3, 1),
            ("float", 2, 5.0, 6.0, 8),
            ("normal", 3, 4, 10.0, 2.0),
            ("bits", 5, 2**30, False),
            ("string", 6, 7, 15, 25, ALPHABET64),
            ("string", 8, 9, 1, 1, ALPHABET64[:62]),
        ],
        n,
    )
    i = np.frombuffer(ints, dtype=np.int8)
    assert set(np.unique(i).tolist()) == set(range(-3, 4))
    assert np.bincount(i + 3).min() > n / 7 * 0.97
    f = np.frombuffer(floats, dtype=np.float64)
    assert f.min() >= 5.0 and f.max() < 6.0 and abs(f.mean() - 5.5) < 0.005
    z = np.frombuffer(normals, dtype=np.float64)
    assert abs(z.mean() - 10.0) < 0.02 and abs(z.std() - 2.0) < 0.02
    # a normal's fourth standardized moment is 3 (the ziggurat's shape, not just its scale)
    assert abs((((z - 10.0) / 2.0) ** 4).mean() - 3.0) < 0.1
    assert abs(bits[1] / n - 0.25) < 0.005
    offsets, data, large = strings
    lengths = np.diff(np.frombuffer(offsets, dtype=np.int32))
    assert not large and lengths.min() == 15 and lengths.max() == 25
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)[list(ALPHABET64)]
    assert counts.sum() == len(data)
    expected_count = len(data) / 64
    chi2 = float(((counts - expected_count) ** 2 / expected_count).sum())
    assert chi2 < 130  # 63 degrees of freedom: p < 1e-5 above ~120
    one_char = np.frombuffer(strings62[1], dtype=np.uint8)
    counts62 = np.bincount(one_char, minlength=256)[list(ALPHABET64[:62])]
    assert counts62.sum() == n
    chi2 = float(((counts62 - n / 62) ** 2 / (n / 62)).sum())
    assert chi2 < 130


def test_fixed_and_empty_strings() -> None:
    ((offsets, data, large),) = kernel.generate([("string", 1, 2, 0, 0, b"a")], 10)
    assert not large and offsets.size == 44 and data.size == 0
    ((offsets, data, large),) = kernel.generate([("string", 1, 2, 3, 3, b"a")], 5)
    assert bytes(data) == b"a" * 15 and np.frombuffer(offsets, dtype=np.int32).tolist() == [
        0,
        3,
        6,
        9,
        12,
        15,
    ]


def test_bad_specs() -> None:
    with pytest.raises(ValueError, match="unknown spec kind"):
        kernel.generate([("gauss", 1)], 10)
    with pytest.raises(ValueError, match="width"):
        kernel.generate([("int", 1, 0, 5, 3)], 10)
    with pytest.raises(ValueError, match="high"):
        kernel.generate([("float", 1, 2.0, 1.0, 8)], 10)
    with pytest.raises(ValueError, match="alphabet"):
        kernel.generate([("string", 1, 2, 0, 3, b"")], 10)
    with pytest.raises(ValueError, match="threshold"):
        kernel.generate([("bits", 1, 2**32 + 1, False)], 10)
    with pytest.raises(ValueError, match="n must be"):
        kernel.generate([("seq", 0, 1)], -1)
    assert kernel.generate([], 10) == []
    assert math.isfinite(np.frombuffer(kernel.generate([("normal", 1, 2, 0.0, 1.0)], 1)[0])[0])
