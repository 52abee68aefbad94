"""DynamoDB: :class:`DynamoDBSink` (BatchWriteItem), :class:`DynamoDBScanSource` (parallel Scan) and
:class:`DynamoDBStreamsSource` (the table's change records). Needs the ``aws`` extra (``boto3``).
The contracts are in :mod:`.sink`, :mod:`.source` and :mod:`.streams`, the options in :mod:`.config`.
"""

from __future__ import annotations

from .config import DynamoDBScanSourceConfig, DynamoDBSinkConfig, DynamoDBStreamsSourceConfig
from .sink import DynamoDBSink
from .source import DynamoDBScanSource
from .streams import DynamoDBStreamsSource

__all__ = [
    "DynamoDBScanSource",
    "DynamoDBScanSourceConfig",
    "DynamoDBSink",
    "DynamoDBSinkConfig",
    "DynamoDBStreamsSource",
    "DynamoDBStreamsSourceConfig",
]
