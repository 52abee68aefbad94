"""RabbitMQ (AMQP 0-9-1 via pika): :class:`RabbitMQSource` and :class:`RabbitMQSink`.

Needs the ``rabbitmq`` extra (``pika``); pika is imported when a connector is built. The contracts
are in :mod:`.source` and :mod:`.sink`, the options in :mod:`.config`.
"""

from __future__ import annotations

from .config import RabbitMQSinkConfig, RabbitMQSourceConfig
from .sink import RabbitMQSink
from .source import RabbitMQSource

__all__ = ["RabbitMQSink", "RabbitMQSinkConfig", "RabbitMQSource", "RabbitMQSourceConfig"]
