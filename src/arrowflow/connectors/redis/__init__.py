"""Redis: :class:`RedisSink` (HSET, SET with TTL, LPUSH/RPUSH, SADD, ZADD, PFADD, PUBLISH, XADD over
pipelines), :class:`RedisStreamSource` (consumer groups, XACK on checkpoint, pending-entry recovery)
and :class:`RedisPubSubSource` (at-most-once). Needs the ``redis`` extra (``redis-py``), imported
only when a connector is built.
The contracts are in :mod:`.source` and :mod:`.sink`, the options in :mod:`.config`. The package was
``arrowflow.connectors.redis_`` in 0.1.0 (that name is kept as a re-export); inside it, ``import
redis`` is absolute and still finds the client package.
"""

from __future__ import annotations

from ._client import RedisConnection
from .config import (
    COMMANDS,
    REDIS_BATCHING,
    RedisPubSubSourceConfig,
    RedisSinkConfig,
    RedisStreamSourceConfig,
)
from .sink import RedisSink
from .source import RedisPubSubSource, RedisStreamSource

__all__ = [
    "COMMANDS",
    "REDIS_BATCHING",
    "RedisConnection",
    "RedisPubSubSource",
    "RedisPubSubSourceConfig",
    "RedisSink",
    "RedisSinkConfig",
    "RedisStreamSource",
    "RedisStreamSourceConfig",
]
