"""YAML pipelines (:mod:`arrowflow.pipeline_spec`): good files run and produce the right rows; every
class of error names the file, the line and the key path; the expression language agrees with
``pyarrow.compute`` evaluated directly.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow.config import Secret
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ConfigurationError
from arrowflow.pipeline_spec import (
    BENCH_FIELDS,
    bench_fields,
    build_connector,
    load_pipeline,
    parse_expression,
    resolve_connector,
)


def double_id(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Used by map_batches through its import path."""
    return batch.append_column("double", pc.multiply(batch.column("id"), 2))


def _write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(tmp_path: Path, text: str, **kwargs: object) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        load_pipeline(path, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


# -- good files -----------------------------------------------------------------------------------------


def test_datagen_operators_memory_sink(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""\
        source: {{type: datagen, count: 10000, seed: 1, batch_size: 1000,
                  fields: {{id: {{sequence: {{start: 0}}}}, name: {{random_string: {{length: [5, 10]}}}}}}}}
        operators:
          - filter: "id % 2 == 0 and id < 5000"
          - select: [id, name]
          - rename: {{name: user}}
          - rebatch: {{rows: 700}}
          - map_batches: "{__name__}:double_id"
          - with_columns: {{big: "id >= 4000", plus: "id + 1"}}
        sink: {{type: memory}}
        """,
    )
    spec = load_pipeline(path)
    assert isinstance(spec.sink, MemorySink)
    result = spec.run(progress=False)
    assert result.rows == 10000
    table = spec.sink.table()
    assert table.column_names == ["id", "user", "double", "big", "plus"]
    ids = table.column("id").to_numpy()
    np.testing.assert_array_equal(np.sort(ids), np.arange(0, 5000, 2))
    assert table.column("double").to_pylist() == [2 * i for i in table.column("id").to_pylist()]
    assert table.column("plus").to_pylist() == [i + 1 for i in table.column("id").to_pylist()]
    assert table.column("big").to_pylist() == [i >= 4000 for i in table.column("id").to_pylist()]
    lengths = pc.utf8_length(table.column("user")).to_numpy()
    assert lengths.min() >= 5 and lengths.max() <= 10
    assert max(b.num_rows for b in spec.sink.batches) <= 700


def test_file_sink_exactly_once_with_env_and_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AF_OUT", str(tmp_path / "out"))
    path = _write(
        tmp_path,
        f"""\
        source:
          type: datagen
          count: ${{AF_COUNT:-4000}}
          seed: 3
          fields:
            id: sequence
            score: {{uniform: {{low: 0, high: 10, type: int32}}}}
        operators:
          - filter: "score >= 5"
        sink: {{type: file, path: "${{AF_OUT}}", format: parquet}}
        run: {{guarantee: exactly-once, checkpoint_dir: "{tmp_path / "ckpt"}", checkpoint_interval: 5}}
        """,
    )
    spec = load_pipeline(path, overrides=["source.count=3000"])
    assert spec.run_options["guarantee"] == "exactly-once"
    result = spec.run(progress=False)
    assert result.rows == 3000
    table = ds.dataset(str(tmp_path / "out"), format="parquet").to_table()
    expected = spec.source.read_all()
    expected = expected.filter(pc.greater_equal(expected.column("score"), 5))
    assert table.sort_by("id").equals(expected.sort_by("id"))
    assert (tmp_path / "ckpt" / "checkpoint.json").exists()


def test_env_default_and_bench_fields(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        source: {type: datagen, count: "${AF_UNSET_COUNT:-1234}", fields: bench}
        sink: {type: null}
        run: {guarantee: none}
        """,
    )
    # The default is a string in YAML quotes: the constructor rejects it at its line.
    message = _error(tmp_path, path.read_text())
    assert "pipeline.yaml:1: source.count" in message
    path = _write(tmp_path, "source: {type: datagen, count: 1234, fields: bench}\nsink: {type: null}\n")
    spec = load_pipeline(path)
    assert spec.source.schema is not None and spec.source.schema.names == list(BENCH_FIELDS)
    assert [str(t) for t in spec.source.schema.types] == [
        "int64",
        "double",
        "string",
        "bool",
        "timestamp[us]",
        "int32",
        "string",
        "double",
    ]
    assert spec.run(progress=False).rows_written == 1234
    assert len(bench_fields()) == 8


def test_cli_options_override_the_run_section(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "source: {type: datagen, count: 5000, batch_size: 100, fields: {id: sequence}}\n"
        "sink: {type: memory}\nrun: {guarantee: none}\n",
    )
    spec = load_pipeline(path)
    result = spec.run(progress=False, max_rows=1000)
    assert result.rows == 1000 and spec.sink.table().num_rows == 1000
    with pytest.raises(ConfigurationError):
        spec.options(guarantee="exactly-once")  # no checkpoint_dir


def test_connector_from_plain_mapping_and_import_path() -> None:
    sink = build_connector({"type": "arrowflow.connectors.null:NullSink"}, "sink")
    assert type(sink).__name__ == "NullSink"
    assert resolve_connector("console", "sink").__name__ == "PrintSink"
    source = build_connector(
        {"type": "datagen", "count": 5, "fields": {"x": {"choice": {"values": ["a", "b"]}}}}, "source"
    )
    assert set(source.read_all().column("x").to_pylist()) <= {"a", "b"}


def test_secret_keys_become_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from arrowflow.pipeline_spec import load_yaml

    monkeypatch.setenv("AF_PW", "hunter2")
    doc = load_yaml("sink:\n  password: ${AF_PW}\n  api_key: literal\n  key: not-secret\n")
    assert isinstance(doc["sink"]["password"], Secret) and doc["sink"]["password"].reveal() == "hunter2"
    assert isinstance(doc["sink"]["api_key"], Secret)
    assert doc["sink"]["key"] == "not-secret"


# -- errors name the line and the key --------------------------------------------------------------------


GOOD_SOURCE = "source: {type: datagen, count: 10, fields: {id: sequence}}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD_SOURCE + "sink:\n  type: memory\n  fromat: parquet\n",
            "pipeline.yaml:4: sink.fromat: unknown option",
        ),
        (
            GOOD_SOURCE + "sink: {type: file, path: out, fromat: parquet}\n",
            "pipeline.yaml:2: sink.fromat: unknown option; allowed: path, format",
        ),
        (
            GOOD_SOURCE + "sink:\n  type: nosuch\n",
            "pipeline.yaml:3: sink.type: unknown connector type 'nosuch'",
        ),
        (
            GOOD_SOURCE + "sink:\n  type: datagen\n",
            "pipeline.yaml:3: sink.type: connector 'datagen' has no sink",
        ),
        (GOOD_SOURCE + "sinks: {type: memory}\n", "pipeline.yaml:2: sinks: unknown section"),
        (GOOD_SOURCE, "sink: missing"),
        (
            "source:\n  type: datagen\n  count: many\n  fields: {id: sequence}\nsink: {type: memory}\n",
            "pipeline.yaml:3: source.count: count must be int",
        ),
        (
            "source:\n  type: datagen\n  count: 1\n  fields:\n    id: {sequense: {}}\nsink: {type: memory}\n",
            "pipeline.yaml:5: source.fields.id: unknown generator 'sequense'",
        ),
        (
            "source:\n  type: datagen\n  count: 1\n  fields:\n    id:\n      sequence:\n        begin: 1\n"
            "sink: {type: memory}\n",
            "pipeline.yaml:7: source.fields.id.sequence.begin: unknown option; allowed: null_rate, start,",
        ),
        (
            "source:\n  type: socket\n  host: 127.0.0.1\nsink: {type: memory}\n",
            "pipeline.yaml:2: source: missing required option(s): port",
        ),
        (
            GOOD_SOURCE + 'operators:\n  - filter: "id >"\nsink: {type: memory}\n',
            "pipeline.yaml:3: operators[0].filter: expression 'id >'",
        ),
        (
            GOOD_SOURCE + "operators:\n  - select: [id]\n  - explode: x\nsink: {type: memory}\n",
            "pipeline.yaml:4: operators[1].explode: unknown operator",
        ),
        (
            GOOD_SOURCE + "operators:\n  - rebatch: {rows: 10, size: 3}\nsink: {type: memory}\n",
            "pipeline.yaml:3: operators[0].rebatch.size: unknown option; allowed: rows, bytes",
        ),
        (
            GOOD_SOURCE + 'operators:\n  - map_batches: "no.such.module:fn"\nsink: {type: memory}\n',
            "pipeline.yaml:3: operators[0].map_batches.fn: cannot import 'no.such.module:fn'",
        ),
        (
            GOOD_SOURCE + "operators: {filter: x}\nsink: {type: memory}\n",
            "pipeline.yaml:2: operators: must be a list",
        ),
        (
            GOOD_SOURCE + "sink: {type: memory}\nrun:\n  checkpoint_interval: 5\n  guarantee: twice\n",
            "pipeline.yaml:5: run.guarantee: guarantee='twice' is not allowed",
        ),
        (
            GOOD_SOURCE + "sink: {type: memory}\nrun:\n  retries: 5\n",
            "pipeline.yaml:4: run.retries: unknown option",
        ),
        (
            GOOD_SOURCE
            + "sink:\n  type: socket\n  host: 127.0.0.1\n  port: 9\n  format: {type: json, nope: 1}\n",
            "pipeline.yaml:6: sink.format: format 'json'",
        ),
        (GOOD_SOURCE + "sink: {type: memory}\nsink: {type: null}\n", "pipeline.yaml:3: sink: duplicate key"),
        (GOOD_SOURCE + "sink: {type: memory\n", "pipeline.yaml:3: invalid YAML"),
        (
            "source:\n  type: datagen\n  count: ${AF_SURELY_UNSET}\n  fields: {id: sequence}\n"
            "sink: {type: memory}\n",
            "pipeline.yaml:3: source.count: environment variable ${AF_SURELY_UNSET} is not set",
        ),
    ],
)
def test_errors_name_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    message = _error(tmp_path, text)
    assert expected in message, message
    assert message.startswith(str(tmp_path / "pipeline.yaml"))


