"""Issue 17's one configuration convention for MongoDB, Kafka and SQL: ``MongoSink`` takes
``batching=`` (per-mode defaults, 0.1.0's ``batch_size``/``batch_interval``/``max_in_flight``
folded in with a DeprecationWarning), Kafka's librdkafka options are ``client_options=`` (0.1.0's
``config={...}`` still works, deprecated; ``config=`` takes the configuration dataclass), and
``SqlSink`` retries on a :class:`~arrowflow.retry.Retry` (0.1.0's ``max_retries``/``retry_backoff``
deprecated and mapped).

No server is needed: these build connectors and read their configuration. The SQL retry tests
write to a SQLite file through ``connect=`` (a real database) with a connection factory that fails
the first times it is called, as a server that is still starting would.
"""

from __future__ import annotations

import dataclasses
import pickle
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from arrowflow.connectors.kafka import KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig
from arrowflow.connectors.kafka.transactional import TransactionalKafkaSink
from arrowflow.connectors.mongodb import (
    MONGODB_BATCHING,
    MONGODB_KEYED_BATCHING,
    MongoChangeStreamSource,
    MongoChangeStreamSourceConfig,
    MongoSink,
    MongoSinkConfig,
    MongoSource,
    MongoSourceConfig,
)
from arrowflow.connectors.sql import SqlSink, SqlSinkConfig
from arrowflow.connectors.sql.config import SQL_RETRY
from arrowflow.errors import ConfigurationError, ConnectorError
from arrowflow.retry import Retry
from arrowflow.writer import BatchingConfig

