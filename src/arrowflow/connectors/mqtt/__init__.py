"""MQTT (paho-mqtt 2): :class:`MqttSource` (topic filters, QoS, persistent sessions, acks on
checkpoint) and :class:`MqttSink` (QoS, retain). Needs the ``mqtt`` extra; paho is imported when a
connector is built. The contracts are in :mod:`.source` and :mod:`.sink`, the options in
:mod:`.config`.
"""

from __future__ import annotations

from .config import MqttConnection, MqttSinkConfig, MqttSourceConfig
from .sink import MqttSink
from .source import MqttSource

__all__ = ["MqttConnection", "MqttSink", "MqttSinkConfig", "MqttSource", "MqttSourceConfig"]
