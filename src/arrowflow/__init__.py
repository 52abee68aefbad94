"""arrowflow: stream and batch connectors that speak ``pyarrow.RecordBatch``.

Importing this package imports pyarrow and numpy only; connector client libraries load when a
connector is constructed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import Secret
from .error_policy import DeadLetter, ErrorPolicy
from .errors import (
    ArrowflowError,
    CheckpointError,
    ConfigurationError,
    ConnectorError,
    SerializationError,
)
from .sink import Sink, TwoPhaseSink
from .source import Source, Split, SplitReader
from .time import WatermarkStrategy, agg, session, sliding, tumbling

if TYPE_CHECKING:  # imported lazily at run time by __getattr__ below
    from .pipeline import Pipeline, RunResult

__version__ = "0.1.0"

__all__ = [
    "ArrowflowError",
    "CheckpointError",
    "ConfigurationError",
    "ConnectorError",
    "DeadLetter",
    "ErrorPolicy",
    "Pipeline",
    "RunResult",
    "Secret",
    "SerializationError",
    "Sink",
    "Source",
    "Split",
    "SplitReader",
    "TwoPhaseSink",
    "WatermarkStrategy",
    "__version__",
    "agg",
    "session",
    "sliding",
    "time",
    "tumbling",
]


def __getattr__(name: str) -> object:
    # The pipeline layer sits above ops and connectors; load it only when asked for.
    if name in ("Pipeline", "RunResult"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'arrowflow' has no attribute {name!r}")
