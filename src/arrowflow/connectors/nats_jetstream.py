"""0.1.0's name of :mod:`arrowflow.connectors.nats` (the package is named after its registry entry
now). It re-exports the same objects; new code imports :mod:`arrowflow.connectors.nats`."""

from __future__ import annotations

from .nats import NatsJetStreamSink, NatsJetStreamSource

__all__ = ["NatsJetStreamSink", "NatsJetStreamSource"]