URI = "mongodb://user:pw@127.0.0.1:1"
MIB = 1024 * 1024


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(...)`` with DeprecationWarnings silenced (for the checks of a deprecated keyword's value)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(*args, **kwargs)


# -- MongoSink: batching= ------------------------------------------------------------------------------


def _mongo_0_1_0(
    mode: str, batch_size: int, batch_interval: float | None, max_in_flight: int | None
) -> BatchingConfig:
    """The batching 0.1.0's MongoSink built from its keywords (its constructor, written out)."""
    keyed = mode != "insert"
    return BatchingConfig(
        max_request_rows=batch_size,
        max_request_bytes=48 * MIB,
        max_record_bytes=16 * MIB,
        max_in_flight=max_in_flight if max_in_flight is not None else (1 if keyed else 4),
        max_buffered_rows=max(10_000, 4 * batch_size),
        max_time_in_buffer=batch_interval,
    )


@pytest.mark.parametrize("mode", ["insert", "replace", "update"])
def test_mongo_sink_default_batching_is_0_1_0_s_for_each_mode(mode: str) -> None:
    sink = MongoSink(URI, "db", "c", mode=mode)
    expected = MONGODB_BATCHING if mode == "insert" else MONGODB_KEYED_BATCHING
    assert sink.batching is expected and sink.config.batching is expected
    assert sink.batching == _mongo_0_1_0(mode, 1000, 1.0, None)
    # 0.1.0's batching=None meant the mode's default; either constant stands for it too.
    assert MongoSink(URI, "db", "c", mode=mode, batching=None).batching is expected
    assert MongoSink(URI, "db", "c", mode=mode, batching=MONGODB_BATCHING).batching is expected
    # A copy of the configuration in another mode takes that mode's default.
    other = "update" if mode == "insert" else "insert"
    moved = dataclasses.replace(sink.config, mode=other)
    assert moved.batching is (MONGODB_BATCHING if other == "insert" else MONGODB_KEYED_BATCHING)


@pytest.mark.parametrize("mode", ["insert", "replace"])
@pytest.mark.parametrize(
    "legacy",
    [
        {"batch_size": 64},
        {"batch_size": 5000, "batch_interval": None},
        {"batch_size": 200, "batch_interval": 0.5, "max_in_flight": 3},
        {"max_in_flight": None},
        {"batch_interval": 2.0},
    ],
)
def test_mongo_0_1_0_batching_keywords_fold_into_batching_with_a_warning(
    mode: str, legacy: dict[str, Any]
) -> None:
    with pytest.warns(
        DeprecationWarning, match=r"MongoSinkConfig: .*deprecated; pass batching=BatchingConfig"
    ):
        sink = MongoSink(URI, "db", "c", mode=mode, **legacy)
    expected = _mongo_0_1_0(
        mode,
        legacy.get("batch_size", 1000),
        legacy.get("batch_interval", 1.0),
        legacy.get("max_in_flight"),
    )
    assert sink.batching == expected == sink.config.batching
    assert sink.config.batch_size == expected.max_request_rows  # 0.1.0's reads still work
    assert sink.config.batch_interval == expected.max_time_in_buffer
    assert sink.config.max_in_flight == expected.max_in_flight
    # The same through the configuration, and as batching= spelled out.
    config = _quiet(MongoSinkConfig, uri=URI, database="db", collection="c", mode=mode, **legacy)
    assert config == sink.config
    assert MongoSink(URI, "db", "c", mode=mode, batching=expected).config == sink.config


def test_mongo_sink_batching_given_is_used_as_is() -> None:
    four = dataclasses.replace(MONGODB_BATCHING, max_request_rows=10)
    sink = MongoSink(URI, "db", "c", mode="replace", batching=four)
    assert sink.batching is four and sink.batching.max_in_flight == 4


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"batch_interval": -1}, "batch_interval"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"batch_size": 10, "batching": BatchingConfig()}, "batch_size"),
        ({"batching": "fast"}, "batching"),
    ],
)
def test_mongo_sink_bad_batching_fails_at_construction_naming_the_option(
    kwargs: dict[str, Any], option: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        _quiet(lambda: MongoSink(URI, "db", "c", **kwargs))
    assert info.value.option == option


def test_mongo_connectors_take_config_alone() -> None:
    sink_config = MongoSinkConfig(uri=URI, database="db", collection="c", mode="update", keys="k")
    sink = MongoSink(config=sink_config)
    assert sink.config is sink_config and sink.batching is MONGODB_KEYED_BATCHING
    assert MongoSink(URI, "db", "c", mode="update", keys="k").config == sink_config
    with pytest.raises(ConfigurationError) as info:
        MongoSink(URI, config=sink_config)
    assert info.value.option == "uri"
    with pytest.raises(ConfigurationError) as info:
        MongoSink(URI, "db")
    assert info.value.option == "collection"
    source_config = MongoSourceConfig(uri=URI, database="db", collection="c", num_splits=2)
    assert MongoSource(config=source_config).config is source_config
    stream_config = MongoChangeStreamSourceConfig(uri=URI, database="db")
    assert MongoChangeStreamSource(config=stream_config).config is stream_config
    assert pickle.loads(pickle.dumps(sink_config)) == sink_config


# -- Kafka: client_options= ------------------------------------------------------------------------------


@pytest.fixture
def kafka_sinks() -> Iterator[list[Any]]:
    """Sinks a test made (each has a librdkafka producer): closed at the end."""
    made: list[Any] = []
    yield made
    for sink in made:
        sink.close()


def test_kafka_client_options_reach_librdkafka_and_hide_secrets(kafka_sinks: list[Any]) -> None:
    options = {"linger.ms": 7, "sasl.password": "pw-123", "client.id": "me"}
    sink = KafkaSink("127.0.0.1:1", topic="t", client_options=options)
    kafka_sinks.append(sink)
    produced = sink._producer_config()
    assert (produced["linger.ms"], produced["sasl.password"], produced["client.id"]) == (7, "pw-123", "me")
    assert "pw-123" not in repr(sink.config)
    source = KafkaSource("127.0.0.1:1", topics="t", client_options={"fetch.wait.max.ms": 5})
    assert source._consumer_config()["fetch.wait.max.ms"] == 5


def test_kafka_0_1_0_config_mapping_still_works_with_a_warning(kafka_sinks: list[Any]) -> None:
    options = {"linger.ms": 7, "sasl.password": "pw-123"}
    with pytest.warns(DeprecationWarning, match=r"KafkaSink\(config=\{\.\.\.\}\).*client_options"):
        old = KafkaSink("127.0.0.1:1", topic="t", key_columns="k", config=options)
    new = KafkaSink("127.0.0.1:1", topic="t", key_columns="k", client_options=options)
    kafka_sinks += [old, new]
    assert old.config == new.config
    assert old._producer_config().keys() == new._producer_config().keys()
    assert old.config.config == old.config.client_options  # 0.1.0's read
    with pytest.warns(DeprecationWarning, match="client_options"):
        old_source = KafkaSource("127.0.0.1:1", topics="t", config={"fetch.wait.max.ms": 5})
    assert (
        old_source.config
        == KafkaSource("127.0.0.1:1", topics="t", client_options={"fetch.wait.max.ms": 5}).config
    )
    # The configurations themselves accept 0.1.0's keyword too.
    with pytest.warns(
        DeprecationWarning, match=r"KafkaSinkConfig: config is deprecated; pass client_options="
    ):
        config = KafkaSinkConfig(bootstrap_servers="b:1", topic="t", config=options)
    assert config == KafkaSinkConfig(bootstrap_servers="b:1", topic="t", client_options=options)
    with pytest.warns(DeprecationWarning, match="client_options"):
        source_config = KafkaSourceConfig(bootstrap_servers="b:1", topics=["t"], config={"a.b": 1})
    assert source_config.client_options == {"a.b": 1}


def test_kafka_config_takes_the_configuration(kafka_sinks: list[Any]) -> None:
    config = KafkaSinkConfig(bootstrap_servers="127.0.0.1:1", topic="t", client_options={"linger.ms": 7})
    sink = KafkaSink(config=config)
    kafka_sinks.append(sink)
    assert sink.config is config and type(sink) is KafkaSink
    exactly_once = KafkaSinkConfig(bootstrap_servers="127.0.0.1:1", topic="t", guarantee="exactly-once")
    explicit = TransactionalKafkaSink(config=exactly_once)
    kafka_sinks.append(explicit)
    assert type(explicit) is TransactionalKafkaSink and explicit.config is exactly_once
    source_config = KafkaSourceConfig(bootstrap_servers="127.0.0.1:1", topics=("t",), group_id="g")
    assert KafkaSource(config=source_config).config is source_config
    with pytest.raises(ConfigurationError) as info:
        KafkaSink(config=config, flush_timeout=3)
    assert info.value.option == "flush_timeout"


def test_kafka_subtask_keeps_every_option(kafka_sinks: list[Any]) -> None:
    sink = TransactionalKafkaSink(
        "127.0.0.1:1",
        topic="t",
        key_columns=["k"],
        partitioner="round-robin",
        flush_timeout=3,
        client_options={"linger.ms": 7},
        error_policy="skip",
        transactional_id_prefix="p",
    )
    twin = sink.for_subtask(2, 3)
    kafka_sinks += [sink, twin]
    assert type(twin) is type(sink) and twin.transactional_id == "p-2"
    assert twin.error_policy is sink.error_policy
    assert dataclasses.replace(twin.config, error_policy="skip") == sink.config


@pytest.mark.parametrize(
    "make, option",
    [
        (lambda: KafkaSink("b:1", topic="t", config={"a": 1}, client_options={"b": 2}), "config"),
        (lambda: KafkaSink("b:1", topic="t", client_options=["linger.ms"]), "client_options"),
        (lambda: KafkaSink("b:1", topic="t", config=3), "config"),
        (lambda: KafkaSink(topic="t"), "bootstrap_servers"),
        (
            lambda: KafkaSource("b:1", topics=["t"], client_options={"enable.auto.commit": True}),
            "client_options",
        ),
        (
            lambda: KafkaSink("b:1", topic="t", client_options={"transaction.timeout.ms": 1}),
            "transaction_timeout_ms",
        ),
        (
            lambda: KafkaSinkConfig(
                bootstrap_servers="b", topic="t", config={"a": 1}, client_options={"b": 2}
            ),
            "config",
        ),
    ],
)
def test_kafka_bad_options_fail_at_construction_naming_the_option(make: Any, option: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        _quiet(make)
    assert info.value.option == option


# -- SqlSink: retry= ---------------------------------------------------------------------------------------


def test_sql_sink_default_retry_is_0_1_0_s() -> None:
    sink = SqlSink("postgresql://u:pw@h/db", "t")
    assert sink.config.retry is SQL_RETRY
    # 0.1.0: max_retries=5 (six attempts), ExponentialBackoff(0.2 -> 5.0, multiplier 2).
    assert (SQL_RETRY.max_attempts, SQL_RETRY.initial_backoff, SQL_RETRY.max_backoff) == (6, 0.2, 5.0)
    assert (SQL_RETRY.backoff_multiplier, SQL_RETRY.max_retry_time) == (2.0, None)
    assert sink._backoff == SQL_RETRY.backoff()


@pytest.mark.parametrize(
    "legacy, retry",
    [
        ({"max_retries": 0}, Retry(max_attempts=1, initial_backoff=0.2, max_backoff=5.0)),
        (
            {"max_retries": 10, "retry_backoff": 0.01},
            Retry(max_attempts=11, initial_backoff=0.01, max_backoff=5.0),
        ),
        ({"retry_backoff": 7.0}, Retry(max_attempts=6, initial_backoff=7.0, max_backoff=7.0)),
    ],
)
def test_sql_0_1_0_retry_keywords_map_to_retry_with_a_warning(legacy: dict[str, Any], retry: Retry) -> None:
    with pytest.warns(DeprecationWarning, match=r"SqlSinkConfig: .*deprecated; pass retry=Retry"):
        sink = SqlSink("postgresql://u:pw@h/db", "t", **legacy)
    assert sink.config.retry == retry
    assert sink.config == SqlSink("postgresql://u:pw@h/db", "t", retry=retry).config
    assert sink.config.max_retries == retry.max_attempts - 1  # 0.1.0's reads
    assert sink.config.retry_backoff == retry.initial_backoff
    assert _quiet(SqlSinkConfig, table="t", uri="postgresql://u:pw@h/db", **legacy) == sink.config


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"retry_backoff": 0}, "retry_backoff"),
        ({"max_retries": 1, "retry": Retry(max_attempts=3)}, "max_retries"),
        ({"retry": 3}, "retry"),
    ],
)
def test_sql_sink_bad_retry_fails_at_construction_naming_the_option(
    kwargs: dict[str, Any], option: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        _quiet(lambda: SqlSink("postgresql://h/db", "t", **kwargs))
    assert info.value.option == option


class _Starting:
    """A DB-API connection factory for a SQLite file whose first ``failures`` calls fail with a
    connection error (the database is not up yet)."""

    def __init__(self, path: Path, failures: int) -> None:
        self.path, self.failures, self.calls = path, failures, 0

    def __call__(self) -> sqlite3.Connection:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("not up yet")
        return sqlite3.connect(self.path, check_same_thread=False)


def _rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM t ORDER BY id")]


def test_sql_sink_retries_a_flush_as_its_retry_says(tmp_path: Path) -> None:
    batch = pa.record_batch({"id": pa.array([1, 2, 3], pa.int64())})
    quick = Retry(max_attempts=4, initial_backoff=0.001, max_backoff=0.01)
    # Three failed connects, four attempts: the flush commits on the last one.
    path = tmp_path / "ok.db"
    sink = SqlSink(table="t", connect=_Starting(path, 3), create=True, retry=quick)
    assert sink._backoff == quick.backoff()  # the waits are quick's (not timed: compared)
    sink.write(batch)
    sink.close()
    assert _rows(path) == [1, 2, 3] and sink.metrics()["retries"] == 3
    # Four failed connects: attempts exhausted, a retryable ConnectorError, nothing written.
    factory = _Starting(tmp_path / "down.db", 4)
    sink = SqlSink(table="t", connect=factory, create=True, retry=quick)
    sink.write(batch)
    with pytest.raises(ConnectorError, match="cannot connect") as info:
        sink.flush()
    assert info.value.retryable and factory.calls == 4 and sink.metrics()["retries"] == 3
    sink.close()
    # classify decides: a classify that retries nothing fails at the first connection error.
    factory = _Starting(tmp_path / "never.db", 1)
    never = dataclasses.replace(quick, classify=lambda exc: False)
    sink = SqlSink(table="t", connect=factory, create=True, retry=never)
    sink.write(batch)
    with pytest.raises(ConnectorError):
        sink.flush()
    assert factory.calls == 1 and sink.metrics()["retries"] == 0
    sink.close()
    # 0.1.0's keyword gives the same retries.
    path = tmp_path / "old.db"
    sink = _quiet(
        SqlSink, table="t", connect=_Starting(path, 2), create=True, max_retries=2, retry_backoff=0.001
    )
    sink.write(batch)
    sink.close()
    assert _rows(path) == [1, 2, 3] and sink.metrics()["retries"] == 2