def test_override_errors(tmp_path: Path) -> None:
    text = GOOD_SOURCE + "sink: {type: memory}\n"
    assert "--set 'novalue'" in _error(tmp_path, text, overrides=["novalue"])
    message = _error(tmp_path, text, overrides=["source.count=ten"])
    assert "source.count: count must be int" in message


def test_nothing_runs_before_validation(tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = (
        "source: {type: datagen, count: 10, fields: {id: sequence}}\n"
        f"sink: {{type: file, path: '{out}'}}\n"
        "run: {guarantee: exactly-once}\n"  # no checkpoint_dir: fails before any file is written
    )
    message = _error(tmp_path, text)
    assert "pipeline.yaml:3: run" in message and "checkpoint_dir" in message
    assert not out.exists() or not any(out.iterdir())


# -- the expression language -------------------------------------------------------------------------------

BATCH = pa.record_batch(
    {
        "a": pa.array([1, 2, 3, 4, -5, None, 7, 0], pa.int64()),
        "b": pa.array([2, 2, 1, 8, 3, 1, None, 5], pa.int64()),
        "x": pa.array([0.5, 1.5, -2.0, 3.25, None, 6.0, 7.5, 0.0]),
        "s": pa.array(["apple", "Banana", "cherry", None, "date", "elder", "fig", "grape"]),
        "flag": pa.array([True, False, None, True, False, True, False, None]),
        "odd name": pa.array([1, 1, 2, 3, 5, 8, 13, 21], pa.int64()),
    }
)


def _eval(expr: pc.Expression) -> pa.Array:
    from arrowflow.ops.columns import evaluate_expressions

    return evaluate_expressions(BATCH, {"out": expr})[0]


def _col(name: str) -> pa.Array:
    return BATCH.column(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a % 2 == 0", lambda: pc.equal(pc.modulo(_col("a"), 2), 0)),
        ("a + b * 2", lambda: pc.add(_col("a"), pc.multiply(_col("b"), 2))),
        ("(a + b) * 2", lambda: pc.multiply(pc.add(_col("a"), _col("b")), 2)),
        ("a - b - 1", lambda: pc.subtract(pc.subtract(_col("a"), _col("b")), 1)),
        ("a / b", lambda: pc.divide(_col("a"), _col("b"))),
        ("-a", lambda: pc.negate(_col("a"))),
        ("x * 2.5 >= 3", lambda: pc.greater_equal(pc.multiply(_col("x"), 2.5), 3.0)),
        ("a > 1 and b < 5", lambda: pc.and_kleene(pc.greater(_col("a"), 1), pc.less(_col("b"), 5))),
        ("a > 1 or flag", lambda: pc.or_kleene(pc.greater(_col("a"), 1), _col("flag"))),
        ("not flag", lambda: pc.invert(_col("flag"))),
        (
            "not a == 1 and b != 2",
            lambda: pc.and_kleene(pc.invert(pc.equal(_col("a"), 1)), pc.not_equal(_col("b"), 2)),
        ),
        (
            "s == 'apple' or s == \"fig\"",
            lambda: pc.or_kleene(pc.equal(_col("s"), "apple"), pc.equal(_col("s"), "fig")),
        ),
        ("s != 'it\\'s'", lambda: pc.not_equal(_col("s"), "it's")),
        ("is_null(a) or is_null(s)", lambda: pc.or_kleene(pc.is_null(_col("a")), pc.is_null(_col("s")))),
        ("is_valid(x)", lambda: pc.is_valid(_col("x"))),
        ("abs(a) <= 4", lambda: pc.less_equal(pc.abs(_col("a")), 4)),
        ("lower(s) == 'banana'", lambda: pc.equal(pc.utf8_lower(_col("s")), "banana")),
        ("upper(s)", lambda: pc.utf8_upper(_col("s"))),
        ("length(s) > 4", lambda: pc.greater(pc.utf8_length(_col("s")), 4)),
        ("starts_with(s, 'ch')", lambda: pc.starts_with(_col("s"), "ch")),
        ("ends_with(s, 'e')", lambda: pc.ends_with(_col("s"), "e")),
        ("contains(s, 'an')", lambda: pc.match_substring(_col("s"), "an")),
        ("`odd name` % 3 == 1", lambda: pc.equal(pc.modulo(_col("odd name"), 3), 1)),
        ("a == null", lambda: pc.equal(_col("a"), pa.scalar(None, pa.int64()))),
        ("flag == true", lambda: pc.equal(_col("flag"), True)),
        ("1e1 > x", lambda: pc.greater(10.0, _col("x"))),
        ("x % 2", lambda: pc.modulo(_col("x"), 2.0)),
    ],
)
def test_expressions_match_pyarrow_compute(text: str, expected: object) -> None:
    got = _eval(parse_expression(text))
    want = expected()  # type: ignore[operator]
    assert got.to_pylist() == (want.to_pylist() if hasattr(want, "to_pylist") else want)


