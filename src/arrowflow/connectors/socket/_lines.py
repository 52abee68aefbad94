"""Vectorized line framing shared by the socket source and sink: finding delimiters, splitting
received bytes into a string array, joining an array into delimited lines (no Python object per
line).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def find_delimiters(data: np.ndarray, delimiter: bytes, start: int = 0) -> np.ndarray:
    """Start offsets (int64) of the non-overlapping occurrences of ``delimiter`` in ``data[start:]``.

    ``data`` is a uint8 array. A one-byte delimiter is a single vectorized comparison; a longer one
    compares each of its bytes at every candidate offset, and only for a self-overlapping delimiter
    (such as ``b"aa"``) are overlapping candidates dropped by a loop over the candidates.
    """
    k = len(delimiter)
    if start < 0:
        start = 0
    if len(data) - start < k:
        return np.empty(0, dtype=np.int64)
    if k == 1:
        return np.flatnonzero(data[start:] == delimiter[0]).astype(np.int64) + start
    stop = len(data) - k + 1
    match = data[start:stop] == delimiter[0]
    for j in range(1, k):
        match &= data[start + j : stop + j] == delimiter[j]
    found = np.flatnonzero(match).astype(np.int64) + start
    if len(found) > 1 and bool((np.diff(found) < k).any()):
        keep: list[int] = []
        last_end = -1
        for pos in found.tolist():
            if pos >= last_end:
                keep.append(pos)
                last_end = pos + k
        found = np.asarray(keep, dtype=np.int64)
    return found


def split_lines(data: np.ndarray, ends: np.ndarray, k: int, *, binary: bool = False) -> pa.Array:
    """The lines of ``data`` (uint8) ending at delimiter offsets ``ends`` (delimiter length ``k``).

    ``data`` must start at the first line and end right after the last delimiter. The result is a
    string (or binary) array over one new data buffer without the delimiters; it is not validated.
    """
    n = len(ends)
    if k == 1:
        payload = np.delete(data, ends)
    else:
        mask = np.ones(len(data), dtype=bool)
        mask[(ends[:, None] + np.arange(k)).ravel()] = False
        payload = data[mask]
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends - np.arange(n, dtype=np.int64) * k
    large = len(payload) >= 2**31 - 1
    if binary:
        typ = pa.large_binary() if large else pa.binary()
    else:
        typ = pa.large_string() if large else pa.string()
    offsets_buf = pa.py_buffer(offsets if large else offsets.astype(np.int32))
    return pa.Array.from_buffers(typ, n, [None, offsets_buf, pa.py_buffer(payload)])


def invalid_utf8_rows(binary: pa.Array) -> np.ndarray:
    """Indices of the rows of ``binary`` that are not valid UTF-8 (the slow path, only on failure)."""
    offsets = np.frombuffer(binary.buffers()[1], dtype=np.int32 if binary.type == pa.binary() else np.int64)
    offsets = offsets[binary.offset : binary.offset + len(binary) + 1]
    data = (
        np.frombuffer(binary.buffers()[2], dtype=np.uint8) if binary.buffers()[2] else np.empty(0, np.uint8)
    )
    high = data >= 0x80
    # Only rows holding a non-ASCII byte can be invalid: find them with a cumulative count.
    counts = np.concatenate([[0], np.cumsum(high, dtype=np.int64)])
    suspects = np.flatnonzero(counts[offsets[1:]] - counts[offsets[:-1]])
    bad = []
    raw = data.tobytes()
    for i in suspects.tolist():
        try:
            raw[offsets[i] : offsets[i + 1]].decode("utf-8")
        except UnicodeDecodeError:
            bad.append(i)
    return np.asarray(bad, dtype=np.int64)


def join_lines(array: pa.Array, delimiter: bytes) -> bytes:
    """Every value of a string/binary array followed by ``delimiter``, as one buffer (nulls: empty)."""
    if len(array) == 0:
        return b""
    sep = (
        delimiter
        if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)
        else delimiter.decode()
    )
    joined = pc.binary_join_element_wise(
        array, type(sep)(), sep, null_handling="replace", null_replacement=type(sep)()
    )
    joined = joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined
    width = (
        np.int64
        if pa.types.is_large_binary(joined.type) or pa.types.is_large_string(joined.type)
        else np.int32
    )
    offsets = np.frombuffer(joined.buffers()[1], dtype=width)[joined.offset : joined.offset + len(joined) + 1]
    data = joined.buffers()[2]
    assert data is not None
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes()
