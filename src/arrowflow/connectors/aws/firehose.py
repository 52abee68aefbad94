"""0.1.0's module of the Firehose connector, now :mod:`arrowflow.connectors.firehose` (same objects)."""

from __future__ import annotations

from ..firehose import FirehoseSink, FirehoseSinkConfig

__all__ = ["FirehoseSink", "FirehoseSinkConfig"]
