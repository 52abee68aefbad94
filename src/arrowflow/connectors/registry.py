"""The catalogue of connectors: where each lives, which extra it needs, and how it is tested.

``arrowflow connectors`` prints this table; the README's connector table mirrors it. Adding a connector
means adding one :class:`ConnectorInfo` here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["CONNECTORS", "ConnectorInfo", "available"]


@dataclass(frozen=True, kw_only=True)
class ConnectorInfo:
    """One connector: ``module`` holds its classes; ``requires`` are the client imports its extra installs.

    ``variants`` names every class of the entry after the first of its role (the one ``type: NAME``
    builds): ``(variant, class name)`` pairs, so that YAML's ``variant:`` can pick each class and
    :meth:`class_name` resolves both.
    """

    name: str
    module: str
    sources: tuple[str, ...] = ()
    sinks: tuple[str, ...] = ()
    variants: tuple[tuple[str, str], ...] = ()
    extra: str | None = None
    requires: tuple[str, ...] = ()
    status: str = "planned"
    tested_against: str = ""
    #: A function of ``module`` that YAML's ``type: <name>`` builds the sink with instead of the
    #: first sink class: it takes that class's options and returns the class they ask for (kafka:
    #: ``kafka_sink``, a ``TransactionalKafkaSink`` for ``guarantee: exactly-once``). Exported by
    #: :mod:`arrowflow.connectors` like the classes.
    sink_factory: str | None = None

    def class_name(self, role: str, variant: str | None = None) -> str | None:
        """The class ``role`` (``"source"``/``"sink"``) and ``variant`` name; ``None`` when there is
        none. Without ``variant``: the role's first class."""
        classes = self.sources if role == "source" else self.sinks
        if variant is None:
            return classes[0] if classes else None
        return next((cls for name, cls in self.variants if name == variant and cls in classes), None)

    def variant_names(self, role: str) -> list[str]:
        """The variants of ``role`` (for messages and the docs)."""
        classes = self.sources if role == "source" else self.sinks
        return [name for name, cls in self.variants if cls in classes]


