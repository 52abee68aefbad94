"""The Kafka the tests run against: real Apache Kafka, started by ``make test`` (tests/services).

* ``broker``: the single broker of ``tests/services/kafka.sh`` (PLAINTEXT listener); ``ssl_broker`` and
  ``sasl_broker`` are its SSL and SASL_PLAINTEXT/SCRAM listeners, ``kafka_service`` restarts it.
* ``cluster``: the three brokers of ``tests/services/kafka-cluster.sh`` (replication factor 3,
  ``min.insync.replicas=2``), whose nodes a test can SIGKILL and start again.

A server that does not answer fails the test (never a skip). librdkafka's in-process mock cluster is
not used here: it stays for ``arrowflow demo`` and the quick conformance tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka_helpers import SCRAM_PASSWORD, SCRAM_USER, Broker, Cluster, KafkaService, services_dir


@pytest.fixture(scope="session")
def broker(kafka_bootstrap: str) -> Broker:
    return Broker("kafka", kafka_bootstrap)


@pytest.fixture
def new_topic(broker: Broker) -> Callable[..., str]:
    """``new_topic(prefix="t", partitions=4, name=None)``: a fresh topic, created explicitly."""

    def make(prefix: str = "t", partitions: int = 4, *, name: str | None = None) -> str:
        return broker.create_topic(name or broker.topic(prefix), partitions)

    return make


@pytest.fixture(scope="session")
def kafka_ca() -> Path:
    """The CA certificate (PEM) the broker's SSL certificate is signed by (made by kafka.sh)."""
    path = Path(os.environ.get("KAFKA_SSL_CA", str(services_dir() / "kafka" / "certs" / "ca.pem")))
    if not path.is_file():
        pytest.fail(
            f"no CA certificate at {path}: start the broker with `sh tests/services/kafka.sh start` (it "
            "writes it there; set SERVICES_DIR as for the script, or KAFKA_SSL_CA)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def ssl_broker(service: Callable[[str], tuple[str, int]], kafka_ca: Path) -> Broker:
    host, port = service("kafka-ssl")
    return Broker(
        "kafka-ssl", f"{host}:{port}", {"security.protocol": "SSL", "ssl.ca.location": str(kafka_ca)}
    )


@pytest.fixture(scope="session")
def sasl_broker(service: Callable[[str], tuple[str, int]]) -> Broker:
    host, port = service("kafka-sasl")
    return Broker(
        "kafka-sasl",
        f"{host}:{port}",
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": SCRAM_USER,
            "sasl.password": SCRAM_PASSWORD,
        },
    )


@pytest.fixture
def kafka_service(broker: Broker) -> KafkaService:
    return KafkaService(broker)


@pytest.fixture(scope="session")
def cluster(service: Callable[[str], tuple[str, int]]) -> Cluster:
    host, port = service("kafka-cluster")
    bootstrap = ",".join(f"{host}:{port + i}" for i in range(3))
    return Cluster(Broker("kafka-cluster", bootstrap))
