"""Redis: :class:`RedisSink` (HSET, SET with TTL, LPUSH/RPUSH, SADD, ZADD, PFADD, PUBLISH, XADD over
pipelines), :class:`RedisStreamSource` (consumer groups, XACK on checkpoint, pending-entry recovery)
and :class:`RedisPubSubSource` (at-most-once). Needs the ``redis`` extra (``redis-py``), imported
only when a connector is built.

The package is called ``redis_`` so that it never shadows the ``redis`` client package.
"""

from __future__ import annotations

from ._client import RedisConnection
from .sink import COMMANDS, RedisSink, RedisSinkConfig
from .source import RedisPubSubSource, RedisStreamSource, RedisStreamSourceConfig

__all__ = [
    "COMMANDS",
    "RedisConnection",
    "RedisPubSubSource",
    "RedisSink",
    "RedisSinkConfig",
    "RedisStreamSource",
    "RedisStreamSourceConfig",
]
