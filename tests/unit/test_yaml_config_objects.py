"""YAML mappings for connector options that take a configuration object (``batching=BatchingConfig``,
``retry=Retry``): the builder constructs the dataclass from the mapping, fields the mapping leaves
out keep the connector's default for the options given (MongoDB's per-mode default), and a bad key or
value is an error naming the file, the line and the key path.

The sinks are real and built without a server: MongoSink connects on its first write, SqlSink writes
to a SQLite file.
"""

from __future__ import annotations

import dataclasses
import textwrap
import warnings
from pathlib import Path

import pytest

from arrowflow.connectors.mongodb import MONGODB_BATCHING, MONGODB_KEYED_BATCHING, MongoSink
from arrowflow.connectors.sql import SqlSink
from arrowflow.connectors.sql.config import SQL_RETRY
from arrowflow.errors import ConfigurationError
from arrowflow.pipeline_spec import connector_default, load_pipeline
from arrowflow.writer import BatchingConfig

SQL = "sink:\n  type: sql\n  connect: out.db\n  table: t\n"
SOURCE = "source: {type: datagen, count: 10, fields: {id: sequence}}\n"
MONGO = "sink:\n  type: mongodb\n  uri: mongodb://127.0.0.1:1\n  database: d\n  collection: c\n"


def never_retry(exc: BaseException) -> bool:
    """A ``retry.classify`` the SqlSink test names by import path."""
    return False


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new form never takes the deprecated keywords' path
        return load_pipeline(path).sink


def test_batching_mapping_builds_the_sinks_batching_config(tmp_path: Path) -> None:
    sink = _load(tmp_path, SOURCE + MONGO + "  batching:\n    max_request_rows: 200\n    max_in_flight: 2\n")
    assert isinstance(sink, MongoSink)
    assert isinstance(sink.batching, BatchingConfig)
    assert sink.batching.max_request_rows == 200 and sink.batching.max_in_flight == 2
    # Fields not in the mapping are MongoDB's (insert mode), not BatchingConfig()'s.
    assert sink.batching == dataclasses.replace(MONGODB_BATCHING, max_request_rows=200, max_in_flight=2)
    assert sink.batching.max_request_bytes != BatchingConfig().max_request_bytes


def test_a_keyed_mode_keeps_its_default_for_fields_left_out(tmp_path: Path) -> None:
    keyed = "  mode: replace\n  keys: [id]\n  batching: {max_request_rows: 200}\n"
    sink = _load(tmp_path, SOURCE + MONGO + keyed)
    assert isinstance(sink, MongoSink)
    assert sink.batching == dataclasses.replace(MONGODB_KEYED_BATCHING, max_request_rows=200)
    assert sink.batching.max_in_flight == 1  # upserts of one key stay in write order


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, MONGODB_BATCHING),
        ({"mode": "insert"}, MONGODB_BATCHING),
        ({"mode": "update"}, MONGODB_KEYED_BATCHING),
        ({"mode": "replace"}, MONGODB_KEYED_BATCHING),
        # Options that make no valid configuration: the parameter's default (the sink reports them).
        ({"mode": "sideways"}, MONGODB_BATCHING),
    ],
)
def test_connector_default_follows_the_mode(options: dict[str, str], expected: BatchingConfig) -> None:
    given = {"uri": "mongodb://127.0.0.1:1", "database": "d", "collection": "c", **options}
    assert connector_default(MongoSink, "batching", given) == expected


def test_retry_mapping_builds_the_sql_sinks_retry(tmp_path: Path) -> None:
    sink = _load(
        tmp_path,
        SOURCE
        + f"sink:\n  type: sql\n  connect: {tmp_path / 'out.db'}\n  table: t\n  create: true\n"
        + f"  retry:\n    max_attempts: 2\n    classify: {__name__}:never_retry\n",
    )
    assert isinstance(sink, SqlSink)
    retry = sink.config.retry
    assert retry == dataclasses.replace(SQL_RETRY, max_attempts=2, classify=never_retry)
    assert retry.initial_backoff == SQL_RETRY.initial_backoff  # SqlSink's default, not Retry()'s


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            SOURCE + MONGO + "  batching:\n    max_request_rows: 200\n    max_in_fligt: 2\n",
            "pipeline.yaml:9: sink.batching.max_in_fligt: unknown option; allowed: max_request_rows,",
        ),
        (
            SOURCE + MONGO + "  batching:\n    max_in_flight: 0\n",
            "pipeline.yaml:8: sink.batching.max_in_flight: max_in_flight must be a positive number",
        ),
        (
            SOURCE + MONGO + "  batching:\n    max_request_bytes: 1024\n",
            # MongoDB's max_record_bytes (16 MiB) is kept: the pair is checked, and named
            "pipeline.yaml:8: sink.batching: max_record_bytes (16777216) must be <= max_request_bytes",
        ),
        (
            SOURCE + MONGO + "  batch_size: 10\n  batching: {max_in_flight: 2}\n",
            "pipeline.yaml:7: sink.batch_size: give batching or the deprecated batch_size, not both",
        ),
        (
            SOURCE + SQL + "  retry:\n    classify: nomodule\n",
            "pipeline.yaml:7: sink.retry.classify: classify must be an import path",
        ),
        (
            SOURCE + SQL + "  retry:\n    classify: no.such:fn\n",
            "pipeline.yaml:7: sink.retry.classify: cannot import 'no.such:fn'",
        ),
        (
            SOURCE + SQL + "  retry: {max_attempts: null}\n",
            "pipeline.yaml:6: sink.retry.max_attempts: max_attempts and max_retry_time cannot both be None",
        ),
    ],
)
def test_errors_name_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        load_pipeline(path)
    assert expected in str(info.value)


def test_annotations_resolve_one_by_one_when_one_does_not() -> None:
    # SocketSource's signature names a type imported only for type checkers, so typing.get_type_hints
    # fails on it as a whole; the builder still resolves the others (its config= dataclass here).
    from arrowflow.connectors.socket import SocketSource
    from arrowflow.connectors.socket.config import SocketSourceConfig
    from arrowflow.pipeline_spec.build import _config_type, _hints

    hints = _hints(SocketSource)
    assert hints["port"] is int
    assert _config_type(hints["config"]) is SocketSourceConfig


async def lookup(row: dict) -> int:
    """The enrich function the YAML test names by import path."""
    return 1


def test_enrich_retry_mapping_builds_a_retry_not_the_deprecated_strategy(tmp_path: Path) -> None:
    from arrowflow.ops import Enrich
    from arrowflow.retry import Retry

    text = SOURCE + (
        "operators:\n"
        "  - enrich:\n"
        f"      fn: {__name__}:lookup\n"
        "      retry: {max_attempts: 4, initial_backoff: 0.01, max_backoff: 0.1}\n"
        "sink: {type: null}\n"
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # RetryStrategy would warn
        spec = load_pipeline(path)
    (enrich,) = [op for op in spec.pipeline.operators if isinstance(op, Enrich)]
    assert enrich.retry == Retry(max_attempts=4, initial_backoff=0.01, max_backoff=0.1)
