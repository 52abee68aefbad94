"""Workload ``murmur2``: Kafka's default partitioner over 1M keys of 12-20 bytes, 64 partitions.

Methods (every one computes ``(murmur2(key) & 0x7fffffff) % 64`` for each key):

* ``arrowflow murmur2 kernel``: :func:`arrowflow._ext.murmur2.partition` over the Arrow buffers.
* ``pure Python (struct)``: ``to_pylist()`` then :func:`arrowflow._reference.murmur2.partition`
  per key (``struct.iter_unpack`` + masked int arithmetic), on a subset of keys.
* ``kafka-python murmur2``: ``to_pylist()`` then kafka-python's own ``murmur2`` per key, on a subset
  (listed as skipped when kafka-python is not installed; it is not a dependency).
* ``numpy grouped by key length``: keys of equal length gathered into a 2-D ``uint8`` matrix, the
  hash computed column-wise on ``uint32`` vectors, results scattered back (written here).

Every baseline's output is checked against the kernel's during setup, so a wrong baseline cannot
produce a flattering ratio.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_keys

NUM_PARTITIONS = 64
_M = np.uint32(0x5BD1E995)
_SEED = np.uint32(0x9747B28C)


def numpy_partition(keys: pa.Array, num_partitions: int) -> np.ndarray:
    """Kafka's default partition of every (non-null) binary key, vectorized per key length."""
    bufs = keys.buffers()
    n = len(keys)
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1, offset=keys.offset * 4)
    data = np.frombuffer(bufs[2], dtype=np.uint8)
    lengths = np.diff(offsets)
    out = np.empty(n, dtype=np.int32)
    with np.errstate(over="ignore"):
        for length in np.unique(lengths):
            idx = np.flatnonzero(lengths == length)
            length = int(length)
            mat = data[offsets[idx][:, None] + np.arange(length)]
            h = np.full(len(idx), _SEED ^ np.uint32(length), dtype=np.uint32)
            nwords = length // 4
            if nwords:
                words = np.ascontiguousarray(mat[:, : nwords * 4]).view("<u4")
                for j in range(nwords):
                    k = words[:, j] * _M
                    k ^= k >> np.uint32(24)
                    k *= _M
                    h *= _M
                    h ^= k
            rest = length & 3
            if rest:
                tail = mat[:, nwords * 4 :].astype(np.uint32)
                if rest == 3:
                    h ^= tail[:, 2] << np.uint32(16)
                if rest >= 2:
                    h ^= tail[:, 1] << np.uint32(8)
                h ^= tail[:, 0]
                h *= _M
            h ^= h >> np.uint32(13)
            h *= _M
            h ^= h >> np.uint32(15)
            out[idx] = ((h & np.uint32(0x7FFFFFFF)) % np.uint32(num_partitions)).astype(np.int32)
    return out


def _kafka_python_murmur2() -> object | None:
    try:
        from kafka.partitioner.default import murmur2  # type: ignore[import-not-found]
    except ImportError:
        try:
            from kafka.partitioner import murmur2  # type: ignore[import-not-found,no-redef]
        except ImportError:
            return None
    return murmur2


def setup(config: RunConfig) -> Prepared:
    from arrowflow._ext.murmur2 import partition
    from arrowflow._reference import murmur2 as reference

    keys = make_keys(config.rows, config.seed)
    n = len(keys)
    bytes_per_row = (keys.buffers()[2].size + 4 * n) / n  # key bytes + offsets
    expected = partition(keys, NUM_PARTITIONS).to_numpy()

    py_n = config.subset(2_000 if config.quick else 20_000)
    py_keys = keys.slice(0, py_n)

    def run_kernel() -> int:
        partition(keys, NUM_PARTITIONS)
        return n

    def run_pure_python() -> int:
        part = reference.partition
        [part(k, NUM_PARTITIONS) for k in py_keys.to_pylist()]
        return py_n

    def run_numpy() -> int:
        numpy_partition(keys, NUM_PARTITIONS)
        return n

    assert [reference.partition(k, NUM_PARTITIONS) for k in py_keys.to_pylist()[:500]] == list(expected[:500])
    assert np.array_equal(numpy_partition(keys, NUM_PARTITIONS), expected)

    methods = {
        "arrowflow murmur2 kernel": Method(run=run_kernel, target=Target(min_rate=80e6)),
        "pure Python (struct)": Method(
            run=run_pure_python,
            note=f"to_pylist + per key on {py_n:,} keys, scaled",
            target=Target(min_speedup=100),
        ),
    }
    kp = _kafka_python_murmur2()
    if kp is None:
        methods["kafka-python murmur2"] = Method(skip="skipped: kafka-python not installed")
    else:
        kp_fn = kp

        def run_kafka_python() -> int:
            [(kp_fn(k) & 0x7FFFFFFF) % NUM_PARTITIONS for k in py_keys.to_pylist()]  # type: ignore[operator]
            return py_n

        got = [(kp_fn(k) & 0x7FFFFFFF) % NUM_PARTITIONS for k in py_keys.to_pylist()[:500]]  # type: ignore[operator]
        assert got == list(expected[:500]), "kafka-python's murmur2 disagrees with the kernel"
        methods["kafka-python murmur2"] = Method(
            run=run_kafka_python, note=f"to_pylist + per key on {py_n:,} keys, scaled"
        )
    methods["numpy grouped by key length"] = Method(run=run_numpy, target=Target(min_speedup=5))
    return Prepared(methods=methods, bytes_per_row=bytes_per_row)


WORKLOAD = register(
    Workload(
        name="murmur2",
        description=f"Kafka default partition ({NUM_PARTITIONS} partitions) of keys of 12-20 bytes",
        setup=setup,
        reference="arrowflow murmur2 kernel",
        idiomatic=("numpy grouped by key length",),
    )
)
