"""0.1.0's name of :mod:`arrowflow.connectors.pulsar` (the package is named after its registry entry
now). It re-exports the same objects; new code imports :mod:`arrowflow.connectors.pulsar`."""

from __future__ import annotations

from .pulsar import PulsarSink, PulsarSource, PulsarSplitReader, decode_message_id, encode_message_id

__all__ = ["PulsarSink", "PulsarSource", "PulsarSplitReader", "decode_message_id", "encode_message_id"]
