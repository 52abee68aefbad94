"""Prometheus remote write (Flink's Prometheus connector): :class:`PrometheusSink` sends rows as
samples in ``WriteRequest`` s. The contract is in :mod:`.sink`, the options in :mod:`.config`.
"""

from __future__ import annotations

from .config import (
    PROMETHEUS_BATCHING,
    BasicAuth,
    BearerToken,
    PrometheusSinkConfig,
    RequestSigner,
    default_batching,
)
from .sink import PrometheusSink

__all__ = [
    "PROMETHEUS_BATCHING",
    "BasicAuth",
    "BearerToken",
    "PrometheusSink",
    "PrometheusSinkConfig",
    "RequestSigner",
    "default_batching",
]
