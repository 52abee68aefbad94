"""Everything that crosses a process boundary pickles (Ray ships it to workers; so does multiprocessing).

* Splits and positions: pickle and JSON round trips (property-based).
* Formats: an unpickled format encodes a batch to the same payloads as the original.
* Every connector of the registry: its sources and sinks are made from a picklable factory
  (``functools.partial(Class, **options)``), and the object built from the unpickled factory has an
  equal configuration. Configuration objects (``.config``) pickle to an equal value, secrets included.
* Sources that can be read in bounded mode (``arrowflow.ray.read`` ships the source object itself)
  pickle whole. Sources that cannot are unbounded message sources: they run through
  ``arrowflow.ray.run_partitioned``, where the pipeline factory builds them on the worker.

No server is contacted: constructors connect lazily (the one that does not, PulsarSink, is only
pickled as a factory). The coverage test fails when a registry connector has no entry here.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pickle
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow import Secret, Split
from arrowflow.connectors.collection import CollectionSource
from arrowflow.connectors.registry import CONNECTORS
from arrowflow.formats import ArrowIpc, Avro, Csv, Json, Raw
from arrowflow.pipeline_spec.build import _hints

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("x", pa.float64())])
BATCH = pa.record_batch(
    [pa.array([1, 2, 3]), pa.array(["a", None, "c"]), pa.array([0.5, 1.25, None])], schema=SCHEMA
)

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60)
@given(
    split_id=st.text(min_size=1, max_size=20),
    bounded=st.booleans(),
    params=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    position=json_values,
)
def test_splits_and_positions_round_trip(
    split_id: str, bounded: bool, params: dict[str, Any], position: Any
) -> None:
    split = Split(split_id=split_id, bounded=bounded, params=params)
    again = pickle.loads(pickle.dumps(split))
    assert again == split and hash(again) == hash(split)
    assert Split.from_json(split.to_json()) == split
    assert pickle.loads(pickle.dumps({split.split_id: position})) == {split.split_id: position}


AVRO_SCHEMA = {
    "type": "record",
    "name": "Row",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": ["null", "string"]},
        {"name": "x", "type": ["null", "double"]},
    ],
}


@pytest.mark.parametrize(
    "make",
    [
        lambda: Json(),
        lambda: Json(schema=SCHEMA),
        lambda: Csv(schema=SCHEMA),
        lambda: ArrowIpc(),
        lambda: Raw(column="name", type=pa.string()),
        lambda: Avro(AVRO_SCHEMA),
    ],
    ids=["json", "json-schema", "csv", "arrow-ipc", "raw", "avro"],
)
def test_formats_pickle_and_encode_the_same(make: Callable[[], Any]) -> None:
    fmt = make()
    again = pickle.loads(pickle.dumps(fmt))
    assert type(again) is type(fmt)
    batch = BATCH.drop_null() if isinstance(fmt, Raw) else BATCH
    assert again.encode(batch).payloads.equals(fmt.encode(batch).payloads)


def _specs(tmp: Path) -> dict[str, tuple[Callable[..., Any], dict[str, Any], bool]]:
    """class name -> (class, constructor options, construct it here?)."""
    from arrowflow.connectors import (
        collection,
        console,
        datagen,
        filesystem,
        flume,
        gcp_pubsub,
        hybrid,
        kafka,
        memory,
        mongodb,
        mqtt_broker,
        nats_jetstream,
        null,
        prometheus,
        pulsar_broker,
        push,
        queue,
        redis_,
        socket,
        sql,
    )
    from arrowflow.connectors.search import elasticsearch, opensearch

    pg = "postgresql://u:secret-pw@127.0.0.1:9/db"
    mongo = "mongodb://u:secret-pw@127.0.0.1:9"
    http = "http://127.0.0.1:9"
    return {
        "DataGenSource": (datagen.DataGenSource, {"fields": {"id": datagen.Sequence()}, "count": 10}, True),
        "CollectionSource": (collection.CollectionSource, {"data": [{"a": 1}, {"a": 2}]}, True),
        "SocketSource": (socket.SocketSource, {"host": "127.0.0.1", "port": 9}, True),
        "SocketSink": (socket.SocketSink, {"host": "127.0.0.1", "port": 9}, True),
        "PrintSink": (console.PrintSink, {}, True),
        "NullSink": (null.NullSink, {}, True),
        "FileSource": (filesystem.FileSource, {"path": str(tmp), "format": "csv", "schema": SCHEMA}, True),
        "FileSink": (filesystem.FileSink, {"path": str(tmp / "out"), "format": "parquet"}, True),
        "HybridSource": (hybrid.HybridSource, {"sources": [CollectionSource([{"a": 1}])]}, True),
        "KafkaSource": (
            kafka.KafkaSource,
            {
                "bootstrap_servers": "127.0.0.1:9",
                "topics": ["t"],
                "stopping_offsets": "latest",
                "client_options": {"sasl.password": "secret-pw"},
            },
            True,
        ),
        "KafkaSink": (
            kafka.KafkaSink,
            {"bootstrap_servers": "127.0.0.1:9", "topic": "t", "format": Json()},
            True,
        ),
        "TransactionalKafkaSink": (
            kafka.TransactionalKafkaSink,
            {"bootstrap_servers": "127.0.0.1:9", "topic": "t"},
            True,
        ),
        "MemorySink": (memory.MemorySink, {}, True),
        "SqlSource": (sql.SqlSource, {"uri": pg, "table": "t"}, True),
        "SqlSink": (sql.SqlSink, {"uri": pg, "table": "t", "mode": "upsert", "keys": ["id"]}, True),
        "MongoSource": (mongodb.MongoSource, {"uri": mongo, "database": "d", "collection": "c"}, True),
        "MongoChangeStreamSource": (mongodb.MongoChangeStreamSource, {"uri": mongo, "database": "d"}, True),
        "MongoSink": (mongodb.MongoSink, {"uri": mongo, "database": "d", "collection": "c"}, True),
        "RedisStreamSource": (redis_.RedisStreamSource, {"streams": ["s"], "group": "g"}, True),
        "RedisPubSubSource": (redis_.RedisPubSubSource, {"channels": ["c"]}, True),
        "RedisSink": (redis_.RedisSink, {"command": "XADD", "key": "k"}, True),
        "MqttSource": (mqtt_broker.MqttSource, {"topics": ["t"], "client_id": "c"}, True),
        "MqttSink": (mqtt_broker.MqttSink, {"topic": "t"}, True),
        "NatsJetStreamSource": (nats_jetstream.NatsJetStreamSource, {"stream": "s", "durable": "d"}, True),
        # Connects in the constructor (needs a server; it passed only where NATS ran on 4222).
        "NatsJetStreamSink": (nats_jetstream.NatsJetStreamSink, {"subject": "s"}, False),
        "ElasticsearchSource": (elasticsearch.ElasticsearchSource, {"index": "i", "hosts": [http]}, True),
        "ElasticsearchSink": (elasticsearch.ElasticsearchSink, {"index": "i", "hosts": [http]}, True),
        "OpenSearchSource": (opensearch.OpenSearchSource, {"index": "i", "hosts": [http]}, True),
        "OpenSearchSink": (opensearch.OpenSearchSink, {"index": "i", "hosts": [http]}, True),
        "PrometheusSink": (
            prometheus.PrometheusSink,
            {"url": f"{http}/api/v1/write", "metric_name": "m"},
            True,
        ),
        "QueueSource": (queue.QueueSource, {}, True),
        "TcpPushSource": (push.TcpPushSource, {}, True),
        "HttpPushSource": (push.HttpPushSource, {}, True),
        "FlumeSink": (flume.FlumeSink, {"address": http}, True),
        "PulsarSource": (pulsar_broker.PulsarSource, {"topics": ["t"], "subscription": "s"}, True),
        # Opens its producer in the constructor (needs a broker): only the factory is checked.
        "PulsarSink": (pulsar_broker.PulsarSink, {"topic": "t"}, False),
        "PubSubSource": (gcp_pubsub.PubSubSource, {"project": "p", "subscription": "s"}, True),
        # Builds its client in the constructor (needs credentials or an emulator): factory only.
        "PubSubSink": (gcp_pubsub.PubSubSink, {"project": "p", "topic": "t"}, False),
    }


#: Every source and sink class of the registry, as (connector, class name).
REGISTERED = [(c.name, cls) for c in CONNECTORS if c.status == "available" for cls in (*c.sources, *c.sinks)]


def _sequence() -> Any:
    from arrowflow.connectors.datagen import Sequence

    return Sequence()


def test_the_specs_name_registered_classes(tmp_path: Path) -> None:
    """No stale entries: every class with options here is still in the registry."""
    registered = {cls for _, cls in REGISTERED}
    assert set(_specs(tmp_path)) <= registered


def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            pass


@pytest.mark.parametrize(("connector", "name"), REGISTERED, ids=[f"{c}.{n}" for c, n in REGISTERED])
def test_connector_factory_and_config_pickle(connector: str, name: str, tmp_path: Path) -> None:
    module = importlib.import_module(next(c.module for c in CONNECTORS if c.name == connector))
    registered_cls = getattr(module, name)
    # Ray pickles classes by reference: the class must be importable under its qualified name.
    assert pickle.loads(pickle.dumps(registered_cls)) is registered_cls
    specs = _specs(tmp_path)
    if name not in specs:
        # A connector newer than this table: at least its factory must pickle by reference.
        assert pickle.loads(pickle.dumps(functools.partial(registered_cls))).func is registered_cls
        return
    cls, options, construct = specs[name]
    assert issubclass(registered_cls, cls)

    factory = functools.partial(cls, **options)
    again = pickle.loads(pickle.dumps(factory))
    assert again.func is cls and again.keywords.keys() == options.keys()
    if not construct:
        # The class would connect: its configuration, built from the same options, must pickle.
        hint = _hints(cls)["config"]  # annotations resolved one by one (some are TYPE_CHECKING-only)
        config_type = next(t for t in typing.get_args(hint) if dataclasses.is_dataclass(t))
        config = config_type(**options)
        assert pickle.loads(pickle.dumps(config)) == config
        return
    original, rebuilt = factory(), again()
    try:
        assert type(rebuilt) is type(original) is cls  # a class builds itself (no __new__ dispatch)
        config = getattr(original, "config", None)
        if config is not None:
            assert pickle.loads(pickle.dumps(config)) == config
            assert getattr(rebuilt, "config", None) == config
            assert "secret-pw" not in repr(config)
    finally:
        _close(original)
        _close(rebuilt)


#: Sources that ``arrowflow.ray.read`` can ship whole (bounded reads).
READ_SHIPPABLE = [
    "DataGenSource",
    "CollectionSource",
    "FileSource",
    "HybridSource",
    "KafkaSource",
    "SqlSource",
    "MongoSource",
    "ElasticsearchSource",
    "OpenSearchSource",
]


@pytest.mark.parametrize("name", READ_SHIPPABLE)
def test_bounded_capable_sources_pickle_whole(name: str, tmp_path: Path) -> None:
    cls, options, _ = _specs(tmp_path)[name]
    source = cls(**options)
    again = pickle.loads(pickle.dumps(source))
    assert type(again) is type(source)
    assert again.bounded == source.bounded
    if getattr(source, "config", None) is not None:
        assert again.config == source.config


def test_bounded_sources_read_the_same_after_pickling(tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(pa.Table.from_batches([BATCH]), tmp_path / "a.csv")
    for source in (
        _specs(tmp_path)["FileSource"][0](str(tmp_path), format="csv", schema=SCHEMA),
        CollectionSource([{"a": 1}, {"a": 2}]),
        _specs(tmp_path)["DataGenSource"][0](fields={"id": _sequence()}, count=50, num_splits=2),
    ):
        again = pickle.loads(pickle.dumps(source))
        assert again.plan() == source.plan()
        assert again.read_all().equals(source.read_all())


def test_unpicklable_sources_are_stream_only(tmp_path: Path) -> None:
    """A source that does not pickle whole must not be usable with ``arrowflow.ray.read`` anyway."""
    specs = _specs(tmp_path)
    sources = [n for c in CONNECTORS if c.status == "available" for n in c.sources if n in specs]
    for name in sources:
        cls, options, construct = specs[name]
        if name in READ_SHIPPABLE or name == "KafkaSource" or not construct:
            continue
        source = cls(**options)
        try:
            try:
                pickle.dumps(source)
            except (TypeError, pickle.PicklingError, AttributeError):
                assert not source.bounded, f"{name} is bounded but does not pickle"
        finally:
            _close(source)


def test_secrets_survive_pickling() -> None:
    s = Secret("hunter2")
    again = pickle.loads(pickle.dumps(s))
    assert again == s and again.reveal() == "hunter2" and "hunter2" not in repr(again)
