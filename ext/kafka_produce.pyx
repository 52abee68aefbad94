# cython: language_level=3
"""The Kafka sink's produce loop: one ``produce(topic, value, key, partition)`` call per row.

``confluent_kafka.Producer.produce`` accepts only ``bytes`` (not memoryviews), so one ``bytes``
object per value and per key is unavoidable; what this loop removes is everything else the Python
loop paid per row (the interpreter's loop, slicing, list indexing, the ``try`` set-up): values and
keys are cut straight from the Arrow offsets/data buffers with ``PyBytes_FromStringAndSize`` and the
partition comes from an int32 buffer. The GIL is held throughout (every iteration calls Python).

Contract of :func:`produce_rows`:

* ``values``: a ``binary`` array (int32 offsets) without nulls; ``keys``: the same or ``None`` (no
  key); ``partitions``: a C-contiguous int32 numpy array of the same length (-1: librdkafka picks).
* Rows ``start, start + 1, ..., stop - 1`` (``stop`` defaults to ``len(values)``) are produced in
  order. The first row whose call raises stops the loop: the return value is ``(row, exception)``
  and nothing after ``row`` was produced, so the caller can poll and retry that row
  (``BufferError``) or hand it to the error policy and resume at ``row + 1``. ``(stop, None)`` when
  every row was produced. The GIL is never released inside a call, so callers bound ``stop - start``
  to let other threads run between calls.
* The offsets of rows ``start..stop`` are validated first (Arrow's full validation): invalid Arrow
  data raises ``ValueError`` instead of being sliced out of range.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t

import numpy as np
import pyarrow as pa

__all__ = ["produce_rows"]


include "_validate.pxi"


include "_owned.pxi"


cdef const char *_data_ptr(object arr):
    return <const char *>_addr(arr.buffers()[2])


cdef const int32_t *_offsets_ptr(object arr):
    return (<const int32_t *>_addr(arr.buffers()[1])) + <Py_ssize_t>arr.offset


def produce_rows(object produce, object topic, object values, object keys, object partitions,
                 Py_ssize_t start=0, object stop=None):
    """Call ``produce(topic, value, key, partition)`` for rows ``start..stop`` (see the module docstring)."""
    cdef Py_ssize_t total = len(values)
    cdef Py_ssize_t n
    cdef Py_ssize_t i
    if not pa.types.is_binary(values.type) or values.null_count:
        raise TypeError("values must be a binary array without nulls")
    if keys is not None and (
        not pa.types.is_binary(keys.type) or keys.null_count or len(keys) != total
    ):
        raise TypeError("keys must be None or a binary array without nulls, as long as values")
    parts_arr = np.ascontiguousarray(partitions, dtype=np.int32)
    if len(parts_arr) != total:
        raise ValueError(f"{len(parts_arr)} partitions for {total} values")
    n = total if stop is None else stop
    if n < 0 or n > total:
        raise ValueError(f"stop {n} is outside 0..{total}")
    if start < 0 or start > n:
        raise ValueError(f"start {start} is outside 0..{n}")
    if start == n:
        return n, None
    # The loop slices values/keys by their offsets as they are: refuse invalid Arrow data first
    # (only rows start..n: callers walk a batch in bounded steps).
    _validated(values.slice(start, n - start), "values")
    if keys is not None:
        _validated(keys.slice(start, n - start), "keys")
    cdef const int32_t[::1] parts = parts_arr
    cdef const char *vdata = _data_ptr(values)
    cdef const int32_t *vo = _offsets_ptr(values)
    cdef const char *kdata = <const char *>0
    cdef const int32_t *ko = <const int32_t *>0
    cdef bint has_keys = keys is not None
    if has_keys:
        kdata = _data_ptr(keys)
        ko = _offsets_ptr(keys)
    for i in range(start, n):
        value = PyBytes_FromStringAndSize(vdata + vo[i], vo[i + 1] - vo[i])
        if has_keys:
            key = PyBytes_FromStringAndSize(kdata + ko[i], ko[i + 1] - ko[i])
        else:
            key = None
        try:
            produce(topic, value, key, parts[i])
        except Exception as exc:
            return i, exc
    return n, None
