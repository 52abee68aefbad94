"""0.1.0's module of the DynamoDB sink and Scan source, now :mod:`arrowflow.connectors.dynamodb`
(same objects)."""

from __future__ import annotations

from ..dynamodb import DynamoDBScanSource, DynamoDBSink, DynamoDBSinkConfig
from ..dynamodb.source import items_to_batch

__all__ = ["DynamoDBScanSource", "DynamoDBSink", "DynamoDBSinkConfig", "items_to_batch"]
