"""Apache Pulsar (``pulsar-client``): :class:`PulsarSource` (a subscription, acks on checkpoint) and
:class:`PulsarSink` (``send_async`` with callbacks, at-least-once). Needs the ``pulsar`` extra; the
client is imported when a connector is built. The contracts are in :mod:`.source` and :mod:`.sink`,
the options in :mod:`.config`.
"""

from __future__ import annotations

from ._client import decode_message_id, encode_message_id
from .config import PulsarSinkConfig, PulsarSourceConfig
from .sink import PulsarSink
from .source import PulsarSource, PulsarSplitReader

__all__ = [
    "PulsarSink",
    "PulsarSinkConfig",
    "PulsarSource",
    "PulsarSourceConfig",
    "PulsarSplitReader",
    "decode_message_id",
    "encode_message_id",
]
