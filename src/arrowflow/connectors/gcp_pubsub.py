"""0.1.0's name of :mod:`arrowflow.connectors.pubsub` (the package is named after its registry entry
now). It re-exports the same objects; new code imports :mod:`arrowflow.connectors.pubsub`."""

from __future__ import annotations

from .pubsub import PubSubSink, PubSubSource, PubSubSplitReader, publisher_client, subscriber_client

__all__ = ["PubSubSink", "PubSubSource", "PubSubSplitReader", "publisher_client", "subscriber_client"]
