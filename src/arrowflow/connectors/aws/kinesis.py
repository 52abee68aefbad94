"""0.1.0's module of the Kinesis connector, now :mod:`arrowflow.connectors.kinesis` (same objects)."""

from __future__ import annotations

from ..kinesis import KinesisSink, KinesisSinkConfig, KinesisSource, KinesisSourceConfig

__all__ = ["KinesisSink", "KinesisSinkConfig", "KinesisSource", "KinesisSourceConfig"]
