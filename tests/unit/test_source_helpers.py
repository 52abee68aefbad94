"""What the broker sources and the log sources share (issue 17: no repeated block between connectors).

* :class:`~arrowflow.connectors._messaging.MessageSource`: a source names its configuration class
  once, as the type argument; ``METADATA`` comes from it, the constructor's keywords (or
  ``config=``) resolve through it, and consumers of one subscription become numbered splits.
* :func:`arrowflow.source.check_int_position` / :func:`arrowflow.source.stop_position`: the number
  positions of Kafka, NATS JetStream and MQTT, and the ``stop`` of a bounded log split.

No server is needed: these build sources and plan them; nothing connects.
"""

from __future__ import annotations

from typing import Any

import pytest

from arrowflow.connectors._messaging import MessageSource
from arrowflow.connectors.activemq import ActiveMQSource
from arrowflow.connectors.kafka import KafkaSource
from arrowflow.connectors.mqtt import MqttSource
from arrowflow.connectors.nats import NatsJetStreamSource
from arrowflow.connectors.pubsub import PubSubSource
from arrowflow.connectors.pulsar import PulsarSource
from arrowflow.connectors.rabbitmq import RabbitMQSource
from arrowflow.connectors.redis import RedisPubSubSource, RedisStreamSource
from arrowflow.errors import ConfigurationError, ConnectorError
from arrowflow.formats import Json, Raw
from arrowflow.source import Split, check_int_position, stop_position

#: Every broker source on the messaging base, with the options it requires.
SOURCES: list[tuple[type[MessageSource[Any]], dict[str, Any], str]] = [
    (ActiveMQSource, {"destination": "/queue/q"}, "value"),
    (MqttSource, {"topics": ["t/#"], "client_id": "c"}, "value"),
    (NatsJetStreamSource, {"stream": "s", "durable": "d"}, "value"),
    (PubSubSource, {"project": "p", "subscription": "s"}, "value"),
    (PulsarSource, {"topics": "t", "subscription": "s"}, "value"),
    (RabbitMQSource, {"queue": "q"}, "value"),
    (RedisStreamSource, {"streams": ["s"], "group": "g"}, "value"),
    (RedisPubSubSource, {"channels": ["c"]}, "value"),
]


@pytest.mark.parametrize("cls,required,column", SOURCES, ids=[c.__name__ for c, _, _ in SOURCES])
def test_a_broker_source_takes_metadata_and_configuration_from_its_config_class(
    cls: type[MessageSource[Any]], required: dict[str, Any], column: str
) -> None:
    config_type = cls.CONFIG
    assert config_type.__name__ == f"{cls.__name__}Config"
    assert cls.METADATA is config_type.METADATA and cls.METADATA
    wanted = list(cls.METADATA)[:1]
    by_keywords = cls(**required, metadata_columns=wanted, error_policy="skip")
    by_config = cls(config=config_type(**required, metadata_columns=wanted))
    assert type(by_keywords.config) is config_type
    assert by_keywords.config == by_config.config
    assert by_keywords.metadata_columns == tuple(wanted)
    assert by_keywords.format == Raw(column=column)  # every broker's default payload column
    assert by_keywords.error_policy.mode == "skip" and by_config.error_policy.mode == "fail"
    assert by_keywords.schema is not None and by_keywords.schema.names == [column, *wanted]
    assert cls(**required, format=Json()).format == Json()
    with pytest.raises(ConfigurationError, match="metadata_columns") as bad:
        cls(**required, metadata_columns=["_nope"])
    assert bad.value.option == "metadata_columns"
    with pytest.raises(ConfigurationError, match="give either config or individual options") as both:
        cls(config=by_config.config, metadata_columns=wanted)
    assert both.value.option == "metadata_columns"


def test_a_missing_required_option_is_named() -> None:
    with pytest.raises(ConfigurationError, match="subscription is required") as missing:
        PubSubSource("p")
    assert missing.value.option == "subscription"


def test_consumers_of_one_subscription_are_numbered_splits() -> None:
    pubsub = PubSubSource("p", "sub", streams=3)
    assert [(s.split_id, s.bounded, dict(s.params)) for s in pubsub.plan()] == [
        (f"projects/p/subscriptions/sub/{i}", False, {"index": i}) for i in range(3)
    ]
    pulsar = PulsarSource(topics="t", subscription="sub", subscription_type="shared", consumers=2)
    assert [s.split_id for s in pulsar.plan()] == ["sub/0", "sub/1"]
    bounded = PulsarSource(topics="t", subscription="sub", stop="latest")
    assert [s.bounded for s in bounded.plan()] == [True]  # the split follows the source


SPLIT = Split(split_id="orders-3", bounded=False)


@pytest.mark.parametrize("position", [None, 0, 7, 2**40])
def test_a_number_position_at_or_above_the_minimum_is_accepted(position: Any) -> None:
    check_int_position(SPLIT, position, "an offset >= 0")


@pytest.mark.parametrize("position", [-1, True, False, 1.0, "3", [3], {"offset": 3}])
def test_anything_else_fails_naming_the_split_and_what_a_position_is(position: Any) -> None:
    with pytest.raises(ConnectorError) as bad:
        check_int_position(SPLIT, position, "an offset >= 0")
    assert str(bad.value) == f"split 'orders-3': a position is an offset >= 0, got {position!r}"


def test_without_a_minimum_a_negative_count_is_accepted_but_not_a_bool() -> None:
    check_int_position(SPLIT, -5, "a message count", minimum=None)
    with pytest.raises(ConnectorError, match="a position is a message count, got True"):
        check_int_position(SPLIT, True, "a message count", minimum=None)


@pytest.mark.parametrize(
    "source,bad,what",
    [
        (KafkaSource(topics="t", bootstrap_servers="127.0.0.1:1"), -1, "an offset >= 0"),
        (NatsJetStreamSource(stream="s", durable="d"), "5", "a stream sequence >= 0"),
        (MqttSource(topics="t", client_id="c"), 1.5, "a message count"),
    ],
    ids=["kafka", "nats", "mqtt"],
)
def test_the_log_sources_refuse_a_bad_position_before_connecting(source: Any, bad: Any, what: str) -> None:
    with pytest.raises(ConnectorError, match=f"split 'x': a position is {what}, got {bad!r}"):
        source.open(Split(split_id="x", bounded=False, params={"topic": "t", "partition": 0}), bad)


@pytest.mark.parametrize(
    "params,stop", [({}, None), ({"stop": None}, None), ({"stop": 12}, 12), ({"stop": "12"}, 12)]
)
def test_the_stop_of_a_bounded_log_split(params: dict[str, Any], stop: int | None) -> None:
    assert stop_position(Split(split_id="s", params=params)) == stop