CONNECTORS: tuple[ConnectorInfo, ...] = (
    ConnectorInfo(
        name="datagen",
        module="arrowflow.connectors.datagen",
        sources=("DataGenSource",),
        status="available",
        tested_against="in-process",
    ),
    ConnectorInfo(
        name="collection",
        module="arrowflow.connectors.collection",
        sources=("CollectionSource",),
        status="available",
        tested_against="in-process",
    ),
    ConnectorInfo(
        name="socket",
        module="arrowflow.connectors.socket",
        sources=("SocketSource",),
        sinks=("SocketSink",),
        status="available",
        tested_against="loopback TCP sockets",
    ),
    ConnectorInfo(
        name="print",
        module="arrowflow.connectors.print",
        sinks=("PrintSink",),
        status="available",
        tested_against="stdout/stderr",
    ),
    ConnectorInfo(
        name="null",
        module="arrowflow.connectors.null",
        sinks=("NullSink",),
        status="available",
        tested_against="in-process",
    ),
    ConnectorInfo(
        name="filesystem",
        module="arrowflow.connectors.filesystem",
        sources=("FileSource",),
        sinks=("FileSink",),
        status="available",
        tested_against="local file system (pyarrow.fs; S3/GCS/fsspec by URI, untested)",
    ),
    ConnectorInfo(
        name="hybrid",
        module="arrowflow.connectors.hybrid",
        sources=("HybridSource",),
        status="available",
        tested_against="in-process (collections, files)",
    ),
    ConnectorInfo(
        name="kafka",
        module="arrowflow.connectors.kafka",
        sources=("KafkaSource",),
        sinks=("KafkaSink", "TransactionalKafkaSink"),
        variants=(("transactional", "TransactionalKafkaSink"),),
        extra="kafka",
        requires=("confluent_kafka",),
        sink_factory="kafka_sink",
        status="available",
        tested_against="Apache Kafka 4.4.0 (one KRaft broker: PLAINTEXT, SSL, SASL/SCRAM; and a "
        "three-broker cluster, RF 3, min.insync.replicas=2); librdkafka mock cluster (conformance)",
    ),
    ConnectorInfo(
        name="memory",
        module="arrowflow.connectors.memory",
        sinks=("MemorySink",),
        status="available",
        tested_against="in-process",
    ),
    ConnectorInfo(
        name="sql",
        module="arrowflow.connectors.sql",
        sources=("SqlSource",),
        sinks=("SqlSink",),
        extra="postgres",
        requires=("adbc_driver_postgresql", "adbc_driver_manager"),
        status="available",
        tested_against=(
            "PostgreSQL 15 (adbc-driver-postgresql 1.13); DB-API: MariaDB 10.11 (pymysql 1.2), "
            "SQLite 3.40 (stdlib sqlite3)"
        ),
    ),
    ConnectorInfo(
        name="mongodb",
        module="arrowflow.connectors.mongodb",
        sources=("MongoSource", "MongoChangeStreamSource"),
        sinks=("MongoSink",),
        variants=(("change-stream", "MongoChangeStreamSource"),),
        extra="mongodb",
        requires=("pymongo",),
        status="available",
        tested_against="SecantusDB 0.7.0b3 (MongoDB wire protocol, not mongod; pymongo 4.20)",
    ),
    ConnectorInfo(
        name="cassandra",
        module="arrowflow.connectors.cassandra",
        sources=("CassandraSource",),
        sinks=("CassandraSink",),
        extra="cassandra",
        requires=("cassandra",),
        status="available",
        tested_against="Apache Cassandra 5.0.9 (one node, 16 vnodes) with cassandra-driver 3.30",
    ),
    ConnectorInfo(
        name="redis",
        module="arrowflow.connectors.redis",
        sources=("RedisStreamSource", "RedisPubSubSource"),
        sinks=("RedisSink",),
        variants=(("pubsub", "RedisPubSubSource"),),
        extra="redis",
        requires=("redis",),
        status="available",
        tested_against="Redis 7.0 (redis-py 8.1)",
    ),
    ConnectorInfo(
        name="mqtt",
        module="arrowflow.connectors.mqtt",
        sources=("MqttSource",),
        sinks=("MqttSink",),
        extra="mqtt",
        requires=("paho",),
        status="available",
        tested_against="Eclipse Mosquitto 2.0 (paho-mqtt 2.2, MQTT 5 and 3.1.1)",
    ),
    ConnectorInfo(
        name="rabbitmq",
        module="arrowflow.connectors.rabbitmq",
        sources=("RabbitMQSource",),
        sinks=("RabbitMQSink",),
        extra="rabbitmq",
        requires=("pika",),
        status="available",
        tested_against="RabbitMQ 3.10 (pika 1.4)",
    ),
    ConnectorInfo(
        name="activemq",
        module="arrowflow.connectors.activemq",
        sources=("ActiveMQSource",),
        sinks=("ActiveMQSink", "ActiveMQTransactionalSink"),
        variants=(("transactional", "ActiveMQTransactionalSink"),),
        extra="activemq",
        requires=("stomp",),
        status="available",
        tested_against="Apache ActiveMQ 5.17 over STOMP 1.2 (stomp.py 9.0)",
    ),
    ConnectorInfo(
        name="nats",
        module="arrowflow.connectors.nats",
        sources=("NatsJetStreamSource",),
        sinks=("NatsJetStreamSink",),
        extra="nats",
        requires=("nats",),
        status="available",
        tested_against="nats-server 2.9 with JetStream (nats-py 2.16)",
    ),
    ConnectorInfo(
        name="elasticsearch",
        module="arrowflow.connectors.search.elasticsearch",
        sources=("ElasticsearchSource",),
        sinks=("ElasticsearchSink",),
        extra="elasticsearch",
        requires=("elasticsearch",),
        status="available",
        tested_against="Elasticsearch 9.2.2 (one node, no x-pack) with elasticsearch-py 9.5; also "
        "OpenSearch 2.19.6 through a test-only node class (see the package's compatibility note)",
    ),
    ConnectorInfo(
        name="opensearch",
        module="arrowflow.connectors.search.opensearch",
        sources=("OpenSearchSource",),
        sinks=("OpenSearchSink",),
        extra="opensearch",
        requires=("opensearchpy",),
        status="available",
        tested_against="OpenSearch 2.19.6 (one node, no security plugin) with opensearch-py 3.2",
    ),
    ConnectorInfo(
        name="prometheus",
        module="arrowflow.connectors.prometheus",
        sinks=("PrometheusSink",),
        extra="prometheus",
        requires=("cramjam",),
        status="available",
        tested_against="Prometheus 2.42 (remote-write receiver) "
        "+ a local HTTP server for 400/429/5xx/403/404",
    ),
    ConnectorInfo(
        name="queue",
        module="arrowflow.connectors.queue",
        sources=("QueueSource",),
        status="available",
        tested_against="in-process (threads, asyncio)",
    ),
    ConnectorInfo(
        name="push",
        module="arrowflow.connectors.push",
        sources=("TcpPushSource", "HttpPushSource"),
        variants=(("http", "HttpPushSource"),),
        status="available",
        tested_against="concurrent loopback TCP / HTTP clients",
    ),
    ConnectorInfo(
        name="flume",
        module="arrowflow.connectors.flume",
        sinks=("FlumeSink",),
        extra="flume",
        requires=("fastavro",),
        status="available",
        tested_against="Apache Flume 1.11.0 agent: AvroSource and HTTPSource (JSONHandler) into file "
        "channels and file_roll sinks",
    ),
    ConnectorInfo(
        name="pulsar",
        module="arrowflow.connectors.pulsar",
        sources=("PulsarSource",),
        sinks=("PulsarSink",),
        extra="pulsar",
        requires=("pulsar",),
        status="available",
        tested_against="Apache Pulsar 4.0.7 standalone (broker + one bookie, RocksDB metadata) "
        "with pulsar-client 3.13",
    ),
    ConnectorInfo(
        name="pubsub",
        module="arrowflow.connectors.pubsub",
        sources=("PubSubSource",),
        sinks=("PubSubSink",),
        extra="pubsub",
        requires=("google.cloud.pubsub_v1",),
        status="available",
        tested_against="Cloud Pub/Sub emulator 0.8 with google-cloud-pubsub 2.44",
    ),
    ConnectorInfo(
        name="kinesis",
        module="arrowflow.connectors.kinesis",
        sources=("KinesisSource",),
        sinks=("KinesisSink",),
        extra="aws",
        requires=("boto3",),
        status="available",
        tested_against="kinesalite 3.3.3 (Node.js, in memory) with boto3 1.44 (+ fault-injecting proxy)",
    ),
    ConnectorInfo(
        name="firehose",
        module="arrowflow.connectors.firehose",
        sinks=("FirehoseSink",),
        extra="aws",
        requires=("boto3",),
        status="available",
        tested_against="moto 5.2 server (DirectPut -> S3) with boto3 1.44 (+ fault-injecting proxy)",
    ),
    ConnectorInfo(
        name="dynamodb",
        module="arrowflow.connectors.dynamodb",
        sources=("DynamoDBScanSource", "DynamoDBStreamsSource"),
        sinks=("DynamoDBSink",),
        variants=(("streams", "DynamoDBStreamsSource"),),
        extra="aws",
        requires=("boto3",),
        status="available",
        tested_against="moto 5.2 server with boto3 1.44 (+ fault-injecting proxy)",
    ),
)


def available(info: ConnectorInfo) -> bool:
    """True when every client library the connector needs can be imported (without importing it)."""
    return all(importlib.util.find_spec(mod) is not None for mod in info.requires)
