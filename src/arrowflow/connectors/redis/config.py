"""The options of :class:`~.sink.RedisSink`, :class:`~.source.RedisStreamSource` and
:class:`~.source.RedisPubSubSource`, checked in one place. Each configuration is also the
:class:`~._client.RedisConnection` (``url``, ``sentinels``, ``service_name``, ``client_options``,
``socket_timeout``, ``connect_timeout``) its connector connects with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa

from ...config import check_choice, check_positive, check_type
from ...errors import ConfigurationError
from ...writer import BatchingConfig
from .._messaging import PayloadOptions, SourceOptions
from ._client import RedisConnection

__all__ = [
    "COMMANDS",
    "PUBSUB_META",
    "REDIS_BATCHING",
    "STREAM_META",
    "RedisPubSubSourceConfig",
    "RedisSinkConfig",
    "RedisStreamSourceConfig",
    "parse_id",
]

#: command -> (needs field_column, needs score_column, idempotent on replay)
COMMANDS: dict[str, tuple[bool, bool, bool]] = {
    "hset": (True, False, True),
    "set": (False, False, True),
    "lpush": (False, False, False),
    "rpush": (False, False, False),
    "sadd": (False, False, True),
    "zadd": (False, True, True),
    "pfadd": (False, False, True),
    "publish": (False, False, False),
    "xadd": (False, False, False),
}


class _Connected(RedisConnection):
    """A configuration that is also its connector's :class:`~._client.RedisConnection`."""

    @property
    def connection(self) -> RedisConnection:
        """The connection options (0.1.0 kept them in this field; now the configuration itself)."""
        return self


#: The sink's batching unless configured.
REDIS_BATCHING = BatchingConfig(max_request_rows=5000, max_request_bytes=32 * 1024 * 1024, max_in_flight=2)


@dataclass(frozen=True, kw_only=True)
class RedisSinkConfig(PayloadOptions, _Connected):
    """Options of :class:`~.sink.RedisSink` (see :mod:`.sink`); validated at construction."""

    command: str
    """``hset``, ``set``, ``lpush``, ``rpush``, ``sadd``, ``zadd``, ``pfadd``, ``publish`` or ``xadd``."""
    key: str | None = None
    """One key (or channel, stream) for every row; excludes ``key_column``."""
    key_column: str | None = None
    """A column holding each row's key."""
    key_prefix: str = ""
    """Prepended to every ``key_column`` value."""
    field_column: str | None = None
    """The hash field of each row (``hset`` only, required there)."""
    score_column: str | None = None
    """A numeric column: each row's score (``zadd`` only, required there)."""
    ttl: float | None = None
    """Seconds until a key expires (``set`` only)."""
    value_field: str = "data"
    """The stream entry's field holding the value (``xadd``)."""
    stream_maxlen: int | None = None
    """Approximate stream length cap (``XADD MAXLEN ~``; ``xadd`` only)."""
    batching: BatchingConfig = REDIS_BATCHING
    """Requests, buffering and retries (:class:`~arrowflow.writer.BatchingConfig`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batching is None:  # 0.1.0's default
            object.__setattr__(self, "batching", REDIS_BATCHING)
        check_type("command", self.command, str)
        object.__setattr__(self, "command", self.command.lower())
        check_choice("command", self.command, tuple(COMMANDS))
        needs_field, needs_score, _ = COMMANDS[self.command]
        if (self.key is None) == (self.key_column is None):
            raise ConfigurationError(
                "give exactly one of key (a constant) or key_column", option="key_column"
            )
        check_type("key", self.key, str, allow_none=True)
        check_type("key_column", self.key_column, str, allow_none=True)
        check_type("key_prefix", self.key_prefix, str)
        if needs_field and self.field_column is None:
            raise ConfigurationError(f"command={self.command!r} needs field_column", option="field_column")
        if not needs_field and self.field_column is not None:
            raise ConfigurationError(f"command={self.command!r} takes no field_column", option="field_column")
        if needs_score and self.score_column is None:
            raise ConfigurationError("command='zadd' needs score_column", option="score_column")
        if not needs_score and self.score_column is not None:
            raise ConfigurationError(f"command={self.command!r} takes no score_column", option="score_column")
        if self.ttl is not None:
            check_positive("ttl", self.ttl)
            if self.command != "set":
                raise ConfigurationError("ttl applies to command='set' only", option="ttl")
        check_type("value_field", self.value_field, str)
        if self.stream_maxlen is not None:
            check_type("stream_maxlen", self.stream_maxlen, int)
            check_positive("stream_maxlen", self.stream_maxlen)
            if self.command != "xadd":
                raise ConfigurationError(
                    "stream_maxlen applies to command='xadd' only", option="stream_maxlen"
                )
        check_type("batching", self.batching, BatchingConfig)


STREAM_META = {
    "_stream": pa.string(),
    "_id": pa.string(),
    "_timestamp": pa.timestamp("ms", tz="UTC"),
}


def parse_id(entry_id: str | bytes) -> tuple[int, int]:
    """A stream id ``"<ms>-<seq>"`` as a comparable tuple."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, kw_only=True)
class RedisStreamSourceConfig(SourceOptions, _Connected):
    """Options of :class:`~.source.RedisStreamSource` (see :mod:`.source`)."""

    METADATA: ClassVar[dict[str, pa.DataType]] = STREAM_META

    streams: Sequence[str] | str
    """The streams to read (one split each)."""
    group: str
    """The consumer group (created at ``start_id`` when missing)."""
    consumer: str = "arrowflow"
    """This reader's consumer name in the group."""
    start_id: str = "0"
    """Where a new group starts: ``"0"`` (the whole stream), ``"$"`` (new entries) or an id."""
    value_field: str = "data"
    """The entry field holding the payload."""

    def __post_init__(self) -> None:
        super().__post_init__()
        streams = (self.streams,) if isinstance(self.streams, str) else tuple(self.streams)
        object.__setattr__(self, "streams", streams)
        if not self.streams:
            raise ConfigurationError("streams must name at least one stream", option="streams")
        for s in self.streams:
            check_type("streams", s, str)
        if len(set(self.streams)) != len(self.streams):
            raise ConfigurationError("streams are named twice", option="streams")
        check_type("group", self.group, str)
        if not self.group:
            raise ConfigurationError("group must not be empty", option="group")
        check_type("consumer", self.consumer, str)
        if not self.consumer:
            raise ConfigurationError("consumer must not be empty", option="consumer")
        check_type("start_id", self.start_id, str)
        if self.start_id != "$":
            try:
                parse_id(self.start_id)
            except ValueError:
                raise ConfigurationError(
                    f"start_id must be '0', '$' or a stream id, got {self.start_id!r}", option="start_id"
                ) from None
        check_type("value_field", self.value_field, str)


PUBSUB_META = {"_channel": pa.string(), "_pattern": pa.string()}


@dataclass(frozen=True, kw_only=True)
class RedisPubSubSourceConfig(SourceOptions, _Connected):
    """Options of :class:`~.source.RedisPubSubSource` (see :mod:`.source`)."""

    METADATA: ClassVar[dict[str, pa.DataType]] = PUBSUB_META

    channels: Sequence[str] | str = ()
    """Channels to subscribe to."""
    patterns: Sequence[str] | str = ()
    """Channel patterns to subscribe to (``PSUBSCRIBE``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("channels", "patterns"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if not self.channels and not self.patterns:
            raise ConfigurationError("give channels and/or patterns to subscribe to", option="channels")
