"""YAML pipelines with event time: the ``watermarks`` section, the ``window`` operator, partition commit."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from arrowflow import WatermarkStrategy
from arrowflow.connectors.filesystem import CommittedPartition
from arrowflow.errors import ConfigurationError
from arrowflow.ops import Window
from arrowflow.pipeline_spec import load_pipeline
from arrowflow.time import MAX_WATERMARK, SessionWindows, SlidingWindows, TumblingWindows

COMMITTED: list[CommittedPartition] = []


def on_commit(partition: CommittedPartition) -> None:
    COMMITTED.append(partition)


def spread(group: pa.Table) -> float:
    v = group.column("amount").to_numpy()
    return float(v.max() - v.min())


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    return path


SOURCE = """\
source:
  type: datagen
  count: 6000
  num_splits: 2
  batch_size: 500
  fields:
    ts: {timestamps: {start: 2026-01-01T00:00:00, step: 100000, unit: us}}
    user: {uniform: {low: 0, high: 3, type: int32}}
    amount: {uniform: {low: 0, high: 100}}
"""


def test_watermarks_window_and_partition_commit(tmp_path: Path) -> None:
    COMMITTED.clear()
    path = _write(
        tmp_path,
        SOURCE
        + textwrap.dedent(f"""\
        watermarks:
          column: ts
          max_delay: 2s
          idleness: 1m
          alignment: {{group: yaml-test, max_drift: 1h}}
          late_rows: drop
        operators:
          - window:
              tumbling: 30s
              by: [user]
              aggs:
                n: count
                total: {{sum: amount}}
                users: {{approx_distinct: amount, precision: 14}}
                spread: {{apply: "{__name__}:spread", columns: [amount]}}
              allowed_lateness: 1s
        sink:
          type: file
          path: {tmp_path / "out"}
          bucket: "%Y-%m-%d--%H%M"
          bucket_column: window_start
          partition_commit: {{delay: 30s, callback: "{__name__}:on_commit"}}
        run: {{progress: false}}
        """),
    )
    spec = load_pipeline(path)
    strategy = spec.pipeline.watermarks
    assert isinstance(strategy, WatermarkStrategy)
    assert (strategy.max_delay_us, strategy.idleness_us, strategy.alignment_group) == (
        2_000_000,
        60_000_000,
        "yaml-test",
    )
    window = spec.pipeline.operators[0]
    assert isinstance(window, Window) and isinstance(window.assigner, TumblingWindows)
    assert window.assigner_ts is not None and window.assigner_ts.column == "ts"  # from the watermarks
    result = spec.run()
    assert result.watermark == MAX_WATERMARK
    got = pl.read_parquet(tmp_path / "out" / "*" / "*.parquet").sort(["window_start", "user"])
    source = pl.from_arrow(spec.source.read_all()).sort("ts", maintain_order=True)
    expect = (
        source.group_by_dynamic("ts", every="30s", group_by="user")
        .agg(pl.len().cast(pl.Int64).alias("n"), pl.col("amount").sum().alias("total"))
        .sort(["ts", "user"])
    )
    assert got["n"].to_list() == expect["n"].to_list()
    assert got["total"].to_numpy() == pytest.approx(expect["total"].to_numpy())
    assert got["user"].dtype == pl.Int32  # the generator's own type option reached DataGen
    assert (
        len(COMMITTED)
        == len({c.directory for c in COMMITTED})
        == got["window_start"].dt.truncate("1m").n_unique()
    )


@pytest.mark.parametrize(
    ("window", "kind"),
    [
        ("sliding: {size: 1m, slide: 30s}", SlidingWindows),
        ("session: 10s", SessionWindows),
        ("session: {gap: 10s}", SessionWindows),
        ("tumbling: {size: 1m, offset: 15s}", TumblingWindows),
    ],
)
def test_window_kinds_and_list_aggregates(tmp_path: Path, window: str, kind: type) -> None:
    path = _write(
        tmp_path,
        SOURCE
        + textwrap.dedent(f"""\
        operators:
          - window:
              {window}
              column: ts
              by: user
              aggs: [count, {{max: amount}}, {{first: amount}}]
        sink: {{type: memory}}
        """),
    )
    spec = load_pipeline(path)
    op = spec.pipeline.operators[0]
    assert isinstance(op.assigner, kind)
    assert [a.output_name for a in op.aggs] == ["count", "amount_max", "amount_first"]
    spec.run(progress=False)
    table = spec.sink.table()  # type: ignore[attr-defined]
    assert table.column_names == ["user", "window_start", "window_end", "count", "amount_max", "amount_first"]
    if kind is not SlidingWindows:
        assert sum(table.column("count").to_pylist()) == 6000


def test_a_dead_letter_sink_for_late_rows(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        SOURCE
        + textwrap.dedent("""\
        watermarks: {column: ts, late_rows: {type: memory}}
        sink: {type: memory}
        """),
    )
    spec = load_pipeline(path)
    policy: Any = spec.pipeline.event_time.late_rows
    assert type(policy).__name__ == "MemorySink"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("watermarks: {max_delay: 5s}", "watermarks: needs column"),
        ("watermarks: {column: ts, max_delay: soon}", "watermarks.max_delay: cannot read duration 'soon'"),
        ("watermarks: {column: ts, idleness: 0s}", "watermarks.idleness: idleness must be > 0"),
        ("watermarks: {column: ts, alignment: {group: g}}", "watermarks.alignment: must be {group"),
        ("watermarks: {column: ts, late_rows: later}", "late_rows"),
        ("watermarks: {column: ts, bogus: 1}", "watermarks.bogus: unknown option"),
        ("watermarks: 5", "watermarks: must be a mapping"),
        ("operators: [{window: {tumbling: 1m, on: ts}}]", "missing aggs"),
        (
            "operators: [{window: {aggs: [count], on: ts}}]",
            "needs exactly one of: tumbling, sliding, session",
        ),
        ("operators: [{window: {tumbling: 1m, aggs: [count]}}]", "needs on="),
        ("operators: [{window: {tumbling: 1m, aggs: [median], on: ts}}]", "unknown aggregate"),
        ("operators: [{window: {tumbling: 1m, aggs: [{sum: x, y: 1}], on: ts}}]", "unknown option"),
        ("operators: [{window: {sliding: 1m, aggs: [count], on: ts}}]", "must be a mapping {size, slide"),
        ("operators: [{window: {tumbling: 1m, aggs: [count], on: ts, lateness: 1s}}]", "unknown option"),
        ("operators: [{window: {tumbling: 1m, aggs: [count], on: ts, late_rows: keep}}]", "late_rows"),
        ("operators: [{window: {tumbling: 1mo, aggs: [count], on: ts}}]", "window.tumbling.size"),
    ],
)
def test_event_time_errors_name_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, SOURCE + text + "\nsink: {type: memory}\n")
    with pytest.raises(ConfigurationError) as info:
        load_pipeline(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_partition_commit_errors(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        SOURCE + f"sink: {{type: file, path: {tmp_path}, partition_commit: {{success_file: SUCCESS}}}}\n",
    )
    with pytest.raises(ConfigurationError, match=r"sink.partition_commit.success_file: .*starting with '_'"):
        load_pipeline(path)
