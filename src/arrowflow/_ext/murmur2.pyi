"""Type stubs for the compiled ``arrowflow._ext.murmur2`` kernel (source: ``ext/murmur2.pyx``)."""

import pyarrow as pa

__all__ = ["murmur2", "partition"]

def murmur2(keys: pa.Array | pa.ChunkedArray) -> pa.Int32Array:
    """Kafka's ``Utils.murmur2`` of every key (signed int32); null keys give nulls.

    Keys: binary, large_binary, string, large_string, fixed_size_binary, binary_view, string_view,
    or a dictionary of those. Raises ``TypeError`` for any other type. Releases the GIL.
    """

def partition(keys: pa.Array | pa.ChunkedArray, num_partitions: int) -> pa.Int32Array:
    """Kafka's default partition ``(murmur2(key) & 0x7fffffff) % num_partitions``; nulls stay null.

    Raises ``ValueError`` naming ``num_partitions`` unless ``1 <= num_partitions <= 2**31 - 1``.
    """
