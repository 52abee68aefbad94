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

from .. import dynamodb, firehose, kinesis
from .._aws.config import AwsConfig

# The three packages' public names, as their own __all__ lists them (0.1.0's import paths).
from ..dynamodb import *  # noqa: F403
from ..firehose import *  # noqa: F403
from ..kinesis import *  # noqa: F403

__all__ = ["AwsConfig", *dynamodb.__all__, *firehose.__all__, *kinesis.__all__]
