"""Frozen, validated options of :class:`~arrowflow.connectors.kafka.KafkaSource` and
:class:`~arrowflow.connectors.kafka.KafkaSink`.

Offsets are written the way a YAML file can spell them:

* ``starting_offsets``: ``"earliest"``, ``"latest"``, ``"committed"`` (the group's committed offset,
  ``offset_reset`` where there is none), ``"timestamp"`` (the first offset whose timestamp is
  ``>= starting_timestamp_ms``), or a mapping ``{"topic:partition": offset}`` (partitions missing from
  it start at ``offset_reset``).
* ``stopping_offsets``: ``None`` (unbounded), ``"latest"`` (the high watermark when the source is
  planned: bounded), ``"timestamp"`` (``stopping_timestamp_ms``), or a mapping ``{"topic:partition":
  offset}`` (exclusive: offset ``N`` means the last message read is ``N - 1``).

``client_options`` passes any librdkafka option through (SASL, TLS, fetch sizes ...); it wins over
the defaults the connector sets, except the few the connector must control (named in the error). It
was called ``config`` in 0.1.0, a name every other connector uses for its configuration dataclass:
``config=`` still sets it, with a ``DeprecationWarning`` (on the configurations and, given a mapping,
on the connectors), and ``config.config`` still reads it.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...config import (
    caller_stacklevel,
    check_at_most,
    check_choice,
    check_non_negative,
    check_positive,
    check_type,
    hide_secrets,
    renamed_keyword,
)
from ...errors import ConfigurationError

__all__ = [
    "GUARANTEES",
    "METADATA_COLUMNS",
    "KafkaSinkConfig",
    "KafkaSourceConfig",
    "parse_partition_key",
    "split_config",
]

#: The metadata columns a source can add (in this order).
METADATA_COLUMNS: tuple[str, ...] = ("_key", "_topic", "_partition", "_offset", "_timestamp", "_headers")
GUARANTEES: tuple[str, ...] = ("none", "at-least-once", "exactly-once")
_START_MODES = ("earliest", "latest", "committed", "timestamp")
_STOP_MODES = ("latest", "timestamp")
# Options the connector sets itself: letting ``client_options`` override them breaks its contract.
_SOURCE_RESERVED = ("enable.auto.commit", "enable.auto.offset.store")


def parse_partition_key(key: Any, option: str) -> tuple[str, int]:
    """``"topic:partition"`` (or a ``(topic, partition)`` tuple) as ``(topic, partition)``."""
    if isinstance(key, tuple) and len(key) == 2:
        topic, part = key
    elif isinstance(key, str) and ":" in key:
        topic, _, text = key.rpartition(":")
        try:
            part = int(text)
        except ValueError:
            raise ConfigurationError(f"{option}: bad partition in {key!r}", option=option) from None
    else:
        raise ConfigurationError(
            f"{option}: keys must be 'topic:partition' or (topic, partition), got {key!r}", option=option
        )
    if (
        not isinstance(topic, str)
        or not topic
        or isinstance(part, bool)
        or not isinstance(part, int)
        or part < 0
    ):
        raise ConfigurationError(f"{option}: bad partition key {key!r}", option=option)
    return topic, part


def _offsets(option: str, value: Mapping[Any, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in value.items():
        topic, part = parse_partition_key(k, option)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigurationError(f"{option}[{k!r}] must be an offset >= 0, got {v!r}", option=option)
        out[f"{topic}:{part}"] = v
    return out


#: The configurations' 0.1.0 keyword ``config``, now ``client_options``.
_renamed = renamed_keyword("config", "client_options", "the librdkafka options")


def split_config(
    who: str, config: Any, config_type: type, client_options: Mapping[str, Any]
) -> tuple[Any, Any]:
    """A connector's ``(config, client_options)`` arguments with 0.1.0's ``config={...}`` (a mapping of
    librdkafka options, not a ``config_type``) moved to ``client_options``, with a
    ``DeprecationWarning``; giving both is an error naming ``config``."""
    if config is None or isinstance(config, config_type) or not isinstance(config, Mapping):
        return config, client_options  # (resolve_config reports a config of another type)
    warnings.warn(
        f"{who}(config={{...}}) with librdkafka options is deprecated; pass client_options={{...}} "
        f"(config= takes a {config_type.__name__})",
        DeprecationWarning,
        stacklevel=caller_stacklevel(),
    )
    if client_options:
        raise ConfigurationError(
            "give client_options or the deprecated config={...}, not both", option="config"
        )
    return None, config


def _check_client_options(options: Mapping[str, Any], reserved: Sequence[str]) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise ConfigurationError(
            "client_options must be a mapping of librdkafka options", option="client_options"
        )
    bad = [k for k in options if k in reserved]
    if bad:
        raise ConfigurationError(
            f"client_options: {', '.join(bad)} are set by the connector and cannot be overridden",
            option="client_options",
        )
    # Secret-named options (sasl.password, ssl.key.password, ...) are kept as Secret so they never
    # show in a repr; admin.client_config reveals them for librdkafka.
    return hide_secrets(options)


#: How the source's readers consume (see :class:`KafkaSourceConfig`'s ``fetch``).
FETCH_MODES = ("client", "columnar")
#: The environment variable that picks ``fetch`` when it is not given.
FETCH_ENV = "ARROWFLOW_KAFKA_FETCH"


@_renamed
@dataclass(frozen=True, kw_only=True)
class KafkaSourceConfig:
    """Options of :class:`~arrowflow.connectors.kafka.KafkaSource` (see the module docstring)."""

    bootstrap_servers: str
    """Brokers to bootstrap from, ``host:port[,host:port...]``."""
    topics: tuple[str, ...] = ()
    """Topic names to read (give exactly one of ``topics``, ``pattern``, ``partitions``)."""
    pattern: str | None = None
    """A regular expression matched in full against topic names; new matches are picked up by discovery."""
    partitions: tuple[str, ...] = ()
    """Explicit ``"topic:partition"`` strings to read (no discovery)."""
    group_id: str | None = None
    """Consumer group; offsets are committed there after each durable checkpoint (for monitoring and
    ``starting_offsets="committed"``). Without one a random group is used and nothing is committed."""
    format: Any = None
    """Decodes message values into columns (default: a ``Raw`` binary column ``value``)."""
    key_format: Any = None
    """Optionally decodes message keys into more columns."""
    metadata_columns: tuple[str, ...] = ()
    """Any of ``_key, _topic, _partition, _offset, _timestamp, _headers``, appended in that order."""
    starting_offsets: str | Mapping[str, int] = "earliest"
    """``"earliest"``, ``"latest"``, ``"committed"`` (``offset_reset`` where the group has none),
    ``"timestamp"`` (``starting_timestamp_ms``) or ``{"topic:partition": offset}``. A saved position always
    wins."""
    offset_reset: str = "earliest"
    """Where a partition without a committed or given offset starts: ``"earliest"`` or ``"latest"``."""
    starting_timestamp_ms: int | None = None
    """With ``starting_offsets="timestamp"``: start at the first offset whose timestamp is at least this (ms
    since the epoch)."""
    stopping_offsets: str | Mapping[str, int] | None = None
    """``None`` (unbounded), ``"latest"`` (the high watermark at planning: bounded), ``"timestamp"``
    (``stopping_timestamp_ms``) or ``{"topic:partition": offset}`` (exclusive)."""
    stopping_timestamp_ms: int | None = None
    """With ``stopping_offsets="timestamp"``: stop before the first message at or after this timestamp
    (ms)."""
    isolation_level: str = "read_committed"
    """``"read_committed"`` (skip aborted transactional records) or ``"read_uncommitted"``."""
    discovery_interval: float | None = 30.0
    """Seconds between looks for new partitions and (with ``pattern``) new topics; ``None`` disables
    discovery."""
    metadata_timeout: float = 10.0
    """Seconds each metadata or ListOffsets request may take."""
    client_options: Mapping[str, Any] = field(default_factory=dict)
    """librdkafka consumer options passed through (SASL, TLS, fetch sizes ...); secret-named ones are hidden
    from reprs. ``enable.auto.commit`` and ``enable.auto.offset.store`` are the connector's. (0.1.0:
    ``config``, still accepted with a ``DeprecationWarning``.)"""
    error_policy: Any = "fail"
    """Where payloads that fail to decode go: ``"fail"``, ``"skip"`` or a dead-letter sink (rows ``payload,
    topic, partition, offset, error``)."""
    fetch: str | None = None
    """How the readers consume: ``"client"`` (confluent-kafka's ``Consumer.consume``) or ``"columnar"``
    (the ``kafka_fetch`` kernel, no Python object per message; it runs no Python callbacks of
    ``client_options`` but ``stats_cb``). Not given: the ``ARROWFLOW_KAFKA_FETCH`` environment variable
    when the configuration is made, else ``"client"``."""
    fetch_max_bytes: int = 64 << 20
    """``fetch="columnar"``: payload bytes per batch at most (1 .. 2**31-1)."""
    max_poll_records: int = 16_384
    """Messages per batch at most, whatever the pipeline asks for (Kafka's ``max.poll.records``)."""

    def __post_init__(self) -> None:
        check_type("bootstrap_servers", self.bootstrap_servers, str)
        if not self.bootstrap_servers:
            raise ConfigurationError("bootstrap_servers must not be empty", option="bootstrap_servers")
        topics = (self.topics,) if isinstance(self.topics, str) else tuple(self.topics)
        if not all(isinstance(t, str) and t for t in topics):
            raise ConfigurationError("topics must be a list of topic names", option="topics")
        object.__setattr__(self, "topics", topics)
        parts = tuple(f"{t}:{p}" for t, p in (parse_partition_key(k, "partitions") for k in self.partitions))
        object.__setattr__(self, "partitions", parts)
        given = sum(1 for x in (topics, self.pattern, parts) if x)
        if given != 1:
            raise ConfigurationError("give exactly one of topics, pattern or partitions", option="topics")
        if self.pattern is not None:
            check_type("pattern", self.pattern, str)
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ConfigurationError(f"pattern: {exc}", option="pattern") from None
        check_type("group_id", self.group_id, str, allow_none=True)
        meta = tuple(self.metadata_columns)
        for m in meta:
            check_choice("metadata_columns", m, METADATA_COLUMNS)
        object.__setattr__(self, "metadata_columns", meta)
        check_choice("offset_reset", self.offset_reset, ("earliest", "latest"))
        if isinstance(self.starting_offsets, Mapping):
            object.__setattr__(self, "starting_offsets", _offsets("starting_offsets", self.starting_offsets))
        else:
            check_choice("starting_offsets", self.starting_offsets, _START_MODES)
        if self.starting_offsets == "timestamp":
            check_non_negative("starting_timestamp_ms", self.starting_timestamp_ms)
        if self.starting_offsets == "committed" and self.group_id is None:
            raise ConfigurationError("starting_offsets='committed' needs a group_id", option="group_id")
        if isinstance(self.stopping_offsets, Mapping):
            object.__setattr__(self, "stopping_offsets", _offsets("stopping_offsets", self.stopping_offsets))
        elif self.stopping_offsets is not None:
            check_choice("stopping_offsets", self.stopping_offsets, _STOP_MODES)
        if self.stopping_offsets == "timestamp":
            check_non_negative("stopping_timestamp_ms", self.stopping_timestamp_ms)
        check_choice("isolation_level", self.isolation_level, ("read_committed", "read_uncommitted"))
        check_positive("discovery_interval", self.discovery_interval, allow_none=True)
        check_positive("metadata_timeout", self.metadata_timeout)
        object.__setattr__(
            self, "client_options", _check_client_options(self.client_options, _SOURCE_RESERVED)
        )
        if self.fetch is None:
            object.__setattr__(self, "fetch", os.environ.get(FETCH_ENV) or "client")
            if self.fetch not in FETCH_MODES:
                raise ConfigurationError(
                    f"{FETCH_ENV}={self.fetch!r} is not allowed; choose one of {FETCH_MODES}", option="fetch"
                )
        check_choice("fetch", self.fetch, FETCH_MODES)
        check_type("fetch_max_bytes", self.fetch_max_bytes, int)
        check_positive("fetch_max_bytes", self.fetch_max_bytes)
        check_at_most("fetch_max_bytes", self.fetch_max_bytes, 0x7FFFFFFF, "the kernel's int32 limit")
        check_type("max_poll_records", self.max_poll_records, int)
        check_positive("max_poll_records", self.max_poll_records)
        if self.fetch == "columnar":
            hooks = sorted(k for k, v in self.client_options.items() if callable(v) and k != "stats_cb")
            if hooks:
                raise ConfigurationError(
                    f"fetch='columnar' runs no Python callbacks; client_options {hooks} need fetch='client'",
                    option="client_options",
                )

    @property
    def bounded(self) -> bool:
        return self.stopping_offsets is not None


#: ``fn(batch, num_partitions) -> int32 array-like`` (one partition per row) for ``partitioner=``.
PartitionFunction = Callable[[Any, int], Any]


@_renamed
@dataclass(frozen=True, kw_only=True)
class KafkaSinkConfig:
    """Options of :class:`~arrowflow.connectors.kafka.KafkaSink` (see its docstring)."""

    bootstrap_servers: str
    """Brokers to bootstrap from, ``host:port[,host:port...]``."""
    topic: str | None = None
    """The topic every row goes to (give exactly one of ``topic`` and ``topic_column``)."""
    topic_column: str | None = None
    """A string column naming each row's topic."""
    key_columns: tuple[str, ...] = ()
    """The message key: one binary/string column taken as is, or several columns encoded with ``key_format``
    (JSON by default)."""
    key_format: Any = None
    """Encodes ``key_columns`` into the key bytes."""
    format: Any = None
    """Encodes the value columns into the message value (default ``Json()``, the compiled kernel)."""
    value_columns: tuple[str, ...] | None = None
    """Columns of the value (default: every column not used as key, topic, headers, timestamp or
    partition)."""
    headers_column: str | None = None
    """A ``map<string, binary|string>`` column of message headers."""
    timestamp_column: str | None = None
    """A timestamp (or int64 milliseconds) column for the message timestamp."""
    partition_column: str | None = None
    """An integer column giving each row's partition (excludes ``partitioner``)."""
    partitioner: str | PartitionFunction = "murmur2"
    """``"murmur2"`` (the Java client's default, compiled), ``"round-robin"``, ``"librdkafka"`` or ``fn(batch,
    num_partitions)``."""
    guarantee: str = "at-least-once"
    """``"at-least-once"`` (idempotent producer, ``flush`` waits for every acknowledgement),
    ``"exactly-once"`` (a ``TransactionalKafkaSink``: one transaction per checkpoint) or ``"none"``."""
    transactional_id_prefix: str | None = None
    """Exactly-once: the transactional id is ``<prefix>-0`` (default prefix ``arrowflow-<topic>``); stable
    across restarts, different for every pipeline writing at the same time."""
    transaction_timeout_ms: int = 60_000
    """Exactly-once: ``transaction.timeout.ms``; must exceed the checkpoint interval (and stay within the
    broker's ``transaction.max.timeout.ms``)."""
    checkpoint_interval: float | None = None
    """Exactly-once: the pipeline's checkpoint interval, if known, so that a too short
    ``transaction_timeout_ms`` fails at construction."""
    flush_timeout: float = 30.0
    """Seconds ``flush`` (and a transaction's commit or abort) waits for acknowledgements before raising."""
    metadata_timeout: float = 10.0
    """Seconds a metadata request (partition counts) may take."""
    client_options: Mapping[str, Any] = field(default_factory=dict)
    """librdkafka producer options passed through; secret-named ones are hidden from reprs.
    ``transactional.id`` is the connector's under exactly-once. (0.1.0: ``config``, still accepted
    with a ``DeprecationWarning``.)"""
    error_policy: Any = "fail"
    """Where rows that cannot be encoded or delivered go: ``"fail"``, ``"skip"`` or a dead-letter sink (rows
    ``topic, partition, key, value, error``)."""

    def __post_init__(self) -> None:
        check_type("bootstrap_servers", self.bootstrap_servers, str)
        if not self.bootstrap_servers:
            raise ConfigurationError("bootstrap_servers must not be empty", option="bootstrap_servers")
        if (self.topic is None) == (self.topic_column is None):
            raise ConfigurationError("give exactly one of topic or topic_column", option="topic")
        check_type("topic", self.topic, str, allow_none=True)
        check_type("topic_column", self.topic_column, str, allow_none=True)
        keys = (self.key_columns,) if isinstance(self.key_columns, str) else tuple(self.key_columns)
        if not all(isinstance(k, str) for k in keys):
            raise ConfigurationError("key_columns must be a list of column names", option="key_columns")
        object.__setattr__(self, "key_columns", keys)
        if self.value_columns is not None:
            vals = (self.value_columns,) if isinstance(self.value_columns, str) else tuple(self.value_columns)
            object.__setattr__(self, "value_columns", vals)
        for opt in ("headers_column", "timestamp_column", "partition_column"):
            check_type(opt, getattr(self, opt), str, allow_none=True)
        if not callable(self.partitioner):
            check_choice("partitioner", self.partitioner, ("murmur2", "round-robin", "librdkafka"))
        if self.partition_column is not None and self.partitioner != "murmur2":
            raise ConfigurationError(
                "partition_column and partitioner are exclusive", option="partition_column"
            )
        check_choice("guarantee", self.guarantee, GUARANTEES)
        check_type("transactional_id_prefix", self.transactional_id_prefix, str, allow_none=True)
        check_positive("transaction_timeout_ms", self.transaction_timeout_ms)
        check_positive("checkpoint_interval", self.checkpoint_interval, allow_none=True)
        if (
            self.guarantee == "exactly-once"
            and self.checkpoint_interval is not None
            and self.transaction_timeout_ms < self.checkpoint_interval * 1000
        ):
            raise ConfigurationError(
                f"transaction.timeout.ms ({self.transaction_timeout_ms}) is smaller than the checkpoint "
                f"interval ({self.checkpoint_interval}s): the broker would abort every transaction "
                "before its checkpoint commits it; raise transaction_timeout_ms (and the broker's "
                "transaction.max.timeout.ms) or checkpoint more often",
                option="transaction_timeout_ms",
            )
        check_positive("flush_timeout", self.flush_timeout)
        check_positive("metadata_timeout", self.metadata_timeout)
        reserved = ("transactional.id",) if self.guarantee == "exactly-once" else ()
        object.__setattr__(self, "client_options", _check_client_options(self.client_options, reserved))
        if "transaction.timeout.ms" in self.client_options:
            raise ConfigurationError(
                "set transaction_timeout_ms instead of client_options['transaction.timeout.ms']",
                option="transaction_timeout_ms",
            )
