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

import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ...config import reveal_secrets
from ...errors import ConnectorError

__all__ = ["ClientErrors", "ClientStats", "client_config", "list_partitions", "metadata_client"]

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


#: librdkafka's ``statistics.interval.ms`` unless ``config`` sets it: how often the connectors' network
#: metrics (:class:`ClientStats`) are refreshed. 0 (set in ``config``) turns them off.
STATISTICS_INTERVAL_MS = 1000

#: Per-broker librdkafka statistics :class:`ClientStats` reads (bootstrap and learned brokers); the
#: byte and request counts only tell a broker replaced by a new one (they start again from zero).
_BROKER_STATS = ("txretries", "disconnects", "req_timeouts", "connects", "tx", "rx", "txbytes", "rxbytes")
#: The metrics of :class:`ClientStats`.
_METRICS = ("retries", "disconnects", "reconnects", "timeouts")


class _Counters:
    """Cumulative counters of objects (brokers, partitions) that librdkafka may replace by new ones
    counting from zero (it decommissions a broker and bootstraps again once every broker was down):
    an object whose counters went down, or that left the report, is added to the totals."""

    def __init__(self) -> None:
        self.base: dict[str, int] = {}
        self.last: dict[str, dict[str, int]] = {}
        #: every object name seen (a broker's first connection is not a reconnect)
        self.seen: set[str] = set()

    def update(self, values: dict[str, dict[str, int]]) -> None:
        for name, old in list(self.last.items()):
            new = values.get(name)
            if new is None or any(new.get(k, 0) < v for k, v in old.items()):
                for k, v in old.items():
                    self.base[k] = self.base.get(k, 0) + v
                del self.last[name]
        self.last.update(values)
        self.seen.update(values)

    def total(self, counter: str) -> int:
        return self.base.get(counter, 0) + sum(c.get(counter, 0) for c in self.last.values())


class ClientStats:
    """A librdkafka ``stats_cb``: the network counters of one or more clients (a producer replaced
    by a new one keeps adding to them), from the statistics librdkafka emits every
    ``statistics.interval.ms`` (served by the client's ``poll``/``consume``/``flush``, so they are at
    most that old plus the time since the application last called one of those).

    Summed over the clients' brokers (bootstrap and learned; not the internal and logical ones), and
    kept when librdkafka replaces a broker by a new one (after every broker was down):

    * ``retries``: requests librdkafka sent again (``txretries``) plus, for a producer, messages
      transmitted again after their produce request timed out or lost its connection (messages
      transmitted, ``txmsgs``, beyond those produced, ``msgs``: exact once nothing is in flight);
    * ``disconnects``: connections lost (reset, closed by the broker, or dropped after a timeout);
    * ``reconnects``: connections made again to a broker already connected once (``connects``
      counts every attempt);
    * ``timeouts``: requests without an answer within ``socket.timeout.ms`` (a produce request:
      ``request.timeout.ms``): a silent broker. librdkafka then drops the connection;
    * ``statistics``: statistics reports received (a test waits for a fresh one).

    ``chained`` is a user's own ``stats_cb`` (from ``config``), still called with every report.
    """

    def __init__(self, chained: Callable[[str], None] | None = None) -> None:
        self.chained = chained
        self._lock = threading.Lock()
        self._clients: list[tuple[_Counters, _Counters]] = []  # (brokers, partitions) per client
        self._reports = 0

    def __getstate__(self) -> dict[str, Any]:
        # A pickled source or sink (shipped to a Ray worker) counts its own clients from zero.
        return {"chained": self.chained}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["chained"])  # type: ignore[misc]

    def callback(self) -> Callable[[str], None]:
        """A ``stats_cb`` for one new client."""
        brokers, partitions = _Counters(), _Counters()
        with self._lock:
            self._clients.append((brokers, partitions))

        def stats_cb(report: str) -> None:
            parsed = self._parse(report)
            with self._lock:
                self._reports += 1
                if parsed is not None:
                    brokers.update(parsed[0])
                    partitions.update(parsed[1])
            if self.chained is not None:
                self.chained(report)

        return stats_cb

    @staticmethod
    def _parse(report: str) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]] | None:
        try:
            stats = json.loads(report)
        except ValueError:
            return None
        brokers = {
            name: {k: int(b.get(k, 0)) for k in _BROKER_STATS}
            for name, b in (stats.get("brokers") or {}).items()
            if b.get("source") not in ("internal", "logical")
        }
        partitions: dict[str, dict[str, int]] = {}
        if stats.get("type") == "producer":
            for topic, t in (stats.get("topics") or {}).items():
                for part, p in (t.get("partitions") or {}).items():
                    if int(part) >= 0:  # -1: messages not yet assigned to a partition
                        partitions[f"{topic}:{part}"] = {
                            "txmsgs": int(p.get("txmsgs", 0)),
                            "msgs": int(p.get("msgs", 0)),
                        }
        return brokers, partitions

    def metrics(self) -> dict[str, int]:
        out = dict.fromkeys(_METRICS, 0)
        with self._lock:
            for brokers, partitions in self._clients:
                resent = max(0, partitions.total("txmsgs") - partitions.total("msgs"))
                out["retries"] += brokers.total("txretries") + resent
                out["disconnects"] += brokers.total("disconnects")
                out["timeouts"] += brokers.total("req_timeouts")
                out["reconnects"] += max(0, brokers.total("connects") - len(brokers.seen))
            out["statistics"] = self._reports
        return out


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
