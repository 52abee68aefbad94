"""Flume (Apache Bahir's Flume connector): :class:`FlumeSink` sends rows as Flume events over HTTP/JSON
or Avro RPC. The contract is in :mod:`.sink`, the options in :mod:`.config`, the wire formats (Avro
RPC, the vectorized event encoding, the HTTP JSON array) in :mod:`._client`.
"""

from __future__ import annotations

from ._client import AVRO_SOURCE_PROTOCOL, encode_avro_events, json_array, zigzag_varints
from .config import FLUME_BATCHING, FlumeSinkConfig, default_batching
from .sink import FlumeSink

__all__ = [
    "AVRO_SOURCE_PROTOCOL",
    "FLUME_BATCHING",
    "FlumeSink",
    "FlumeSinkConfig",
    "default_batching",
    "encode_avro_events",
    "json_array",
    "zigzag_varints",
]
