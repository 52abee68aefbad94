"""Fixtures for tests against real servers (started by ``tests/services``; see ``make test``).

Integration tests never pass by skipping: a fixture whose server does not answer FAILS the test with
a message that says how to start it. ``make test`` starts every server listed in
``tests/services/required.txt`` before pytest runs (reusing any already listening), so a test module
that needs a new system adds its name there.

Ports come from the same environment variables the scripts read, with the same defaults, so
``KAFKA_PORT=19092 make test`` moves both the server and the tests.

Every test under ``tests/integration/`` is marked ``integration`` automatically.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


@dataclass(frozen=True)
class ServiceInfo:
    """A server a script in ``tests/services`` starts: its script name, port env var and default port."""

    script: str
    port_env: str
    default_port: int

    @property
    def port(self) -> int:
        return int(os.environ.get(self.port_env, self.default_port))


#: name -> how to reach it. Names are the scripts' names; a few aliases name a second port.
SERVICES: dict[str, ServiceInfo] = {
    "kafka": ServiceInfo("kafka", "KAFKA_PORT", 9092),
    "kafka-ssl": ServiceInfo("kafka", "KAFKA_SSL_PORT", 9093),
    "kafka-sasl": ServiceInfo("kafka", "KAFKA_SASL_PORT", 9094),
    "kafka-fault": ServiceInfo("kafka", "KAFKA_FAULT_PORT", 9096),
    "kafka-cluster": ServiceInfo("kafka-cluster", "KAFKA_CLUSTER_PORT", 9192),
    "redis": ServiceInfo("redis", "REDIS_PORT", 6379),
    "redis-sentinel": ServiceInfo("redis", "REDIS_SENTINEL_PORT", 26379),
    "postgres": ServiceInfo("postgres", "PGPORT_TEST", 5432),
    "rabbitmq": ServiceInfo("rabbitmq", "RABBITMQ_PORT", 5672),
    "rabbitmq-stream": ServiceInfo("rabbitmq", "RABBITMQ_STREAM_PORT", 5552),
    "rabbitmq-mgmt": ServiceInfo("rabbitmq", "RABBITMQ_MGMT_PORT", 15672),
    "mqtt": ServiceInfo("mqtt", "MQTT_PORT", 1883),
    "nats": ServiceInfo("nats", "NATS_PORT", 4222),
    "pulsar": ServiceInfo("pulsar", "PULSAR_PORT", 6650),
    "pulsar-admin": ServiceInfo("pulsar", "PULSAR_HTTP_PORT", 8080),
    "aws": ServiceInfo("aws", "AWS_PORT", 5000),
    "dynalite": ServiceInfo("dynalite", "DYNALITE_PORT", 4567),
    "mongodb": ServiceInfo("mongodb", "MONGO_PORT", 27017),
    "opensearch": ServiceInfo("opensearch", "OPENSEARCH_PORT", 9200),
    "elasticsearch": ServiceInfo("elasticsearch", "ELASTICSEARCH_PORT", 9201),
    "prometheus": ServiceInfo("prometheus", "PROMETHEUS_PORT", 9090),
    "activemq": ServiceInfo("activemq", "ACTIVEMQ_STOMP_PORT", 61613),
    "activemq-openwire": ServiceInfo("activemq", "ACTIVEMQ_OPENWIRE_PORT", 61616),
    "activemq-mqtt": ServiceInfo("activemq", "ACTIVEMQ_MQTT_PORT", 1884),
    "pubsub": ServiceInfo("pubsub", "PUBSUB_PORT", 8085),
    "mariadb": ServiceInfo("mariadb", "MARIADB_PORT", 3306),
    "cassandra": ServiceInfo("cassandra", "CASSANDRA_PORT", 9042),
    "flume": ServiceInfo("flume", "FLUME_AVRO_PORT", 41414),
    "flume-http": ServiceInfo("flume", "FLUME_HTTP_PORT", 41415),
    "flume-reject-avro": ServiceInfo("flume", "FLUME_REJECT_AVRO_PORT", 41416),
    "flume-reject-http": ServiceInfo("flume", "FLUME_REJECT_HTTP_PORT", 41417),
    "schema-registry": ServiceInfo("schema-registry", "SCHEMA_REGISTRY_PORT", 8081),
    "kinesalite": ServiceInfo("kinesalite", "KINESALITE_PORT", 4568),
}

HOST = "127.0.0.1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _required() -> set[str]:
    path = SERVICES_DIR / "required.txt"
    if not path.exists():
        return set()
    return {ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()} - {""}


def _answers(port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_service(name: str) -> tuple[str, int]:
    """``(host, port)`` of a running server, or ``pytest.fail`` saying how to start it (never a skip)."""
    if name not in SERVICES:
        pytest.fail(f"unknown service {name!r}; known: {', '.join(sorted(SERVICES))}")
    info = SERVICES[name]
    port = info.port
    if not _answers(port):
        hint = ""
        if info.script not in _required():
            hint = (
                f" {info.script!r} is not listed in tests/services/required.txt, so `make test` does not"
                " start it: add it there."
            )
        pytest.fail(
            f"{name} is not answering on {HOST}:{port} (env {info.port_env}). Start it with "
            f"`sh tests/services/up.sh {info.script}` or run the suite with `make test`.{hint} "
            "Integration tests fail rather than skip when their server is missing.",
            pytrace=False,
        )
    return HOST, port


@pytest.fixture(scope="session")
def service() -> Callable[[str], tuple[str, int]]:
    """``service(name) -> (host, port)``: checks the server answers, fails the test if not."""
    return check_service


@pytest.fixture(scope="session")
def services() -> dict[str, ServiceInfo]:
    """The ``SERVICES`` table: name -> script, port env var, default port."""
    return SERVICES


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``bootstrap.servers`` (PLAINTEXT listener) of the Apache Kafka broker of tests/services/kafka.sh."""
    host, port = check_service("kafka")
    return f"{host}:{port}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    host, port = check_service("redis")
    return f"redis://{host}:{port}/0"


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """Trust-auth superuser DSN (the script's private cluster, or the machine's own on 5432)."""
    host, port = check_service("postgres")
    return os.environ.get("POSTGRES_DSN", f"postgresql://postgres@{host}:{port}/postgres")


