"""Filter, Select, Rename, WithColumns, MapBatches, FlatMap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from arrowflow.errors import ConfigurationError
from arrowflow.ops import Filter, FlatMap, MapBatches, Rename, Select, WithColumns


@pytest.fixture
def batch() -> pa.RecordBatch:
    return pa.record_batch(
        {"a": [1, 2, None, 4, 5], "b": [10.0, 20.0, 30.0, 40.0, 50.0], "s": ["x", "y", "z", "w", "v"]}
    )


def rows(batches: list[pa.RecordBatch]) -> list[dict]:
    return [r for b in batches for r in b.to_pylist()]


def test_filter_expression_drops_null_rows(batch: pa.RecordBatch) -> None:
    out = Filter(pc.field("a") > 1).process(batch)
    assert [r["a"] for r in rows(out)] == [2, 4, 5]


@pytest.mark.parametrize(
    ("make_mask", "expected"),
    [
        # a null in an Arrow mask drops the row like SQL
        (lambda b: pc.greater(b.column("a"), 1), ["y", "w", "v"]),
        (lambda b: np.array([False, True, True, True, False]), ["y", "z", "w"]),
        (lambda b: pl.from_arrow(b).get_column("b") > 15, ["y", "z", "w", "v"]),
        (lambda b: b.to_pandas()["b"] > 35, ["w", "v"]),
    ],
)
def test_filter_callable_mask_kinds(batch: pa.RecordBatch, make_mask, expected: list[str]) -> None:
    assert [r["s"] for r in rows(Filter(make_mask).process(batch))] == expected


def test_filter_everything_out_returns_no_batch(batch: pa.RecordBatch) -> None:
    assert Filter(pc.field("b") > 1000).process(batch) == []


def test_filter_rejects_non_boolean_mask_and_bad_predicate(batch: pa.RecordBatch) -> None:
    with pytest.raises(TypeError):
        Filter(lambda b: b.column("a")).process(batch)
    with pytest.raises(ValueError, match="3 values"):
        Filter(lambda b: np.array([True, False, True])).process(batch)
    with pytest.raises(ConfigurationError):
        Filter(42)  # type: ignore[arg-type]


def test_select_rename(batch: pa.RecordBatch) -> None:
    (out,) = Select(["s", "a"]).process(batch)
    assert out.schema.names == ["s", "a"]
    with pytest.raises(KeyError):
        Select(["nope"]).process(batch)
    (renamed,) = Rename({"a": "alpha"}).process(batch)
    assert renamed.schema.names == ["alpha", "b", "s"]
    assert renamed.column(0).equals(batch.column(0))


def test_with_columns_expression_callable_scalar(batch: pa.RecordBatch) -> None:
    op = WithColumns(
        total=pc.field("a") + pc.field("b"),
        b=pc.field("b") * 2,  # replaces in place, computed from the input
        upper=lambda rb: pc.utf8_upper(rb.column("s")),
        src="web",
        n=pa.scalar(1, pa.int8()),
    )
    (out,) = op.process(batch)
    assert out.schema.names == ["a", "b", "s", "total", "upper", "src", "n"]
    assert out.column("total").to_pylist() == [11.0, 22.0, None, 44.0, 55.0]
    assert out.column("b").to_pylist() == [20.0, 40.0, 60.0, 80.0, 100.0]
    assert out.column("upper").to_pylist() == ["X", "Y", "Z", "W", "V"]
    assert out.column("src").to_pylist() == ["web"] * 5
    assert out.schema.field("n").type == pa.int8()


def test_map_batches_formats(batch: pa.RecordBatch) -> None:
    arrow_out = MapBatches(lambda b: b.slice(1, 2)).process(batch)
    assert rows(arrow_out) == batch.slice(1, 2).to_pylist()

    polars_out = MapBatches(lambda df: df.filter(pl.col("b") > 25), batch_format="polars").process(batch)
    assert [r["s"] for r in rows(polars_out)] == ["z", "w", "v"]

    pandas_out = MapBatches(lambda df: df.assign(c=df["b"] + 1), batch_format="pandas").process(batch)
    assert [r["c"] for r in rows(pandas_out)] == [11.0, 21.0, 31.0, 41.0, 51.0]

    assert MapBatches(lambda b: None).process(batch) == []
    assert MapBatches(lambda b: b.slice(0, 0)).process(batch) == []
    table_out = MapBatches(lambda b: pa.Table.from_batches([b, b])).process(batch)
    assert sum(b.num_rows for b in table_out) == 10


def test_map_batches_auto_format_from_annotation(batch: pa.RecordBatch) -> None:
    def with_polars(df: pl.DataFrame) -> pl.DataFrame:
        assert isinstance(df, pl.DataFrame)
        return df.head(1)

    def with_pandas(df: pd.DataFrame) -> pd.DataFrame:
        assert isinstance(df, pd.DataFrame)
        return df.tail(1)

    assert MapBatches(with_polars, batch_format=None).batch_format == "polars"
    assert rows(MapBatches(with_polars, batch_format=None).process(batch))[0]["s"] == "x"
    assert rows(MapBatches(with_pandas, batch_format=None).process(batch))[0]["s"] == "v"
    assert MapBatches(lambda b: b, batch_format=None).batch_format == "pyarrow"
    with pytest.raises(ConfigurationError):
        MapBatches(lambda b: b, batch_format="csv")
    with pytest.raises(TypeError):
        MapBatches(lambda b: 42).process(batch)


def test_flat_map_explodes_and_skips_null_and_empty() -> None:
    # The null list hides two values in the offsets; they must not leak into the output.
    lists = pa.ListArray.from_arrays(
        pa.array([0, 2, 4, 4, 5], pa.int32()),
        pa.array([1, 2, 98, 99, 3]),
        mask=pa.array([False, True, False, False]),
    )
    batch = pa.record_batch({"id": ["a", "b", "c", "d"], "xs": lists})
    (out,) = FlatMap("xs").process(batch)
    assert out.to_pylist() == [{"id": "a", "xs": 1}, {"id": "a", "xs": 2}, {"id": "d", "xs": 3}]
    assert out.schema.field("xs").type == pa.int64()
    # sliced input and large lists
    sliced = pa.record_batch(
        {"id": [1, 2, 3], "xs": pa.array([[1], [2, 3], [4]], pa.large_list(pa.int8()))}
    ).slice(1)
    (out2,) = FlatMap("xs").process(sliced)
    assert out2.to_pylist() == [{"id": 2, "xs": 2}, {"id": 2, "xs": 3}, {"id": 3, "xs": 4}]
    empty = pa.record_batch({"xs": pa.array([[], None], pa.list_(pa.int64()))})
    assert FlatMap("xs").process(empty) == []
    with pytest.raises(TypeError):
        FlatMap("id").process(batch)
