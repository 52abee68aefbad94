"""NATS JetStream (nats-py): :class:`NatsJetStreamSource` (durable pull consumer, acks on checkpoint) and
:class:`NatsJetStreamSink` (``Nats-Msg-Id`` deduplication). Needs the ``nats`` extra; nats-py is
imported when a connector is built. nats-py is asyncio-only: every connector runs a private event
loop in a daemon thread and calls into it with ``run_coroutine_threadsafe`` (blocking calls have
timeouts).

The contracts are in :mod:`.source` and :mod:`.sink`, the options in :mod:`.config`; :mod:`._client`
holds the nats-py plumbing both share and :mod:`._pull` the source's own pull socket. The module was
``arrowflow.connectors.nats_jetstream`` in 0.1.0 (kept as a re-export); inside this package ``import
nats`` is absolute and still finds the nats-py package.
"""

from __future__ import annotations

from .config import NATS_BATCHING, NatsJetStreamSinkConfig, NatsJetStreamSourceConfig
from .sink import NatsJetStreamSink
from .source import NatsJetStreamSource

__all__ = [
    "NATS_BATCHING",
    "NatsJetStreamSink",
    "NatsJetStreamSinkConfig",
    "NatsJetStreamSource",
    "NatsJetStreamSourceConfig",
]
