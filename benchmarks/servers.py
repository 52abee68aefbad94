"""Where the benchmark servers listen: 127.0.0.1 and the port of the environment variable the
``tests/services`` scripts and the integration tests read, with the same default (so
``REDIS_PORT=36379 python -m benchmarks --only redis-sink`` uses the server
``REDIS_PORT=36379 tests/services/redis.sh start`` started)."""

from __future__ import annotations

import os

__all__ = [
    "DYNALITE_URL",
    "ELASTICSEARCH_URL",
    "KINESALITE_URL",
    "MOTO_URL",
    "MQTT",
    "NATS_URL",
    "OPENSEARCH_URL",
    "POSTGRES_DSN",
    "REDIS_URL",
    "port",
]


def port(env: str, default: int) -> int:
    """The port in ``$env``, else ``default``."""
    return int(os.environ.get(env, default))


REDIS_URL = f"redis://127.0.0.1:{port('REDIS_PORT', 6379)}/0"
NATS_URL = f"nats://127.0.0.1:{port('NATS_PORT', 4222)}"
MQTT = ("127.0.0.1", port("MQTT_PORT", 1883))
MOTO_URL = f"http://127.0.0.1:{port('AWS_PORT', 5000)}"
DYNALITE_URL = f"http://127.0.0.1:{port('DYNALITE_PORT', 4567)}"
KINESALITE_URL = f"http://127.0.0.1:{port('KINESALITE_PORT', 4568)}"
POSTGRES_DSN = os.environ.get(
    "POSTGRES_DSN", f"postgresql://postgres@127.0.0.1:{port('PGPORT_TEST', 5432)}/postgres"
)
#: The OpenSearch node of ``tests/services/opensearch.sh``; ``ARROWFLOW_BENCH_OPENSEARCH_URL`` names another.
OPENSEARCH_URL = os.environ.get(
    "ARROWFLOW_BENCH_OPENSEARCH_URL", f"http://127.0.0.1:{port('OPENSEARCH_PORT', 9200)}"
)
#: The Elasticsearch node of ``tests/services/elasticsearch.sh``; ``ARROWFLOW_BENCH_ES_URL`` names another.
ELASTICSEARCH_URL = os.environ.get(
    "ARROWFLOW_BENCH_ES_URL", f"http://127.0.0.1:{port('ELASTICSEARCH_PORT', 9201)}"
)