@pytest.fixture(scope="session")
def mariadb_connect() -> Callable[[], object]:
    """A zero-argument factory of pymysql connections to MariaDB (root, empty password, database test)."""
    import pymysql

    host, port = check_service("mariadb")

    def connect() -> object:
        return pymysql.connect(host=host, port=port, user="root", password="", database="test")

    return connect


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    host, port = check_service("rabbitmq")
    return f"amqp://guest:guest@{host}:{port}/%2F"


@pytest.fixture(scope="session")
def mqtt_address() -> tuple[str, int]:
    return check_service("mqtt")


@pytest.fixture(scope="session")
def nats_url() -> str:
    host, port = check_service("nats")
    return f"nats://{host}:{port}"


@pytest.fixture(scope="session")
def pulsar_url() -> str:
    host, port = check_service("pulsar")
    return f"pulsar://{host}:{port}"


@pytest.fixture(scope="session")
def pulsar_admin_url() -> str:
    """Base URL of the Pulsar broker's admin REST API (``/admin/v2/...``)."""
    host, port = check_service("pulsar-admin")
    return f"http://{host}:{port}"


@pytest.fixture(scope="session")
def aws_endpoint() -> str:
    """moto server endpoint (DynamoDB, Kinesis, Firehose, S3); any credentials, region us-east-1."""
    host, port = check_service("aws")
    return f"http://{host}:{port}"


@pytest.fixture(scope="session")
def dynalite_endpoint() -> str:
    """dynalite endpoint (DynamoDB API only, in memory); any credentials and region."""
    host, port = check_service("dynalite")
    return f"http://{host}:{port}"


@pytest.fixture(scope="session")
def kinesalite_endpoint() -> str:
    """kinesalite endpoint (Kinesis API only, in memory; see tests/services/kinesalite.sh); any
    credentials and region."""
    host, port = check_service("kinesalite")
    return f"http://{host}:{port}"


@pytest.fixture(scope="session")
def mongodb_uri() -> str:
    host, port = check_service("mongodb")
    return f"mongodb://{host}:{port}/?directConnection=true"


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    host, port = check_service("opensearch")
    return f"http://{host}:{port}"


@pytest.fixture(scope="session")
def prometheus_url() -> str:
    """Base URL; remote write at ``/api/v1/write``, queries at ``/api/v1/query``."""
    host, port = check_service("prometheus")
    return f"http://{host}:{port}"


@pytest.fixture(scope="session")
def activemq_stomp() -> tuple[str, int]:
    return check_service("activemq")


@pytest.fixture(scope="session")
def pubsub_emulator_host() -> str:
    """Value for ``PUBSUB_EMULATOR_HOST`` (google-cloud-pubsub then skips auth; any project id)."""
    host, port = check_service("pubsub")
    return f"{host}:{port}"
