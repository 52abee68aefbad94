"""HyperLogLog pieces for ``approx_distinct`` windows, vectorized with numpy (no Python object per row).

A sketch is kept in *long* form: one row ``(group..., register, rank)`` per non-empty register, so
merging sketches of the same group is a ``group_by(...).max(rank)`` and a batch's contribution is built
the same way. :func:`registers` gives every value its register and rank, :func:`estimate` turns the
per-group ``sum(2**-rank)`` and count of non-empty registers into the estimate (Flajolet et al. 2007,
with the linear-counting correction for small cardinalities; 64-bit hashes need no large-range one).

Hashes (:func:`hash64`): integers, floats, booleans, timestamps and dates hash their 64-bit value
through the SplitMix64 finalizer; strings and binaries hash through Kafka's murmur2 (the compiled
``arrowflow._ext.murmur2`` kernel, 32 bits) and then SplitMix64, so beyond ~10^8 distinct strings per
window hash collisions start to bias the estimate low.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._arrays import as_array, is_binary_like

__all__ = ["alpha", "estimate", "hash64", "registers"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64, copy=True)
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def hash64(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 hash per value (nulls hash like zero; callers mask them). ``TypeError`` for nested types."""
    arr = as_array(values)
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if is_binary_like(t) or pa.types.is_fixed_size_binary(t):
        from .._ext import load

        h32 = load("murmur2").murmur2(arr).fill_null(0).to_numpy(zero_copy_only=False)
        return _splitmix(h32.astype(np.int64).astype(np.uint64))
    if pa.types.is_floating(t):
        f = arr.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        f = f + 0.0  # -0.0 -> 0.0: equal values hash alike
        return _splitmix(f.view(np.uint64))
    if pa.types.is_boolean(t):
        return _splitmix(arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64))
    if pa.types.is_timestamp(t) or pa.types.is_date64(t) or pa.types.is_duration(t):
        arr = arr.view(pa.int64())
    elif pa.types.is_date32(t) or pa.types.is_time32(t):
        arr = arr.view(pa.int32())
    elif pa.types.is_time64(t):
        arr = arr.view(pa.int64())
    if pa.types.is_integer(arr.type):
        ints = arr.cast(pa.int64()) if not pa.types.is_uint64(arr.type) else arr.view(pa.int64())
        return _splitmix(ints.fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64))
    raise TypeError(f"approx_distinct: cannot hash values of type {t} (numbers, timestamps, strings, binary)")


def registers(hashes: np.ndarray, precision: int) -> tuple[np.ndarray, np.ndarray]:
    """``(register index int32, rank int8)`` per hash: the top ``precision`` bits pick the register,
    the rank is one plus the number of leading zeros of the remaining ``64 - precision`` bits."""
    width = 64 - precision
    reg = (hashes >> np.uint64(width)).astype(np.int32)
    rest = hashes & np.uint64((1 << width) - 1)
    # frexp(w) = (m, e) with w = m * 2**e, 0.5 <= m < 1: e - 1 = floor(log2(w)) for w > 0.
    _, exp = np.frexp(rest.astype(np.float64))
    rank = np.where(rest == 0, width + 1, width - (exp.astype(np.int64) - 1))
    return reg, rank.astype(np.int8)


def alpha(m: int) -> float:
    return {16: 0.673, 32: 0.697, 64: 0.709}.get(m, 0.7213 / (1 + 1.079 / m))


def estimate(sum_pow: pa.Array | np.ndarray, nonzero: pa.Array | np.ndarray, precision: int) -> np.ndarray:
    """Distinct-count estimates (int64) from per-group ``sum(2**-rank)`` over non-empty registers and
    the number of non-empty registers."""
    m = 1 << precision
    s = np.asarray(pc.fill_null(sum_pow, 0.0) if isinstance(sum_pow, pa.Array) else sum_pow, dtype=np.float64)
    nz = np.asarray(pc.fill_null(nonzero, 0) if isinstance(nonzero, pa.Array) else nonzero, dtype=np.int64)
    empty = m - nz
    z = s + empty  # an empty register contributes 2**-0 = 1
    raw = alpha(m) * m * m / z
    with np.errstate(divide="ignore"):
        linear = m * np.log(np.where(empty > 0, m / np.maximum(empty, 1), 1.0))
    est = np.where((raw <= 2.5 * m) & (empty > 0), linear, raw)
    return np.rint(est).astype(np.int64)
