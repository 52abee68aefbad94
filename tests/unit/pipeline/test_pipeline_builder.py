"""The fluent builder: each method appends the matching operator and returns a new Pipeline."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from arrowflow import ConfigurationError, Pipeline, RunResult
from arrowflow.connectors.collection import CollectionSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.ops import (
    Enrich,
    Filter,
    FlatMap,
    KeyBy,
    MapBatches,
    Operator,
    Rebatch,
    Rename,
    Select,
    WithColumns,
)


def _source() -> CollectionSource:
    return CollectionSource(
        pa.table({"k": np.arange(1_000) % 7, "v": np.arange(1_000), "tags": [[1, 2]] * 1_000}),
        batch_size=100,
        split_count=2,
    )


def test_builder_methods_build_the_operators_and_leave_the_original_unchanged() -> None:
    base = Pipeline(_source())

    async def lookup(row: dict[str, object]) -> int:
        return 1

    built = (
        base.filter(pc.field("v") >= 0)
        .select(["k", "v", "tags"])
        .rename({"v": "value"})
        .with_columns(double=pc.field("value") * 2)
        .map_batches(lambda b: b)
        .key_by("k", 4)
        .rebatch(rows=250)
        .flat_map("tags")
        .enrich(lookup, capacity=8)
    )
    kinds = [Filter, Select, Rename, WithColumns, MapBatches, KeyBy, Rebatch, FlatMap, Enrich]
    assert [type(op) for op in built.operators] == kinds
    assert base.operators == () and base.sink is None
    sink = MemorySink()
    runnable = built.to(sink)
    assert built.sink is None and runnable.sink is sink
    assert repr(runnable).startswith("Pipeline(collection -> filter -> select")


def test_a_built_chain_runs_end_to_end() -> None:
    sink = MemorySink()
    result = (
        Pipeline(_source())
        .filter(pc.field("k") == 3)
        .rename({"v": "value"})
        .with_columns(double=pc.field("value") * 2)
        .flat_map("tags")
        .rebatch(rows=1_000)
        .to(sink)
        .run(progress=False)
    )
    assert isinstance(result, RunResult)
    expected_values = np.repeat(np.arange(3, 1_000, 7), 2)
    table = sink.table().sort_by("value")
    assert np.array_equal(table.column("value").to_numpy(), expected_values)
    assert np.array_equal(table.column("double").to_numpy(), expected_values * 2)
    assert result.rows_written == len(expected_values)
    # Rebatch held rows back until the final checkpoint's flush: one output batch.
    assert result.stage("rebatch").batches_out == 1


class Tag(Operator):
    name = "tag"

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        return [batch.append_column("tag", pa.array(["x"] * batch.num_rows))]


def test_via_takes_any_operator_and_rejects_other_objects() -> None:
    sink = MemorySink()
    Pipeline(_source()).via(Tag()).to(sink).run(progress=False)
    assert sink.table().column("tag").to_pylist() == ["x"] * 1_000
    with pytest.raises(ConfigurationError) as info:
        Pipeline(_source()).via(lambda b: b)  # type: ignore[arg-type]
    assert info.value.option == "operator"
    with pytest.raises(ConfigurationError):
        Pipeline(_source()).to(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Pipeline([1, 2, 3])  # type: ignore[arg-type]


def test_importing_arrowflow_stays_light() -> None:
    code = (
        "import sys, arrowflow\n"
        "heavy = [m for m in ('arrowflow.pipeline', 'rich', 'prometheus_client', 'polars', 'pandas')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert arrowflow.Pipeline.__name__ == 'Pipeline' and arrowflow.RunResult.__name__ == 'RunResult'\n"
        "assert 'rich' not in sys.modules and 'prometheus_client' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
