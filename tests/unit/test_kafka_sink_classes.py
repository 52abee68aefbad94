"""Each Kafka sink class is constructed explicitly: ``KafkaSink`` writes at-least-once (or ``"none"``),
``TransactionalKafkaSink`` exactly-once, each refuses the other's guarantee at construction naming
``guarantee``; ``kafka_sink(..., guarantee=...)`` picks the class (0.1.0's one entry point, once
``KafkaSink.__new__``), in Python and for YAML's ``type: kafka``."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from arrowflow.connectors import kafka_sink as exported_kafka_sink
from arrowflow.connectors.kafka import KafkaSink, KafkaSinkConfig, TransactionalKafkaSink, kafka_sink
from arrowflow.errors import ConfigurationError
from arrowflow.pipeline_spec import build_pipeline, load_yaml
from arrowflow.pipeline_spec.build import build_connector, resolve_connector

BOOTSTRAP = "127.0.0.1:1"  # never contacted: building a sink opens no connection


@pytest.fixture
def sinks(request: pytest.FixtureRequest) -> list[Any]:
    """Sinks a test made (each has a librdkafka producer): closed at the end."""
    made: list[Any] = []
    request.addfinalizer(lambda: [sink.close() for sink in made])
    return made


def _config(guarantee: str) -> KafkaSinkConfig:
    return KafkaSinkConfig(bootstrap_servers=BOOTSTRAP, topic="t", guarantee=guarantee)


@pytest.mark.parametrize(
    ("cls", "guarantee", "use"),
    [
        (KafkaSink, "exactly-once", "TransactionalKafkaSink(...)"),
        (TransactionalKafkaSink, "at-least-once", "KafkaSink(...)"),
        (TransactionalKafkaSink, "none", "KafkaSink(...)"),
    ],
)
@pytest.mark.parametrize("given", ["keyword", "config"])
def test_a_class_refuses_the_other_classes_guarantee_naming_the_option(
    cls: type[KafkaSink], guarantee: str, use: str, given: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        sink = (
            cls(config=_config(guarantee))
            if given == "config"
            else cls(BOOTSTRAP, topic="t", guarantee=guarantee)
        )
        sink.close()  # (only reached when the check is broken)
    assert info.value.option == "guarantee"
    assert use in str(info.value) and "kafka_sink(" in str(info.value)


@pytest.mark.parametrize("guarantee", ["at-least-once", "none"])
def test_kafka_sink_writes_its_guarantees(guarantee: str, sinks: list[Any]) -> None:
    sinks += [KafkaSink(BOOTSTRAP, topic="t", guarantee=guarantee), KafkaSink(config=_config(guarantee))]
    assert [(type(s), s.config.guarantee) for s in sinks] == [(KafkaSink, guarantee)] * 2


def test_the_transactional_sink_is_exactly_once_by_default(sinks: list[Any]) -> None:
    sinks += [
        TransactionalKafkaSink(BOOTSTRAP, topic="t"),
        TransactionalKafkaSink(BOOTSTRAP, topic="t", guarantee="exactly-once"),
        TransactionalKafkaSink(config=_config("exactly-once")),
    ]
    assert [(type(s), s.config.guarantee) for s in sinks] == [(TransactionalKafkaSink, "exactly-once")] * 3
    # The exactly-once checks of the configuration apply to the default too.
    with pytest.raises(ConfigurationError) as info:
        TransactionalKafkaSink(BOOTSTRAP, topic="t", checkpoint_interval=120)
    assert info.value.option == "transaction_timeout_ms"
    # Its signature is KafkaSink's with that default (what YAML and the docs read).
    params = inspect.signature(TransactionalKafkaSink).parameters
    assert list(params) == list(inspect.signature(KafkaSink).parameters)
    assert params["guarantee"].default == "exactly-once"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, (KafkaSink, "at-least-once")),
        ({"guarantee": "at-least-once"}, (KafkaSink, "at-least-once")),
        ({"guarantee": "none"}, (KafkaSink, "none")),
        ({"guarantee": "exactly-once"}, (TransactionalKafkaSink, "exactly-once")),
        ({"config": _config("exactly-once")}, (TransactionalKafkaSink, "exactly-once")),
        ({"config": _config("none")}, (KafkaSink, "none")),
    ],
)
def test_the_factory_builds_the_class_of_the_guarantee(
    options: dict[str, Any], expected: tuple[type, str], sinks: list[Any]
) -> None:
    if "config" not in options:
        options = {"bootstrap_servers": BOOTSTRAP, "topic": "t", **options}
    sink = kafka_sink(**options)
    sinks.append(sink)
    assert (type(sink), sink.config.guarantee) == expected
    assert exported_kafka_sink is kafka_sink  # arrowflow.connectors exports it too


@pytest.mark.parametrize(
    "options",
    [
        {"bootstrap_servers": BOOTSTRAP, "topic": "t", "guarantee": "exactly_once"},
        {"config": _config("exactly-once"), "guarantee": "none"},
    ],
    ids=["unknown", "against-config"],
)
def test_the_factory_refuses_a_bad_guarantee_naming_it(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        kafka_sink(**options).close()
    assert info.value.option == "guarantee"


def test_yaml_kafka_with_exactly_once_builds_the_transactional_sink(sinks: list[Any]) -> None:
    base = {"type": "kafka", "bootstrap_servers": BOOTSTRAP, "topic": "t"}
    sinks += [
        build_connector({**base, "guarantee": "exactly-once", "transactional_id_prefix": "p"}, "sink"),
        build_connector(base, "sink"),
    ]
    assert [(type(s), s.config.guarantee) for s in sinks] == [
        (TransactionalKafkaSink, "exactly-once"),
        (KafkaSink, "at-least-once"),
    ]
    assert sinks[0].transactional_id == "p-0"
    # Errors still name the option's key, and unknown keys are still refused.
    with pytest.raises(ConfigurationError, match=r"sink\.guarantee: .*not allowed"):
        build_connector({**base, "guarantee": "twice"}, "sink")
    with pytest.raises(ConfigurationError, match=r"sink\.topics: unknown option"):
        build_connector({**base, "topics": ["t"]}, "sink")


def test_yaml_names_each_class_and_gets_that_class(sinks: list[Any]) -> None:
    assert resolve_connector("kafka", "sink") is KafkaSink  # a connector's name: its first class
    base = {"bootstrap_servers": BOOTSTRAP, "topic": "t"}
    transactional = "arrowflow.connectors.kafka:TransactionalKafkaSink"
    sinks.append(build_connector({"type": transactional, **base}, "sink"))
    assert type(sinks[0]) is TransactionalKafkaSink and sinks[0].config.guarantee == "exactly-once"
    # Named, a class is that class: KafkaSink with exactly-once is refused, not swapped.
    with pytest.raises(ConfigurationError, match=r"sink\.guarantee: .*TransactionalKafkaSink"):
        build_connector(
            {"type": "arrowflow.connectors.kafka:KafkaSink", **base, "guarantee": "exactly-once"}, "sink"
        )
    # The transactional sink's options are checked like every class's (its signature is KafkaSink's).
    with pytest.raises(ConfigurationError, match=r"sink\.topics: unknown option"):
        build_connector({"type": transactional, **base, "topics": ["t"]}, "sink")


def test_a_yaml_file_with_an_exactly_once_kafka_sink_builds_the_transactional_sink(sinks: list[Any]) -> None:
    text = f"""
source: {{type: datagen, count: 10, fields: {{id: {{sequence: {{start: 0}}}}}}}}
sink:
  type: kafka
  bootstrap_servers: "{BOOTSTRAP}"
  topic: t
  guarantee: exactly-once
run: {{guarantee: exactly-once, checkpoint_dir: ckpt}}
"""
    spec = build_pipeline(load_yaml(text, "pipeline.yaml"), "pipeline.yaml")
    sinks.append(spec.sink)
    assert type(spec.sink) is TransactionalKafkaSink and spec.sink.config.guarantee == "exactly-once"
    with pytest.raises(
        ConfigurationError, match=r"pipeline\.yaml:\d+: sink\.guarantee: .*TransactionalKafkaSink"
    ):
        named = text.replace("type: kafka", "type: arrowflow.connectors.kafka:KafkaSink")
        build_pipeline(load_yaml(named, "pipeline.yaml"), "pipeline.yaml")
