"""The options of :class:`~.sink.RedisSink` and :class:`~.source.RedisStreamSource`, checked in one
place (the connection options, shared by every Redis connector, are :class:`~._client.RedisConnection`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ...config import check_choice, check_positive, check_type
from ...errors import ConfigurationError
from ...formats import Format
from ...writer import BatchingConfig
from ._client import RedisConnection

__all__ = [
    "COMMANDS",
    "REDIS_BATCHING",
    "STREAM_META",
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

#: The sink's batching unless configured.
REDIS_BATCHING = BatchingConfig(max_request_rows=5000, max_request_bytes=32 * 1024 * 1024, max_in_flight=2)


@dataclass(frozen=True, kw_only=True)
class RedisSinkConfig:
    """Options of :class:`~.sink.RedisSink` (see :mod:`.sink`); validated at construction."""

    connection: RedisConnection
    command: str
    key: str | None = None
    key_column: str | None = None
    key_prefix: str = ""
    field_column: str | None = None
    score_column: str | None = None
    value_column: str | None = None
    value_columns: tuple[str, ...] | None = None
    format: Format | None = None
    ttl: float | None = None
    value_field: str = "data"
    stream_maxlen: int | None = None
    batching: BatchingConfig = REDIS_BATCHING

    def __post_init__(self) -> None:
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
        if self.value_column is not None and (self.value_columns is not None or self.format is not None):
            raise ConfigurationError(
                "value_column is sent as is; it excludes value_columns and format", option="value_column"
            )
        check_type("format", self.format, Format, allow_none=True)
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
class RedisStreamSourceConfig:
    """Options of :class:`~.source.RedisStreamSource` (see :mod:`.source`)."""

    connection: RedisConnection
    streams: tuple[str, ...]
    group: str
    consumer: str = "arrowflow"
    start_id: str = "0"
    value_field: str = "data"
    metadata_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
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
        for m in self.metadata_columns:
            check_choice("metadata_columns", m, tuple(STREAM_META))
