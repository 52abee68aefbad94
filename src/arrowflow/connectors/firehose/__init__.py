"""Kinesis Data Firehose: :class:`FirehoseSink` (PutRecordBatch). Needs the ``aws`` extra (``boto3``).
The contract is in :mod:`.sink`, the options in :mod:`.config`."""

from __future__ import annotations

from .config import FirehoseSinkConfig
from .sink import FirehoseSink

__all__ = ["FirehoseSink", "FirehoseSinkConfig"]
