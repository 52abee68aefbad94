"""Slow, obviously-correct port of Kafka's ``Utils.murmur2``: a test oracle for ``arrowflow._ext.murmur2``.

Never used at run time. It follows the Java source line by line: Java ``int`` arithmetic is emulated
by masking to 32 bits after every multiplication, ``>>>`` (unsigned shift) is a plain ``>>`` on the
masked value, and the tail ``switch`` falls through (3 bytes left also runs the 2- and 1-byte cases).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["SEED", "murmur2", "murmur2_many", "partition", "partition_many"]

#: The seed Kafka's Java client uses.
SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2(data)`` as a signed 32-bit int (what Java returns)."""
    length = len(data)
    h = (SEED ^ length) & _MASK
    length4 = length // 4
    for (k,) in struct.iter_unpack("<I", data[: length4 * 4]):
        k = (k * _M) & _MASK
        k ^= k >> _R
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = data[length4 * 4 :]
    rest = length % 4
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition(data: bytes, num_partitions: int) -> int:
    """Kafka's default partitioner for a non-null key: ``toPositive(murmur2(key)) % num_partitions``."""
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be > 0, got {num_partitions!r}")
    return (murmur2(data) & 0x7FFFFFFF) % num_partitions


def murmur2_many(keys: Iterable[bytes | str | None]) -> list[int | None]:
    """``murmur2`` of each key (``str`` is UTF-8 encoded, as Arrow stores it); ``None`` stays ``None``."""
    return [None if k is None else murmur2(k.encode() if isinstance(k, str) else k) for k in keys]


def partition_many(keys: Iterable[bytes | str | None], num_partitions: int) -> list[int | None]:
    """``partition`` of each key; ``None`` stays ``None``."""
    return [
        None if k is None else partition(k.encode() if isinstance(k, str) else k, num_partitions)
        for k in keys
    ]
