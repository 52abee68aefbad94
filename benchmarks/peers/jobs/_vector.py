"""Workload 3's generator, vectorized (numpy + pyarrow): :func:`gen_batch` equals
:func:`_common.gen_row` row by row (tested in tests/unit/test_peers_harness.py). The arrowflow job
hands it to ``DataGenSource(generator=...)``; the harness builds the expected rows with it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

try:  # run as a job script (jobs/ on sys.path) or imported as benchmarks.peers.jobs._vector
    from _arrow import SCHEMA
    from _common import TS_BASE, YEAR_US
except ImportError:  # pragma: no cover - depends on how it is imported
    from ._arrow import SCHEMA
    from ._common import TS_BASE, YEAR_US

_LOWER2 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz" * 2, dtype=np.uint8)
_CODE2 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 2, dtype=np.uint8)
_BASE_US = int(np.datetime64(TS_BASE, "us").astype(np.int64))


def _substrings(alphabet: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """``alphabet[starts[k] : starts[k] + lengths[k]]`` for every k, as one string array."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    pos = np.arange(total, dtype=np.int64) - np.repeat(offsets[:-1].astype(np.int64), lengths)
    data = alphabet[np.repeat(starts, lengths) + pos]
    return pa.Array.from_buffers(
        pa.string(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    )


def gen_batch(indices: np.ndarray) -> pa.RecordBatch:
    """Rows ``indices`` (int64) of the generated table."""
    i = indices.astype(np.int64)
    u = i.astype(np.uint64)
    columns = [
        pa.array(i),
        pa.array(((i * 7919) % 1_000_000) / 100.0),
        _substrings(_LOWER2, i % 26, 15 + i % 11),
        pa.array(i % 2 == 1),
        pa.array(_BASE_US + (i * 1_000_003) % YEAR_US, type=pa.timestamp("us")),
        pa.array(((i * 104_729) % 2_000_001 - 1_000_000).astype(np.int32)),
        _substrings(_CODE2, (i * 7) % 36, 6 + i % 5),
        pa.array(((u * np.uint64(2_654_435_761)) % np.uint64(4_294_967_296)) / 4_294_967_296.0 - 0.5),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)
