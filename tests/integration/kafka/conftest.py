"""Kafka test brokers: the librdkafka mock cluster (in-process, fast) and a separate-process broker.

``broker`` is parametrized over both. The separate-process one is Tansu (``tests/services/kafka.sh``,
started by ``make test``; the fixture fails if it is not up) — or, when ``ARROWFLOW_KAFKA_BOOTSTRAP``
is set, that real Apache Kafka cluster instead, running the same tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from kafka_helpers import Broker

REAL_KAFKA = os.environ.get("ARROWFLOW_KAFKA_BOOTSTRAP")


@pytest.fixture(scope="session")
def mock_broker(kafka_mock_bootstrap: str) -> Broker:
    return Broker(
        "mock",
        kafka_mock_bootstrap,
        hides_aborted=False,
        offsets_for_times=False,
        fences=False,
        txn_offsets=False,
    )


@pytest.fixture(scope="session")
def process_broker(request: pytest.FixtureRequest) -> Broker:
    if REAL_KAFKA:
        return Broker("kafka", REAL_KAFKA, hides_aborted=True, offsets_for_times=True)
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return Broker(
        "tansu",
        bootstrap,
        hides_aborted=False,
        offsets_for_times=False,
        producer_config=(("batch.num.messages", 1),),
    )


@pytest.fixture(params=["mock", "process"])
def broker(request: pytest.FixtureRequest) -> Broker:
    return request.getfixturevalue(f"{request.param}_broker")  # type: ignore[no-any-return]


@pytest.fixture
def new_topic(broker: Broker) -> Callable[..., str]:
    """A fresh topic with 4 partitions (auto-created on the test brokers; created explicitly on Kafka)."""

    def make(prefix: str = "t", partitions: int = 4, *, name: str | None = None) -> str:
        name = name or broker.topic(prefix)
        if broker.name == "kafka":
            from confluent_kafka.admin import AdminClient, NewTopic

            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
        return name

    return make
