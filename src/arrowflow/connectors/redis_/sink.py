"""0.1.0's module of the Redis sink, now :mod:`arrowflow.connectors.redis.sink` (same objects)."""

from __future__ import annotations

from ..redis import COMMANDS, RedisSink, RedisSinkConfig

__all__ = ["COMMANDS", "RedisSink", "RedisSinkConfig"]
