"""AWS connectors: Kinesis Data Streams (source + sink), Kinesis Data Firehose (sink), DynamoDB
(sink + parallel Scan source), DynamoDB Streams (source). Needs the ``aws`` extra (``boto3``);
boto3 is imported lazily, when a client is first made.

Every boto3 option passes through :class:`AwsConfig` (region, credentials chain, ``endpoint_url``,
botocore ``Config``). Request bodies are built by the compiled JSON kernel and sent through
botocore's signing and parsing (:class:`~arrowflow.connectors.aws.config.RawJsonCall`).
"""

from __future__ import annotations

from .config import AwsConfig
from .dynamodb import DynamoDBScanSource, DynamoDBSink, DynamoDBSinkConfig
from .dynamodb_streams import DynamoDBStreamsSource, DynamoDBStreamsSourceConfig
from .firehose import FirehoseSink, FirehoseSinkConfig
from .kinesis import KinesisSink, KinesisSinkConfig, KinesisSource, KinesisSourceConfig

__all__ = [
    "AwsConfig",
    "DynamoDBScanSource",
    "DynamoDBSink",
    "DynamoDBSinkConfig",
    "DynamoDBStreamsSource",
    "DynamoDBStreamsSourceConfig",
    "FirehoseSink",
    "FirehoseSinkConfig",
    "KinesisSink",
    "KinesisSinkConfig",
    "KinesisSource",
    "KinesisSourceConfig",
]
