"""The Kafka source's columnar fetch (``KafkaSource(fetch="columnar")``): the kernel and the
librdkafka it runs. The reader is :class:`arrowflow.connectors.kafka.source.ColumnarReader`: it
keeps the client reader's contract (positions, stop offsets, commits, lag, columns, error policy)
and replaces its consumer by an ``arrowflow._ext.kafka_fetch.Fetcher``, a librdkafka consumer handle
of its own drained by ``rd_kafka_consume_batch_queue`` (GIL released) straight into Arrow buffers.

Which librdkafka: the copy confluent-kafka's wheel ships (``confluent_kafka.libs/librdkafka-*.so*``),
the library every other Kafka client of arrowflow already runs, so the columnar path behaves (and is
configured) exactly as they do; a confluent-kafka built against a system librdkafka has no such
folder, and then the system's ``librdkafka.so.1`` is opened. The kernel is built without librdkafka
headers (it declares the C ABI it calls), so ``pip install`` needs nothing more.

A starting position (``starting_offsets``, group offsets, timestamps) is resolved once, by a
short-lived confluent-kafka consumer, before the fetcher opens: those are rare, blocking requests
with the client's retry logic, not the hot path.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

from ...errors import ConnectorError

__all__ = ["FATAL_CODES", "fetcher_config", "kernel", "librdkafka_path"]

log = logging.getLogger("arrowflow.kafka")

#: librdkafka error codes (rdkafka.h) that end a read: authorization and authentication failures.
FATAL_CODES = frozenset({29, 30, -169})  # TOPIC_/GROUP_AUTHORIZATION_FAILED, _AUTHENTICATION


def librdkafka_path() -> str:
    """The librdkafka the columnar fetch opens: confluent-kafka's bundled copy, else the system's."""
    import confluent_kafka

    pkg = os.path.dirname(os.path.dirname(os.path.abspath(confluent_kafka.__file__)))
    found = sorted(glob.glob(os.path.join(pkg, "confluent_kafka.libs", "librdkafka*.so*")))
    return found[0] if found else "librdkafka.so.1"


def kernel() -> Any:
    """``arrowflow._ext.kafka_fetch`` with librdkafka loaded (``ConnectorError`` when it cannot be)."""
    from ..._ext import load

    kernel = load("kafka_fetch")
    if kernel.loaded() is None:
        path = librdkafka_path()
        try:
            version = kernel.load(path)
        except OSError as exc:
            raise ConnectorError(f"kafka source: fetch='columnar' cannot open librdkafka: {exc}") from exc
        log.debug("kafka: columnar fetch runs librdkafka %s from %s", version, path)
    return kernel


def fetcher_config(config: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, value)`` strings for ``rd_kafka_conf_set`` from a confluent-kafka configuration
    (booleans as ``true``/``false``); the callbacks are left out (:class:`KafkaSource` refuses any
    but ``stats_cb``, which the reader feeds from the fetcher's statistics)."""
    out = []
    for name, value in config.items():
        if callable(value):
            continue
        out.append((name, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    return out
