"""Metadata helpers shared by the Kafka source and sink (partition counts, topic listing, watermarks).

Every function blocks for at most its ``timeout`` and raises
:class:`~arrowflow.errors.ConnectorError` (retryable) when the cluster does not answer in time.
confluent-kafka is imported lazily: importing this module does not import it.

Authentication and TLS failures (a wrong SASL password, a broker certificate the configured CA did
not sign) reach a librdkafka client only through its ``error_cb``; the request that needed the
connection fails with a generic "broker transport failure" or a timeout. :class:`ClientErrors` is
that callback for the connector's metadata and producer clients: the error raised then names the
real cause and is not retryable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ...config import reveal_secrets
from ...errors import ConnectorError

__all__ = ["ClientErrors", "client_config", "list_partitions", "metadata_client"]

#: librdkafka error names that mean "this client cannot connect as configured" (not transient).
_REFUSED = ("_AUTHENTICATION", "_SSL")


class ClientErrors:
    """A librdkafka ``error_cb`` that keeps the client's last authentication or TLS failure.

    ``chained`` is a user's own ``error_cb`` (from ``config``), still called for every error.
    :meth:`failure` turns a failed request into the :class:`ConnectorError` to raise.
    """

    def __init__(self, chained: Callable[[Any], None] | None = None) -> None:
        self.chained = chained
        self.refused: Any = None

    def __call__(self, err: Any) -> None:
        if err.name() in _REFUSED:
            self.refused = err
        if self.chained is not None:
            self.chained(err)

    def failure(self, client: Any, what: str, exc: object) -> ConnectorError:
        """The error for request ``what`` that failed with ``exc``: not retryable, and naming the
        cause, when the client was refused (authentication, TLS); retryable otherwise."""
        try:
            client.poll(0)  # error callbacks are served by poll(): collect the pending ones
        except Exception:  # a client in a fatal state still answers the question below
            pass
        refused, self.refused = self.refused, None
        if refused is not None:
            return ConnectorError(
                f"{what}: the broker refused the connection: {refused.str()} (check the "
                "security.protocol, sasl.* and ssl.* options in config)",
                retryable=False,
            )
        return ConnectorError(f"{what}: {exc}", retryable=True)


def client_config(bootstrap_servers: str, config: Mapping[str, Any], **defaults: Any) -> dict[str, Any]:
    """librdkafka configuration: the connector's ``defaults`` overridden by the user's ``config``."""
    out: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "log_level": 3}
    out.update(defaults)
    out.update(reveal_secrets(config))
    return out


def metadata_client(bootstrap_servers: str, config: Mapping[str, Any]) -> tuple[Any, ClientErrors]:
    """An ``AdminClient`` for metadata requests (no group membership, no auto topic creation), and
    the :class:`ClientErrors` it reports to."""
    from confluent_kafka.admin import AdminClient

    # Consumer/producer-only options in a shared ``config`` only make librdkafka log warnings: keep
    # the security and connection options, which are what metadata requests need.
    keep = {
        k: v for k, v in config.items() if k.startswith(("security.", "sasl.", "ssl.", "client.", "socket."))
    }
    errors = ClientErrors(config.get("error_cb"))
    return AdminClient(client_config(bootstrap_servers, keep, error_cb=errors)), errors


def list_partitions(
    client: Any,
    *,
    topics: tuple[str, ...] = (),
    pattern: str | None = None,
    timeout: float = 10.0,
    errors: ClientErrors | None = None,
) -> dict[str, int]:
    """``{topic: partition count}`` of the named topics, or of every topic matching ``pattern``
    (``re.fullmatch``, as Java's ``subscribe(Pattern)``; internal ``__`` topics excluded).

    A named topic that does not exist raises :class:`ConnectorError`.
    """
    from confluent_kafka import KafkaException

    try:
        md = client.list_topics(timeout=timeout)
    except KafkaException as exc:
        if errors is not None:
            raise errors.failure(client, "kafka: metadata request failed", exc) from exc
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
