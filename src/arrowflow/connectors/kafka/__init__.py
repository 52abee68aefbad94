"""Kafka connector (confluent-kafka / librdkafka): :class:`KafkaSource`, :class:`KafkaSink`
(at-least-once) and :class:`TransactionalKafkaSink` (exactly-once); :func:`kafka_sink` picks the sink
class from a guarantee.

Importing this package does not import confluent-kafka; the clients are created when a source is
planned/opened or a sink is built. Install with ``pip install arrowflow[kafka]``.
"""

from __future__ import annotations

from .config import METADATA_COLUMNS, KafkaSinkConfig, KafkaSourceConfig
from .factory import kafka_sink
from .partitioner import murmur2_partitions, round_robin_partitions
from .sink import KafkaSink
from .source import KafkaSource
from .transactional import TransactionalKafkaSink

__all__ = [
    "METADATA_COLUMNS",
    "KafkaSink",
    "KafkaSinkConfig",
    "KafkaSource",
    "KafkaSourceConfig",
    "TransactionalKafkaSink",
    "kafka_sink",
    "murmur2_partitions",
    "round_robin_partitions",
]
