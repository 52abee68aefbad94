"""Partition assignment for whole batches (no Python object per row).

* :func:`murmur2_partitions`: Kafka's default partitioner for keyed records, bit-for-bit the Java
  client's ``Utils.toPositive(Utils.murmur2(key)) % numPartitions`` (the compiled ``_ext.murmur2``
  kernel); null keys get ``-1``, which lets librdkafka choose (its sticky/random partitioner, as the
  Java client does for null keys).
* :func:`round_robin_partitions`: ``(start + i) % n``; returns the next start.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["UNASSIGNED", "murmur2_partitions", "round_robin_partitions"]

#: librdkafka's RD_KAFKA_PARTITION_UA: "let the producer's partitioner decide".
UNASSIGNED = -1


def murmur2_partitions(keys: pa.Array, num_partitions: int) -> np.ndarray:
    """int32 partition per key (``-1`` for null keys) by Kafka's default murmur2 partitioner."""
    from ..._ext import load

    parts = load("murmur2").partition(keys, num_partitions)
    if parts.null_count:
        parts = parts.fill_null(UNASSIGNED)
    return np.asarray(parts.to_numpy(zero_copy_only=False), dtype=np.int32)


def round_robin_partitions(n: int, num_partitions: int, start: int) -> tuple[np.ndarray, int]:
    """``n`` partitions cycling through ``0 .. num_partitions - 1`` from ``start``, and the next start."""
    parts = ((np.arange(n, dtype=np.int64) + start) % num_partitions).astype(np.int32)
    return parts, (start + n) % num_partitions
