"""DataGenSource: determinism, splits, resume, generators, null rates, rate limiting."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from arrowflow.connectors.datagen import (
    Bool,
    Choice,
    DataGenSource,
    Normal,
    RandomString,
    Sequence,
    Timestamps,
    Uniform,
    Zipf,
)
from arrowflow.connectors.registry import CONNECTORS
from arrowflow.errors import ConfigurationError


def spec() -> dict:
    return {
        "id": Sequence(),
        "u": Uniform(-5, 5, "int32", null_rate=0.1),
        "f": Uniform(0.0, 1.0),
        "n": Normal(10, 2),
        "z": Zipf(1.2, 50),
        "s": RandomString((3, 9), null_rate=0.2),
        "c": Choice(["red", "green", "blue"], weights=[0.6, 0.3, 0.1], dictionary=True),
        "t": Timestamps(datetime(2024, 1, 1), timedelta(seconds=1), "ms"),
        "b": Bool(0.25),
    }


def rows_of(table: pa.Table) -> Counter:
    return Counter(tuple(r.values()) for r in table.to_pylist())


def test_same_seed_same_table_other_seed_differs() -> None:
    a = DataGenSource(spec(), count=3000, batch_size=512, seed=7).read_all()
    b = DataGenSource(spec(), count=3000, batch_size=512, seed=7).read_all(max_rows=100)
    c = DataGenSource(spec(), count=3000, batch_size=512, seed=8).read_all()
    assert a.equals(b)
    assert not a.column("f").equals(c.column("f"))
    assert a.column("id").to_pylist() == list(range(3000))
    a.validate(full=True)


def test_split_count_does_not_change_the_rows() -> None:
    one = DataGenSource(spec(), count=2000, batch_size=300, num_splits=1).read_all()
    for n in (2, 3, 8):
        src = DataGenSource(spec(), count=2000, batch_size=300, num_splits=n)
        splits = src.plan()
        assert len(splits) == n
        many = src.read_all(max_rows=77)
        assert rows_of(many) == rows_of(one)
    # a shorter count is a prefix: row i depends only on (seed, block, field)
    prefix = DataGenSource(spec(), count=450, batch_size=300).read_all()
    assert prefix.equals(one.slice(0, 450))


def test_resume_from_snapshot_regenerates_the_remaining_rows() -> None:
    src = DataGenSource(spec(), count=1000, batch_size=128, num_splits=2)
    full = DataGenSource(spec(), count=1000, batch_size=128).read_all()  # in global row order
    for split in src.plan():
        reader = src.open(split)
        first = [reader.read_batch(50, 0.1) for _ in range(3)]
        pos = reader.snapshot()
        assert isinstance(pos, int)
        assert reader.lag() == split.params["end"] - pos
        rest = []
        while not reader.finished:
            rest.append(reader.read_batch(1000, 0.1))
        reader.close()
        resumed = src.open(split, pos)
        again = []
        while not resumed.finished:
            again.append(resumed.read_batch(33, 0.1))
        assert pa.Table.from_batches(again).equals(pa.Table.from_batches(rest))
        got = pa.Table.from_batches(first + rest)
        start = split.params["start"]
        assert got.equals(full.slice(start, split.params["end"] - start))
        assert resumed.read_batch(10, 0.1) is None and resumed.lag() == 0


def test_generator_types_and_ranges() -> None:
    t = DataGenSource(spec(), count=20_000, batch_size=4096, seed=3).read_all()
    schema = t.schema
    assert schema.field("u").type == pa.int32()
    assert schema.field("c").type == pa.dictionary(pa.int32(), pa.string())
    assert schema.field("t").type == pa.timestamp("ms")
    u = pc.min_max(t.column("u")).as_py()
    assert u == {"min": -5, "max": 5}  # integers: both ends inclusive
    f = pc.min_max(t.column("f")).as_py()
    assert f["min"] >= 0.0 and f["max"] < 1.0
    assert abs(pc.mean(t.column("n")).as_py() - 10) < 0.1
    assert abs(pc.stddev(t.column("n")).as_py() - 2) < 0.1
    z = t.column("z").to_numpy()
    assert z.min() == 1 and z.max() <= 50 and (z == 1).mean() > (z == 2).mean() > (z == 10).mean()
    lengths = pc.utf8_length(t.column("s").combine_chunks().drop_null()).to_numpy()
    assert lengths.min() == 3 and lengths.max() == 9
    chars = set("".join(t.column("s").drop_null().to_pylist()[:500]))
    assert chars <= set(RandomString().alphabet)
    colors = Counter(t.column("c").to_pylist())
    assert colors["red"] > colors["green"] > colors["blue"] > 0
    assert t.column("t")[1].as_py() - t.column("t")[0].as_py() == timedelta(seconds=1)
    assert t.column("t")[0].as_py() == datetime(2024, 1, 1)
    assert abs(pc.mean(t.column("b").cast(pa.int8())).as_py() - 0.25) < 0.02


def test_null_rates_are_approximately_right() -> None:
    t = DataGenSource(spec(), count=20_000, batch_size=4096).read_all()
    assert abs(t.column("u").null_count / 20_000 - 0.1) < 0.015
    assert abs(t.column("s").null_count / 20_000 - 0.2) < 0.015
    assert t.column("f").null_count == 0
    all_null = DataGenSource({"x": Normal(null_rate=1.0)}, count=10).read_all()
    assert all_null.column("x").null_count == 10


def test_custom_alphabet_and_fixed_length() -> None:
    t = DataGenSource(
        {"s": RandomString(4, "ab"), "h": RandomString((1, 2), "0123456789")}, count=500
    ).read_all()
    assert set("".join(t.column("s").to_pylist())) == {"a", "b"}
    assert all(len(v) == 4 for v in t.column("s").to_pylist())
    assert set("".join(t.column("h").to_pylist())) == set("0123456789")


def test_generator_function_gets_the_row_indices() -> None:
    def gen(idx: np.ndarray) -> dict:
        return {"i": idx, "sq": idx * idx}

    src = DataGenSource(generator=gen, count=1000, batch_size=256, num_splits=3)
    t = src.read_all(max_rows=100)
    assert sorted(t.column("i").to_pylist()) == list(range(1000))
    assert all(r["sq"] == r["i"] ** 2 for r in t.to_pylist())


def test_unbounded_strided_splits_and_batches_idle_timeout() -> None:
    src = DataGenSource({"id": Sequence()}, batch_size=10, num_splits=3)
    assert not src.bounded
    readers = [src.open(s) for s in src.plan()]
    seen: dict[int, list[int]] = {i: [] for i in range(3)}

    def ids(batch: pa.RecordBatch | None) -> list[int]:
        assert batch is not None
        return batch.column("id").to_pylist()

    for _ in range(4):
        for i, r in enumerate(readers):
            seen[i] += ids(r.read_batch(7, 0.1))
    # split k owns blocks k, k+3, ...; a batch stops at a block end (7 + 3 + 7 + 3 rows)
    assert seen[0][:12] == [*range(0, 10), 30, 31]
    assert seen[1][:10] == list(range(10, 20))
    assert all(s == sorted(s) and len(s) == 20 for s in seen.values())
    assert not set(seen[0]) & set(seen[1])
    # resume mid-stream
    pos = readers[0].snapshot()
    resumed = src.open(src.plan()[0], pos)
    # position 40 ends block 3; split 0's next block is 6
    assert pos == 40
    assert ids(resumed.read_batch(5, 0.1)) == [60, 61, 62, 63, 64]
    assert ids(readers[0].read_batch(5, 0.1)) == [60, 61, 62, 63, 64]
    with pytest.raises(ConfigurationError):
        src.open(src.plan()[0], 15)  # a row of block 1 belongs to split 1
    assert resumed.lag() is None
    got = 0
    for batch in src.batches(max_rows=1000, timeout=0.1):
        got += batch.num_rows
        if got >= 300:
            break
    assert got >= 300


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_limit_with_injected_clock() -> None:
    clock = FakeClock()
    src = DataGenSource(
        {"id": Sequence()}, rows_per_second=1000, batch_size=10_000, clock=clock, sleep=clock.sleep
    )
    reader = src.open(src.plan()[0])
    total = 0
    for _ in range(200):
        batch = reader.read_batch(100_000, 0.5)
        total += 0 if batch is None else batch.num_rows
        # never more than the rate allows since the bucket started (empty) at t=0
        assert total <= 1000 * clock.now + 1e-6
    assert clock.now > 0
    assert total >= 1000 * clock.now - 50  # and it keeps up with the rate
    # a timeout shorter than the time to the next token returns None without sleeping past it
    reader2 = src.open(src.plan()[0])
    before = clock.now
    assert reader2.read_batch(10, 0.0005) is None
    assert clock.now - before <= 0.0005 + 1e-9


def test_rate_limit_is_shared_by_splits() -> None:
    clock = FakeClock()
    src = DataGenSource(
        {"id": Sequence()}, count=100_000, num_splits=4, rows_per_second=400, clock=clock, sleep=clock.sleep
    )
    readers = [src.open(s) for s in src.plan()]
    total = 0
    for _ in range(50):
        for r in readers:
            b = r.read_batch(10_000, 0.05)
            total += 0 if b is None else b.num_rows
    assert total <= 400 * clock.now + 1e-6
    assert total >= 400 * clock.now * 0.8


def test_validation_and_registry() -> None:
    with pytest.raises(ConfigurationError):
        DataGenSource({"x": Normal()}, count=-1)
    with pytest.raises(ConfigurationError):
        DataGenSource()
    with pytest.raises(ConfigurationError):
        Uniform(5, 1)
    with pytest.raises(ConfigurationError):
        Bool(null_rate=1.5)
    with pytest.raises(ConfigurationError):
        RandomString((5, 2))
    with pytest.raises(ConfigurationError):
        Choice([])
    with pytest.raises(ConfigurationError):
        DataGenSource({"x": 42})  # type: ignore[dict-item]
    empty = DataGenSource({"x": Normal()}, count=0)
    assert empty.read_all().num_rows == 0
    info = [c for c in CONNECTORS if c.name == "datagen"]
    assert info and info[0].sources == ("DataGenSource",)


def test_thread_count_never_changes_the_rows() -> None:
    fields = spec()
    one = DataGenSource(fields, count=30_000, batch_size=10_000, seed=5, threads=1).read_all()
    for threads in (0, 2, 3):
        other = DataGenSource(fields, count=30_000, batch_size=10_000, seed=5, threads=threads).read_all()
        assert other.equals(one)
    with pytest.raises(ConfigurationError):
        DataGenSource(fields, count=1, threads=-1)


def test_values_follow_the_documented_streams() -> None:
    from arrowflow._reference import datagen as reference

    seed, bs = 2**128 - 1, 40
    src = DataGenSource(
        {"id": Sequence(5, 3), "f": Uniform(-1.0, 1.0), "s": RandomString((2, 6), "xyz", null_rate=0.3)},
        count=100,
        batch_size=bs,
        seed=seed,
    )
    t = src.read_all(max_rows=7)
    assert t.column("id").to_pylist() == [5 + 3 * i for i in range(100)]
    block = 2  # rows 80..99
    key = reference.stream_key(seed, block, 1, 0)
    f = reference.generate([("float", key, -1.0, 1.0, 8)], 20)[0]
    assert t.column("f").to_pylist()[80:] == f
    lens_key, bytes_key, null_key = (reference.stream_key(seed, block, 2, s) for s in (0, 2, 1))
    strings = reference.generate([("string", lens_key, bytes_key, 2, 6, b"xyz")], 20)[0]
    valid, _ = reference.generate([("bits", null_key, int(0.3 * 2**32), True)], 20)[0]
    want = [s.decode() if ok else None for s, ok in zip(strings, valid, strict=True)]
    assert t.column("s").to_pylist()[80:] == want


def test_integer_and_float_types() -> None:
    t = DataGenSource(
        {
            "u64": Uniform(0, 2**64 - 1, "uint64"),
            "i8": Uniform(-128, 127, "int8"),
            "u16": Uniform(7, 7, "uint16"),
            "f32": Uniform(-2.5, 2.5, "float32"),
            "i64": Uniform(-(2**63), 2**63 - 1, "int64"),
        },
        count=5000,
    ).read_all()
    assert t.schema.field("u64").type == pa.uint64() and t.schema.field("f32").type == pa.float32()
    assert pc.max(t.column("u64")).as_py() > 2**63  # the full 64-bit range is reachable
    assert pc.min_max(t.column("i8")).as_py() == {"min": -128, "max": 127}
    assert set(t.column("u16").to_pylist()) == {7}
    f32 = pc.min_max(t.column("f32")).as_py()
    assert f32["min"] >= -2.5 and f32["max"] < 2.5
    assert pc.min(t.column("i64")).as_py() < 0 < pc.max(t.column("i64")).as_py()
    with pytest.raises(ConfigurationError, match="does not fit"):
        Uniform(0, 300, "uint8")
    with pytest.raises(ConfigurationError):
        Uniform(0.0, float("inf"))


def test_generating_timestamps_imports_no_pandas() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from datetime import datetime, timedelta, timezone;"
        "from arrowflow.connectors.datagen import DataGenSource, Timestamps;"
        "tz = timezone(timedelta(hours=2));"
        "t = DataGenSource({"
        "'t': Timestamps(datetime(2024, 1, 1, tzinfo=tz), timedelta(milliseconds=5), 'ms'),"
        " 'n': Timestamps(datetime(1969, 12, 31, 23, 59, 59, 999999), 3, 'ns')}, count=3).read_all();"
        "print('pandas' in sys.modules, t.column('t').cast('int64').to_pylist(),"
        " t.column('n').cast('int64').to_pylist())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split(" ", 1)
    assert out[0] == "False"
    # 2024-01-01T00:00+02:00 is 2023-12-31T22:00Z; one microsecond before the epoch in ns.
    t0 = 1_704_060_000_000
    assert out[1].strip() == f"[{t0}, {t0 + 5}, {t0 + 10}] [-1000, -997, -994]"
