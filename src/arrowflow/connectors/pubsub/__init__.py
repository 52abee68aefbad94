"""Google Cloud Pub/Sub (``google-cloud-pubsub``): :class:`PubSubSource` (streaming pull, acks on
checkpoint) and :class:`PubSubSink` (at-least-once). Needs the ``pubsub`` extra; the client is
imported when a connector is built. The contracts are in :mod:`.source` and :mod:`.sink`, the
options in :mod:`.config`; :func:`publisher_client` / :func:`subscriber_client` make clients for an
emulator or Google Cloud.
"""

from __future__ import annotations

from ._client import publisher_client, subscriber_client
from .config import PubSubSinkConfig, PubSubSourceConfig
from .sink import PubSubSink
from .source import PubSubSource, PubSubSplitReader

__all__ = [
    "PubSubSink",
    "PubSubSinkConfig",
    "PubSubSource",
    "PubSubSourceConfig",
    "PubSubSplitReader",
    "publisher_client",
    "subscriber_client",
]
