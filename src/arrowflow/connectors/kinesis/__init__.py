"""Kinesis Data Streams: :class:`KinesisSink` (PutRecords) and :class:`KinesisSource` (GetRecords).

Needs the ``aws`` extra (``boto3``); boto3 is imported when a client is first made. The contracts
are in :mod:`.sink` and :mod:`.source`, the options in :mod:`.config`; the boto3 options
(region, credentials, ``endpoint_url``) are :class:`~arrowflow.connectors.aws.AwsConfig`.
"""

from __future__ import annotations

from .config import KinesisSinkConfig, KinesisSourceConfig
from .sink import KinesisSink
from .source import KinesisSource

__all__ = ["KinesisSink", "KinesisSinkConfig", "KinesisSource", "KinesisSourceConfig"]
