"""The exactly-once guard checks the source too: a source that cannot replay from a checkpoint is
refused with a ConfigurationError naming it, and every source in arrowflow declares which it is.

No server is needed: the guard runs before any split is opened (the sources below connect lazily).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from arrowflow_classes import subclasses_in_arrowflow

from arrowflow import ConfigurationError, Pipeline, Source
from arrowflow.connectors.null import NullSink

SCHEMA = pa.schema([("id", pa.int64())])


def _queue() -> Source:
    from arrowflow.connectors.queue import QueueSource

    return QueueSource(schema=SCHEMA)


def _iterator() -> Source:
    from arrowflow.connectors.collection import CollectionSource

    return CollectionSource(iter([{"id": 1}, {"id": 2}]), schema=SCHEMA)


def _socket() -> Source:
    from arrowflow.connectors.socket import SocketSource

    return SocketSource("127.0.0.1", 9)


def _tcp_push() -> Source:
    from arrowflow.connectors.push import TcpPushSource

    return TcpPushSource()


def _http_push() -> Source:
    from arrowflow.connectors.push import HttpPushSource

    return HttpPushSource(schema=SCHEMA)


def _mqtt() -> Source:
    from arrowflow.connectors.mqtt_broker import MqttSource

    return MqttSource("127.0.0.1", 9, topics=["t"], client_id="guard")


def _pubsub() -> Source:
    from arrowflow.connectors.gcp_pubsub import PubSubSource

    return PubSubSource("p", "s", emulator_host="127.0.0.1:9")


def _redis_pubsub() -> Source:
    from arrowflow.connectors.redis_ import RedisPubSubSource

    return RedisPubSubSource("redis://127.0.0.1:9/0", channels=["c"])


def _activemq() -> Source:
    from arrowflow.connectors.activemq import ActiveMQSource

    return ActiveMQSource("127.0.0.1", 9, destination="/queue/q")


def _rabbitmq() -> Source:
    from arrowflow.connectors.rabbitmq import RabbitMQSource

    return RabbitMQSource("amqp://guest:guest@127.0.0.1:9/", queue="q")


def _pulsar_shared() -> Source:
    from arrowflow.connectors.pulsar_broker import PulsarSource

    return PulsarSource("pulsar://127.0.0.1:9", topics="t", subscription="s", subscription_type="shared")


NOT_REPLAYABLE: dict[str, Callable[[], Source]] = {
    "QueueSource": _queue,
    "CollectionSource": _iterator,
    "SocketSource": _socket,
    "TcpPushSource": _tcp_push,
    "HttpPushSource": _http_push,
    "MqttSource": _mqtt,
    "PubSubSource": _pubsub,
    "RedisPubSubSource": _redis_pubsub,
    "ActiveMQSource": _activemq,
    "RabbitMQSource": _rabbitmq,
    "PulsarSource": _pulsar_shared,
}


@pytest.mark.parametrize("name", sorted(NOT_REPLAYABLE))
def test_exactly_once_refuses_a_source_that_cannot_replay(name: str, tmp_path: Path) -> None:
    source = NOT_REPLAYABLE[name]()
    try:
        assert source.replayable is False
        with pytest.raises(ConfigurationError) as info:
            Pipeline(source).to(NullSink()).run(
                progress=False, guarantee="exactly-once", checkpoint_dir=str(tmp_path)
            )
        assert info.value.option == "guarantee"
        assert name in str(info.value) and "replayable source" in str(info.value)
    finally:
        close = getattr(source, "close", None)
        if callable(close):
            close()


def test_exactly_once_accepts_a_replayable_source(tmp_path: Path) -> None:
    from arrowflow.connectors.datagen import DataGenSource
    from arrowflow.connectors.datagen import Sequence as Seq

    source = DataGenSource(fields={"id": Seq()}, count=500, batch_size=100)
    result = (
        Pipeline(source)
        .to(NullSink())
        .run(progress=False, guarantee="exactly-once", checkpoint_dir=str(tmp_path))
    )
    assert result.rows == 500


def test_options_decide_for_queues_that_deduplicate_and_ordered_subscriptions() -> None:
    from arrowflow.connectors.collection import CollectionSource
    from arrowflow.connectors.hybrid import HybridSource
    from arrowflow.connectors.pulsar_broker import PulsarSource
    from arrowflow.connectors.rabbitmq import RabbitMQSource

    rabbit = RabbitMQSource("amqp://guest:guest@127.0.0.1:9/", queue="q", dedup="message_id")
    assert rabbit.replayable is True
    for kind in ("exclusive", "failover"):
        pulsar = PulsarSource("pulsar://127.0.0.1:9", topics="t", subscription="s", subscription_type=kind)
        assert pulsar.replayable is True
    table = CollectionSource(pa.table({"id": [1, 2]}))
    assert table.replayable is True
    assert HybridSource([table, CollectionSource(pa.table({"id": [3]}))]).replayable is True
    assert HybridSource([table, _iterator()]).replayable is False


#: Every concrete source in arrowflow and what it declares. A new source fails this test until it is
#: classified here (``"option"``: depends on the instance's options, tested above).
DECLARED = {
    "ActiveMQSource": False,
    "CassandraSource": True,
    "CollectionSource": "option",
    "DataGenSource": True,
    "DynamoDBScanSource": True,
    "DynamoDBStreamsSource": True,
    "ElasticsearchSource": True,
    "FileSource": True,
    "HttpPushSource": False,
    "HybridSource": "option",
    "KafkaSource": True,
    "KinesisSource": True,
    "MessageSource": False,
    "MongoChangeStreamSource": True,
    "MongoSource": True,
    "MqttSource": False,
    "NatsJetStreamSource": True,
    "OpenSearchSource": True,
    "PubSubSource": False,
    "PulsarSource": "option",
    "QueueSource": False,
    "RabbitMQSource": "option",
    "RedisPubSubSource": False,
    "RedisStreamSource": True,
    "SearchSource": True,
    "ShardedSource": True,
    "SocketSource": False,
    "SplitSubset": "option",
    "SqlSource": True,
    "TcpPushSource": False,
    "PushSource": False,
}


def test_every_source_declares_replayability() -> None:
    classes = subclasses_in_arrowflow(Source)
    assert sorted(classes) == sorted(DECLARED), "classify the new source in DECLARED"
    for name, cls in classes.items():
        declared = DECLARED[name]
        attribute = cls.__dict__.get("replayable")
        if declared == "option":
            assert isinstance(attribute, property), f"{name}.replayable must be a property"
        else:
            assert cls.replayable is declared, f"{name}.replayable is {cls.replayable}, expected {declared}"
