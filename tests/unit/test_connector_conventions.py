"""The one constructor convention (issue 17) for connectors moved into it: options as keywords or as
``config=`` give the same configuration, 0.1.0's batching keywords fold into ``batching`` with a
DeprecationWarning, and the batch-write APIs' hard limits are checked where they are declared.

No server is needed: these build connectors and read their configuration; nothing is sent.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from arrowflow.connectors.cassandra import (
    CASSANDRA_BATCHING,
    CassandraSink,
    CassandraSinkConfig,
    CassandraSource,
    CassandraSourceConfig,
)
from arrowflow.connectors.dynamodb.config import DynamoDBSinkConfig
from arrowflow.connectors.filesystem import FileSink, FileSinkConfig, FileSource, RollingPolicy
from arrowflow.connectors.firehose.config import FirehoseSinkConfig
from arrowflow.connectors.flume import FLUME_BATCHING, FlumeSink, FlumeSinkConfig
from arrowflow.connectors.kinesis.config import KinesisSinkConfig
from arrowflow.connectors.prometheus import PROMETHEUS_BATCHING, PrometheusSink, PrometheusSinkConfig
from arrowflow.connectors.sql import SqlSink, SqlSource
from arrowflow.errors import ConfigurationError
from arrowflow.writer import BatchingConfig

# -- the batch-write APIs' hard limits ---------------------------------------------------------------

LIMITED: list[tuple[Any, dict[str, Any], str, int, int, int]] = [
    # (config class, its required options, API, rows, request bytes, record bytes)
    (KinesisSinkConfig, {"stream_name": "s"}, "PutRecords", 500, 5 << 20, 1 << 20),
    (FirehoseSinkConfig, {"delivery_stream_name": "d"}, "PutRecordBatch", 500, 4 << 20, 1000 << 10),
    (DynamoDBSinkConfig, {"table_name": "t"}, "BatchWriteItem", 25, 16 << 20, 400 << 10),
]


@pytest.mark.parametrize("cls, required, api, rows, request_bytes, record", LIMITED)
def test_a_batching_over_the_api_limit_is_refused_naming_the_field(
    cls: Any, required: dict[str, Any], api: str, rows: int, request_bytes: int, record: int
) -> None:
    for field, limit in (
        ("max_request_rows", rows),
        ("max_request_bytes", request_bytes),
        ("max_record_bytes", record),
    ):
        # Each limit on its own: the others at the API's (the request bytes left open: the API's).
        base: dict[str, Any] = {"max_request_rows": rows, "max_request_bytes": None}
        cls(**required, batching=BatchingConfig(**(base | {field: limit})))
        with pytest.raises(ConfigurationError, match=api) as info:
            cls(**required, batching=BatchingConfig(**(base | {field: limit + 1})))
        assert info.value.option == f"batching.{field}"


@pytest.mark.parametrize("cls, required, api, rows, request_bytes, record", LIMITED)
def test_a_byte_limit_left_open_becomes_the_apis(
    cls: Any, required: dict[str, Any], api: str, rows: int, request_bytes: int, record: int
) -> None:
    config = cls(**required, batching=BatchingConfig(max_request_rows=1, max_request_bytes=None))
    assert (config.batching.max_request_bytes, config.batching.max_record_bytes) == (request_bytes, record)
    default = cls(**required).batching
    assert (default.max_request_rows, default.max_request_bytes, default.max_record_bytes) == (
        rows,
        request_bytes,
        record,
    )


# -- keywords and config= give the same configuration ---------------------------------------------------


def test_cassandra_sink_keywords_config_and_0_1_0_forms_agree() -> None:
    by_keywords = CassandraSink(table="ks.t", concurrency=8, batch_by_partition=True)
    by_config = CassandraSink(
        config=CassandraSinkConfig(table="ks.t", concurrency=8, batch_by_partition=True)
    )
    positional = CassandraSink(CassandraSinkConfig(table="ks.t", concurrency=8, batch_by_partition=True))
    assert by_keywords.config == by_config.config == positional.config
    assert by_keywords.batching == CASSANDRA_BATCHING
    assert by_keywords.concurrency == 8 and by_keywords.sink_config is by_keywords.config
    with pytest.raises(ConfigurationError) as info:
        CassandraSink(config=CassandraSinkConfig(table="ks.t"), concurrency=8)
    assert info.value.option == "concurrency"
    assert pickle.loads(pickle.dumps(by_keywords.config)) == by_keywords.config


def test_cassandra_0_1_0_batching_keywords_fold_into_batching_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="request_rows"):
        sink = CassandraSink(table="ks.t", request_rows=10, max_retries=2, flush_interval=None)
    assert sink.batching == BatchingConfig(
        **{
            **CASSANDRA_BATCHING.__dict__,
            "max_request_rows": 10,
            "max_attempts": 3,
            "max_time_in_buffer": None,
        }
    )
    assert (sink.config.request_rows, sink.config.max_retries) == (10, 2)  # 0.1.0's reads still work
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ConfigurationError) as info:
            CassandraSink(table="ks.t", max_retries=-1)
    assert info.value.option == "max_retries"


def test_cassandra_source_keywords_and_config_agree() -> None:
    schema = pa.schema([("id", pa.int64()), ("v", pa.string())])
    by_keywords = CassandraSource("ks.t", schema=schema, partition_key="id", splits=3)
    by_config = CassandraSource(
        config=CassandraSourceConfig(table="ks.t", schema=schema, partition_key=("id",), splits=3)
    )
    assert by_keywords.config == by_config.config
    assert (by_keywords.columns, by_keywords.partition_key, by_keywords.splits) == (("id", "v"), ("id",), 3)
    with pytest.raises(ConfigurationError) as info:
        CassandraSource("ks.t", columns=("a",), schema=schema)
    assert info.value.option == "schema"
    with pytest.raises(ConfigurationError) as info:
        CassandraSource()
    assert info.value.option == "table"


def test_flume_and_prometheus_keywords_config_and_0_1_0_forms_agree() -> None:
    flume = FlumeSink(address="http://127.0.0.1:1/", static_headers={"h": "v"})
    assert (
        flume.config
        == FlumeSink(FlumeSinkConfig(address="http://127.0.0.1:1/", static_headers={"h": "v"})).config
    )
    assert (
        flume.batching == FLUME_BATCHING and flume.settings is flume.config and flume.address.endswith(":1/")
    )
    prom = PrometheusSink(url="http://127.0.0.1:1/api/v1/write", metric_name="m")
    assert prom.config == PrometheusSink(config=PrometheusSinkConfig(url=prom.url, metric_name="m")).config
    assert prom.batching == PROMETHEUS_BATCHING and prom.settings is prom.config
    for sink in (flume, prom):
        assert pickle.loads(pickle.dumps(sink.config)) == sink.config
        sink.close()
    with pytest.raises(ConfigurationError) as info:
        FlumeSink()
    assert info.value.option == "address"


def test_file_sink_and_source_take_config(tmp_path: Path) -> None:
    sink = FileSink(tmp_path, format="csv", prefix="p", rolling=RollingPolicy(max_rows=5), fsync=False)
    assert FileSink(config=FileSinkConfig(**_init_fields(sink.config))).config == sink.config
    assert FileSink(tmp_path, rolling=None, writer_options=None).config.rolling == RollingPolicy()
    source = FileSource(tmp_path, format="csv", batch_size=3)
    assert FileSource(config=source.config).config == source.config
    with pytest.raises(ConfigurationError) as info:
        FileSink(config=sink.config, prefix="q")
    assert info.value.option == "prefix"
    sink.close()


def test_a_file_sink_subtask_keeps_every_option_and_writes_its_own_files(tmp_path: Path) -> None:
    sink = FileSink(
        tmp_path,
        format="ndjson",
        compression="gzip",
        prefix="p",
        rolling=RollingPolicy(max_rows=5),
        fsync=False,
    )
    twin = sink.for_subtask(1, 2)
    assert type(twin) is FileSink and twin.config == sink.config
    assert (twin.suffix, twin.base) == (sink.suffix, sink.base) and twin.run_id != sink.run_id
    for s in (sink, twin):
        s.close()


def test_sql_sink_and_source_take_config() -> None:
    sink = SqlSink("postgresql://u:secret@h/db", "t", mode="upsert", keys="id", flush_rows=7)
    assert SqlSink(config=sink.config).config == sink.config
    assert sink.idempotent and sink.config.keys == ("id",)
    with pytest.raises(ConfigurationError) as info:
        SqlSink("postgresql://h/db")
    assert info.value.option == "table"
    source = SqlSource(connect=":memory:", table="t", batch_size=9)
    assert SqlSource(config=source.config).config == source.config


def _init_fields(config: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
