"""0.1.0's module of the Redis sources, now :mod:`arrowflow.connectors.redis.source` (same objects)."""

from __future__ import annotations

from ..redis.config import parse_id
from ..redis.source import RedisPubSubSource, RedisStreamSource, RedisStreamSourceConfig

__all__ = ["RedisPubSubSource", "RedisStreamSource", "RedisStreamSourceConfig", "parse_id"]
