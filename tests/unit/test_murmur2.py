"""``arrowflow._ext.murmur2`` against Kafka's golden vectors and the Python reference.

Golden vectors: Kafka's ``UtilsTest.testMurmur2`` (raw hash values of the Java client) and the
partitions of Kafka's default partitioner over 1000 partitions listed in BASELINES.md.
"""

from __future__ import annotations

import operator

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow._ext import murmur2 as kernel
from arrowflow._reference import murmur2 as reference

# org.apache.kafka.common.utils.UtilsTest.testMurmur2: Java's Utils.murmur2 (signed int).
KAFKA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]
# Kafka's default partitioner with 1000 partitions (BASELINES.md; librdkafka murmur2_random agrees).
KAFKA_PARTITIONS_1000 = [(b"", 681), (b"123456789", 566), (b"a", 524), (b"abc", 107)]

BINARY_TYPES = [pa.binary(), pa.large_binary(), pa.binary_view()]
STRING_TYPES = [pa.string(), pa.large_string(), pa.string_view()]


def test_kernel_is_compiled() -> None:
    assert kernel.__file__.endswith((".so", ".pyd"))


@pytest.mark.parametrize("key_type", BINARY_TYPES)
def test_java_murmur2_vectors(key_type: pa.DataType) -> None:
    keys = pa.array([k for k, _ in KAFKA_MURMUR2], type=key_type)
    result = kernel.murmur2(keys)
    assert result.type == pa.int32()
    assert result.to_pylist() == [h for _, h in KAFKA_MURMUR2]


@pytest.mark.parametrize("key_type", STRING_TYPES)
def test_java_murmur2_vectors_as_strings(key_type: pa.DataType) -> None:
    keys = pa.array([k.decode() for k, _ in KAFKA_MURMUR2], type=key_type)
    assert kernel.murmur2(keys).to_pylist() == [h for _, h in KAFKA_MURMUR2]


def test_reference_matches_java_vectors() -> None:
    for key, expected in KAFKA_MURMUR2:
        assert reference.murmur2(key) == expected
    for key, expected in KAFKA_PARTITIONS_1000:
        assert reference.partition(key, 1000) == expected


@pytest.mark.parametrize("key_type", [*BINARY_TYPES, pa.binary(3)])
def test_default_partitioner_golden_vectors(key_type: pa.DataType) -> None:
    vectors = KAFKA_PARTITIONS_1000
    if pa.types.is_fixed_size_binary(key_type):
        vectors = [(k, p) for k, p in vectors if len(k) == 3]
    keys = pa.array([k for k, _ in vectors], type=key_type)
    result = kernel.partition(keys, 1000)
    assert result.type == pa.int32()
    assert result.to_pylist() == [p for _, p in vectors]


def test_partition_is_masked_hash_modulo() -> None:
    keys = pa.array([k for k, _ in KAFKA_MURMUR2])
    for n in (1, 2, 3, 12, 1000, 2**31 - 1):
        expected = [(h & 0x7FFFFFFF) % n for _, h in KAFKA_MURMUR2]
        assert kernel.partition(keys, n).to_pylist() == expected


def test_every_tail_length() -> None:
    # Lengths 0..40 cover every remainder mod 4, the short-key path (< 4 bytes) and multi-word keys.
    data = bytes(range(200, 241))
    keys = [data[:n] for n in range(41)]
    assert kernel.murmur2(pa.array(keys, pa.binary())).to_pylist() == reference.murmur2_many(keys)


def test_high_bytes_are_unsigned() -> None:
    # Java masks every byte with & 0xff; a sign-extension bug would only show with bytes >= 0x80.
    keys = [b"\xff", b"\x80\xff", b"\xff\xfe\xfd", b"\xff\xff\xff\xff", b"\x80" * 7, b"\xfe" * 33]
    assert kernel.murmur2(pa.array(keys)).to_pylist() == reference.murmur2_many(keys)


def test_nulls_stay_null() -> None:
    keys = pa.array([b"abc", None, b"", None, b"21"])
    result = kernel.partition(keys, 1000)
    assert result.null_count == 2
    assert result.to_pylist() == [107, None, 681, None, (-973932308 & 0x7FFFFFFF) % 1000]
    assert kernel.murmur2(keys).to_pylist() == [479470107, None, reference.murmur2(b""), None, -973932308]


def test_all_null_and_empty_inputs() -> None:
    assert kernel.murmur2(pa.array([None, None], pa.binary())).to_pylist() == [None, None]
    empty = kernel.partition(pa.array([], pa.string()), 7)
    assert empty.type == pa.int32()
    assert len(empty) == 0
    assert kernel.murmur2(pa.chunked_array([], pa.binary())).to_pylist() == []


def test_all_empty_keys_with_empty_data_buffer() -> None:
    # An array of empty strings may carry a zero-length data buffer; nothing may be read from it.
    keys = pa.Array.from_buffers(
        pa.binary(), 3, [None, pa.py_buffer(np.zeros(4, np.int32)), pa.py_buffer(b"")]
    )
    assert kernel.partition(keys, 1000).to_pylist() == [681, 681, 681]


