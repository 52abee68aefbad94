"""ActiveMQ over STOMP 1.2 (stomp.py): :class:`ActiveMQSource`, :class:`ActiveMQSink` and
:class:`ActiveMQTransactionalSink` (Bahir's AMQSource/AMQSink without the JVM).

Needs the ``activemq`` extra (``stomp.py``); stomp.py is imported when a connector is built.
Destinations are STOMP names: ``/queue/NAME`` or ``/topic/NAME``. The contracts are in
:mod:`.source` and :mod:`.sink`, the options in :mod:`.config`.
"""

from __future__ import annotations

from .config import ActiveMQSinkConfig, ActiveMQSourceConfig, ActiveMQTransactionalSinkConfig
from .sink import ActiveMQSink, ActiveMQTransactionalSink
from .source import ActiveMQSource

__all__ = [
    "ActiveMQSink",
    "ActiveMQSinkConfig",
    "ActiveMQSource",
    "ActiveMQSourceConfig",
    "ActiveMQTransactionalSink",
    "ActiveMQTransactionalSinkConfig",
]
