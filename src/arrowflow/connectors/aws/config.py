"""0.1.0's module of the boto3 options, now :mod:`arrowflow.connectors._aws.config` (same objects)."""

from __future__ import annotations

from .._aws.config import THROTTLING_CODES, AwsConfig, RawJsonCall, error_code, is_retryable_aws_error

__all__ = ["THROTTLING_CODES", "AwsConfig", "RawJsonCall", "error_code", "is_retryable_aws_error"]