@given(
    a=st.lists(st.integers(-1000, 1000), min_size=1, max_size=30),
    k=st.integers(1, 9),
    lo=st.integers(-500, 500),
)
@settings(max_examples=40, deadline=None)
def test_filter_expression_property(a: list[int], k: int, lo: int) -> None:
    batch = pa.record_batch({"v": pa.array(a, pa.int64())})
    expr = parse_expression(f"v % {k} == 0 or not v > {lo}")
    got = batch.filter(expr).column("v").to_pylist()
    assert got == [v for v in a if v % k == 0 or not v > lo]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty expression"),
        ("a ==", "end of expression"),
        ("a == 1 == 2", "cannot be chained"),
        ("a $ 2", "unexpected character '$' at column 3"),
        ("(a + 1", "expected ')'"),
        ("eval('1')", "unknown function"),
        ("__import__('os')", "unknown function"),
        ("a.b", "unexpected character '.'"),
        ("starts_with(s, 1)", "string literal"),
        ("abs(a, b)", "exactly one argument"),
        ("a and", "end of expression"),
    ],
)
def test_expression_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_expression(text)
    assert fragment in str(info.value)


def test_checked_arithmetic_raises_on_overflow() -> None:
    batch = pa.record_batch({"v": pa.array([2**62], pa.int64())})
    with pytest.raises(pa.ArrowInvalid):
        batch.filter(parse_expression("v * 4 > 0"))


