"""Metadata helpers shared by the Kafka source and sink (partition counts, topic listing, watermarks).

Every function blocks for at most its ``timeout`` and raises
:class:`~arrowflow.errors.ConnectorError` (retryable) when the cluster does not answer in time.
confluent-kafka is imported lazily: importing this module does not import it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ...config import reveal_secrets
from ...errors import ConnectorError

__all__ = ["client_config", "list_partitions", "metadata_client"]


def client_config(bootstrap_servers: str, config: Mapping[str, Any], **defaults: Any) -> dict[str, Any]:
    """librdkafka configuration: the connector's ``defaults`` overridden by the user's ``config``."""
    out: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "log_level": 3}
    out.update(defaults)
    out.update(reveal_secrets(config))
    return out


def metadata_client(bootstrap_servers: str, config: Mapping[str, Any]) -> Any:
    """An ``AdminClient`` for metadata requests (no group membership, no auto topic creation)."""
    from confluent_kafka.admin import AdminClient

    # Consumer/producer-only options in a shared ``config`` only make librdkafka log warnings: keep
    # the security and connection options, which are what metadata requests need.
    keep = {
        k: v for k, v in config.items() if k.startswith(("security.", "sasl.", "ssl.", "client.", "socket."))
    }
    return AdminClient(client_config(bootstrap_servers, keep))


def list_partitions(
    client: Any,
    *,
    topics: tuple[str, ...] = (),
    pattern: str | None = None,
    timeout: float = 10.0,
) -> dict[str, int]:
    """``{topic: partition count}`` of the named topics, or of every topic matching ``pattern``
    (``re.fullmatch``, as Java's ``subscribe(Pattern)``; internal ``__`` topics excluded).

    A named topic that does not exist raises :class:`ConnectorError`.
    """
    from confluent_kafka import KafkaException

    try:
        md = client.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ConnectorError(f"kafka: metadata request failed: {exc}", retryable=True) from exc
    out: dict[str, int] = {}
    if pattern is not None:
        rx = re.compile(pattern)
        for name, tmd in md.topics.items():
            if not name.startswith("__") and rx.fullmatch(name) and tmd.error is None and tmd.partitions:
                out[name] = len(tmd.partitions)
        return out
    for name in topics:
        tmd = md.topics.get(name)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            raise ConnectorError(
                f"kafka: topic {name!r} does not exist (or has no partitions)", retryable=True
            )
        out[name] = len(tmd.partitions)
    return out
