"""KeyBy / Partition (murmur2 kernel) and Rebatch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow.errors import ConfigurationError
from arrowflow.ops import KeyBy, Partition, Rebatch, partition_of


def kafka_partition(key: bytes, n: int) -> int:
    """Kafka's murmur2 partitioner in plain Python (the Java client's algorithm), as an oracle."""
    data = key
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length & ~3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % n


def test_oracle_matches_kafka_golden_vectors() -> None:
    assert [kafka_partition(k, 1000) for k in (b"", b"123456789", b"a", b"abc")] == [681, 566, 524, 107]


def test_key_by_single_string_column_matches_kafka() -> None:
    keys = [f"user-{i}" for i in range(200)]
    batch = pa.record_batch({"k": keys, "v": list(range(200))})
    out = KeyBy("k", 7).process(batch)
    assert len({partition_of(b) for b in out}) == len(out)
    seen = []
    for b in out:
        p = partition_of(b)
        ks = b.column("k").to_pylist()
        assert all(kafka_partition(k.encode(), 7) == p for k in ks)
        # rows keep their input order inside a partition
        assert b.column("v").to_pylist() == sorted(b.column("v").to_pylist())
        seen.extend(b.column("v").to_pylist())
    assert sorted(seen) == list(range(200))


def test_key_by_multi_column_uses_json_rows() -> None:
    batch = pa.record_batch({"a": [1, 2, 1, None], "b": ["x", "y", "x", "z"], "c": [0.5, 1.5, 2.5, 3.5]})
    out = KeyBy(["a", "b"], 5).process(batch)
    got = {}
    for b in out:
        for row in b.to_pylist():
            got[row["c"]] = partition_of(b)
    # identical keys land together; the partition is Kafka's for the JSON document of the key
    assert got[0.5] == got[2.5]
    assert got[1.5] == kafka_partition(b'{"a":2,"b":"y"}', 5)
    assert got[3.5] == kafka_partition(b'{"a":null,"b":"z"}', 5)


def test_key_by_metadata_kept_and_null_keys_hash_as_empty() -> None:
    batch = pa.record_batch({"k": pa.array([None, b"a"], pa.binary())}).replace_schema_metadata({b"x": b"1"})
    out = KeyBy("k", 1000).process(batch)
    parts = {partition_of(b): b.column("k").to_pylist() for b in out}
    assert parts == {681: [None], 524: [b"a"]}
    assert all(b.schema.metadata[b"x"] == b"1" for b in out)
    assert partition_of(batch) is None
    with pytest.raises(ConfigurationError):
        KeyBy("k", 0)
    with pytest.raises(KeyError):
        KeyBy("zzz", 3).process(batch)


def test_partition_user_function() -> None:
    batch = pa.record_batch({"v": list(range(10))})
    out = Partition(lambda b: np.asarray(b.column("v")) % 3).process(batch)
    assert {partition_of(b): b.column("v").to_pylist() for b in out} == {
        0: [0, 3, 6, 9],
        1: [1, 4, 7],
        2: [2, 5, 8],
    }
    with pytest.raises(ValueError):
        Partition(lambda b: np.full(b.num_rows, -1)).process(batch)
    with pytest.raises(TypeError):
        Partition(lambda b: np.full(b.num_rows, 0.5)).process(batch)


def test_rebatch_rows_coalesce_and_split() -> None:
    op = Rebatch(rows=4)
    out = []
    for start, size in [(0, 1), (1, 2), (3, 10), (13, 2)]:
        out += op.process(pa.record_batch({"v": list(range(start, start + size))}))
    assert [b.num_rows for b in out] == [4, 4, 4]
    tail = op.flush()
    assert [b.num_rows for b in tail] == [3]
    assert [v for b in out + list(tail) for v in b.column("v").to_pylist()] == list(range(15))
    assert op.flush() == []


def test_rebatch_bytes_and_schema_change() -> None:
    op = Rebatch(bytes=800)  # int64: ~8 bytes per row -> ~100 rows
    out = list(op.process(pa.record_batch({"v": list(range(1000))})))
    assert out and all(90 <= b.num_rows <= 100 for b in out)
    other = pa.record_batch({"w": ["a"]})
    out2 = op.process(other)  # the held int rows leave before the string batch is held
    assert all(b.schema.names == ["v"] for b in out2)
    assert [b.schema.names for b in op.flush()] == [["w"]]
    with pytest.raises(ConfigurationError):
        Rebatch()


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 50), max_size=12), target=st.integers(1, 30))
def test_rebatch_property_keeps_rows_and_sizes(sizes: list[int], target: int) -> None:
    op = Rebatch(rows=target)
    out, n = [], 0
    for s in sizes:
        out += op.process(pa.record_batch({"v": list(range(n, n + s))}))
        n += s
    assert all(b.num_rows == target for b in out)
    out += op.flush()
    assert [v for b in out for v in b.column("v").to_pylist()] == list(range(n))