def test_sliced_arrays() -> None:
    raw = [b"x" * n if n % 5 else None for n in range(50)]
    arr = pa.array(raw, pa.large_binary())
    for start, stop in [(0, 50), (1, 49), (7, 8), (13, 44), (50, 50)]:
        sliced = arr.slice(start, stop - start)
        assert kernel.murmur2(sliced).to_pylist() == reference.murmur2_many(raw[start:stop])


def test_sliced_fixed_size_binary_with_nulls() -> None:
    raw = [bytes([i, i + 1, 255 - i, 7, i]) if i % 3 else None for i in range(30)]
    arr = pa.array(raw, pa.binary(5)).slice(4, 21)
    assert kernel.partition(arr, 17).to_pylist() == reference.partition_many(raw[4:25], 17)


def test_chunked_array_gives_one_combined_array() -> None:
    chunks = [
        pa.array([b"abc", None, b"a"]),
        pa.array([], pa.binary()),
        pa.array([b"", b"123456789"] * 5).slice(3),  # sliced chunk, no nulls
        pa.array([None, b"foobar"]),
    ]
    chunked = pa.chunked_array(chunks)
    result = kernel.partition(chunked, 1000)
    assert isinstance(result, pa.Int32Array)
    assert result.to_pylist() == reference.partition_many(chunked.to_pylist(), 1000)
    assert result.null_count == 2


def test_dictionary_keys() -> None:
    arr = pa.array(["abc", "a", None, "abc", "", "a"]).dictionary_encode()
    assert kernel.partition(arr, 1000).to_pylist() == [107, 524, None, 107, 681, 524]
    chunked = pa.chunked_array([arr, pa.array(["123456789"]).dictionary_encode()])
    assert kernel.partition(chunked, 1000).to_pylist() == [107, 524, None, 107, 681, 524, 566]


def test_large_batch_matches_reference_on_a_sample() -> None:
    rng = np.random.default_rng(7)
    lengths = rng.integers(12, 21, 100_000)
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = rng.integers(0, 256, int(offsets[-1]), dtype=np.uint8)
    keys = pa.Array.from_buffers(pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    result = kernel.partition(keys, 64).to_numpy()
    sample = rng.integers(0, len(lengths), 300)
    raw = data.tobytes()
    for i in sample:
        assert result[i] == reference.partition(raw[offsets[i] : offsets[i + 1]], 64)
    assert result.min() >= 0
    assert result.max() < 64


@pytest.mark.parametrize("bad", [0, -1, 2**31])
def test_num_partitions_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="num_partitions"):
        kernel.partition(pa.array([b"a"]), bad)


def test_num_partitions_type() -> None:
    with pytest.raises(TypeError, match="num_partitions"):
        kernel.partition(pa.array([b"a"]), True)
    with pytest.raises(TypeError):
        kernel.partition(pa.array([b"a"]), 3.0)  # type: ignore[arg-type]
    assert kernel.partition(pa.array([b"abc"]), np.int64(1000)).to_pylist() == [107]


@pytest.mark.parametrize(
    "keys", [pa.array([1, 2]), pa.array([[b"a"]]), pa.array([1.5]), pa.array([None], pa.null())]
)
def test_unsupported_key_types(keys: pa.Array) -> None:
    with pytest.raises(TypeError, match="binary"):
        kernel.murmur2(keys)


def test_not_an_arrow_array() -> None:
    with pytest.raises(TypeError, match="Array"):
        kernel.murmur2([b"abc"])  # type: ignore[arg-type]


_keys = st.lists(st.one_of(st.none(), st.binary(max_size=70)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(
    keys=_keys,
    key_type=st.sampled_from([pa.binary(), pa.large_binary(), pa.binary_view()]),
    bounds=st.tuples(st.integers(0, 60), st.integers(0, 60)),
    num_partitions=st.integers(1, 2**31 - 1),
)
def test_kernel_equals_reference(
    keys: list[bytes | None], key_type: pa.DataType, bounds: tuple[int, int], num_partitions: int
) -> None:
    arr = pa.array(keys, type=key_type)
    start, stop = sorted(b % (len(keys) + 1) for b in bounds)
    sliced = arr.slice(start, stop - start)
    expected = keys[start:stop]
    assert kernel.murmur2(sliced).to_pylist() == reference.murmur2_many(expected)
    assert kernel.partition(sliced, num_partitions).to_pylist() == reference.partition_many(
        expected, num_partitions
    )


@settings(max_examples=60, deadline=None)
@given(chunks=st.lists(_keys, max_size=5), num_partitions=st.integers(1, 5000))
def test_chunked_kernel_equals_reference(chunks: list[list[bytes | None]], num_partitions: int) -> None:
    chunked = pa.chunked_array([pa.array(c, pa.binary()) for c in chunks], type=pa.binary())
    flat = [k for c in chunks for k in c]
    result = kernel.partition(chunked, num_partitions)
    assert result.to_pylist() == reference.partition_many(flat, num_partitions)
    assert result.null_count == operator.countOf(flat, None)
