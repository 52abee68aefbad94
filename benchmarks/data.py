"""Deterministic benchmark data (numpy, seeded), built column-wise without a Python object per row.

:func:`make_table` is "the table used everywhere" of BASELINES.md: 8 columns, no nulls, ~72 bytes
per row as Arrow (72 MB for 1M rows):

=========  ==============  ======================================================================
column     type            values
=========  ==============  ======================================================================
id         int64           0 .. rows-1 shuffled
price      float64         uniform 0..10000 rounded to 2 decimals (short decimal text)
name       string          15-25 random lowercase ASCII letters
active     bool            p = 0.5
ts         timestamp[us]   uniform over 2026 (naive, UTC)
qty        int32           uniform -1,000,000 .. 1,000,000
code       string          6-10 random uppercase letters and digits
score      float64         standard normal at full precision (17 significant digits: the worst
                           case for shortest round-trip float formatting)
=========  ==============  ======================================================================

The same ``(rows, seed)`` always gives the same table, in every process.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["DEFAULT_SEED", "make_keys", "make_table", "random_strings"]

DEFAULT_SEED = 20261123

_LOWER = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_UPPER_DIGITS = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
_ALNUM = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", dtype=np.uint8)


def random_strings(
    rng: np.random.Generator,
    n: int,
    min_len: int,
    max_len: int,
    alphabet: np.ndarray,
    type: pa.DataType | None = None,
) -> pa.Array:
    """``n`` strings of ``min_len..max_len`` (inclusive) characters drawn from ``alphabet``.

    Built from an offsets buffer and one data buffer, so 1M strings take milliseconds.
    """
    lengths = rng.integers(min_len, max_len + 1, n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = alphabet[rng.integers(0, len(alphabet), int(offsets[-1]))]
    return pa.Array.from_buffers(
        type or pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    )


def make_table(rows: int = 1_000_000, seed: int = DEFAULT_SEED) -> pa.Table:
    """The 8-column benchmark table (see the module docstring), one chunk, no nulls."""
    rng = np.random.default_rng(seed)
    start_us = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    year_us = 365 * 24 * 3600 * 1_000_000
    columns = {
        "id": pa.array(rng.permutation(rows).astype(np.int64)),
        "price": pa.array(np.round(rng.uniform(0, 10_000, rows), 2)),
        "name": random_strings(rng, rows, 15, 25, _LOWER),
        "active": pa.array(rng.random(rows) < 0.5),
        "ts": pa.array(start_us + rng.integers(0, year_us, rows), type=pa.timestamp("us")),
        "qty": pa.array(rng.integers(-1_000_000, 1_000_001, rows).astype(np.int32)),
        "code": random_strings(rng, rows, 6, 10, _UPPER_DIGITS),
        "score": pa.array(rng.standard_normal(rows)),
    }
    return pa.table(columns)


def make_keys(n: int = 1_000_000, seed: int = DEFAULT_SEED, min_len: int = 12, max_len: int = 20) -> pa.Array:
    """``n`` Kafka-style message keys of ``min_len..max_len`` bytes (URL-safe ASCII), as ``binary``."""
    rng = np.random.default_rng(seed + 1)
    return random_strings(rng, n, min_len, max_len, _ALNUM, type=pa.binary())
