"""AWS connectors: Kinesis Data Streams (source + sink, :mod:`arrowflow.connectors.kinesis`), Kinesis
Data Firehose (sink, :mod:`arrowflow.connectors.firehose`), DynamoDB (sink + parallel Scan source +
Streams source, :mod:`arrowflow.connectors.dynamodb`), one package each since issue 17; this
package keeps 0.1.0's import paths. Needs the ``aws`` extra (``boto3``); boto3 is imported lazily,
when a client is first made.

Every boto3 option passes through :class:`AwsConfig` (region, credentials chain, ``endpoint_url``,
botocore ``Config``). Request bodies are built by the compiled JSON kernel and sent through
botocore's signing and parsing (:class:`~arrowflow.connectors._aws.config.RawJsonCall`).
"""

from __future__ import annotations

from .._aws.config import AwsConfig
from ..dynamodb import (
    DynamoDBScanSource,
    DynamoDBScanSourceConfig,
    DynamoDBSink,
    DynamoDBSinkConfig,
    DynamoDBStreamsSource,
    DynamoDBStreamsSourceConfig,
)
from ..firehose import FirehoseSink, FirehoseSinkConfig
from ..kinesis import KinesisSink, KinesisSinkConfig, KinesisSource, KinesisSourceConfig

__all__ = [
    "AwsConfig",
    "DynamoDBScanSource",
    "DynamoDBScanSourceConfig",
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
