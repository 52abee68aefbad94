"""0.1.0's module of the DynamoDB Streams source, now :mod:`arrowflow.connectors.dynamodb.streams`
(same objects)."""

from __future__ import annotations

from ..dynamodb import DynamoDBStreamsSource, DynamoDBStreamsSourceConfig
from ..dynamodb.streams import records_to_batch

__all__ = ["DynamoDBStreamsSource", "DynamoDBStreamsSourceConfig", "records_to_batch"]
