"""0.1.0's name of :mod:`arrowflow.connectors.redis` (the package was called ``redis_``); re-exports it."""

from __future__ import annotations

from ..redis import (
    COMMANDS,
    RedisConnection,
    RedisPubSubSource,
    RedisSink,
    RedisSinkConfig,
    RedisStreamSource,
    RedisStreamSourceConfig,
)

__all__ = [
    "COMMANDS",
    "RedisConnection",
    "RedisPubSubSource",
    "RedisSink",
    "RedisSinkConfig",
    "RedisStreamSource",
    "RedisStreamSourceConfig",
]