def test_every_class_of_the_registry_is_named_by_type_and_variant() -> None:
    from arrowflow.connectors.registry import CONNECTORS

    for info in CONNECTORS:
        for role, classes in (("source", info.sources), ("sink", info.sinks)):
            named = [info.class_name(role)] + [info.class_name(role, v) for v in info.variant_names(role)]
            assert sorted(c for c in named if c) == sorted(classes), f"{info.name} {role}s: {named}"


def test_a_variant_picks_the_entrys_other_class() -> None:
    assert resolve_connector("mongodb", "source", "change-stream").__name__ == "MongoChangeStreamSource"
    assert resolve_connector("push", "source", "http").__name__ == "HttpPushSource"
    assert resolve_connector("push", "source").__name__ == "TcpPushSource"
    source = build_connector({"type": "push", "variant": "http", "port": 0}, "source")
    try:
        assert type(source).__name__ == "HttpPushSource"
    finally:
        source.close()


def test_an_unknown_variant_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"variant 'changes'.*change-stream") as info:
        build_connector({"type": "mongodb", "variant": "changes"}, "source")
    assert "source.variant" in str(info.value)
    with pytest.raises(ConfigurationError, match="import path"):
        resolve_connector("arrowflow.connectors.null:NullSink", "sink", "x")


def test_the_yaml_page_lists_every_variant_of_the_registry() -> None:
    import re

    from arrowflow.connectors.registry import CONNECTORS

    page = (Path(__file__).parents[2] / "docs" / "pipelines" / "yaml.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([\w-]+)` \| `([\w-]+)` \| `(\w+)`", page, re.M))
    assert listed == {(info.name, v, cls) for info in CONNECTORS for v, cls in info.variants}
