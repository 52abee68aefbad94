"""0.1.0's name of :mod:`arrowflow.connectors.mqtt` (the package is named after its registry entry
now). It re-exports the same objects; new code imports :mod:`arrowflow.connectors.mqtt`."""

from __future__ import annotations

from .mqtt import MqttConnection, MqttSink, MqttSource

__all__ = ["MqttConnection", "MqttSink", "MqttSource"]
