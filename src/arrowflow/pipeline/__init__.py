"""The single-process pipeline runner (see :mod:`arrowflow.pipeline.runner` for threads and checkpoints).

``Pipeline(source).filter(...).to(sink).run(checkpoint_dir=..., guarantee=...)``.
"""

from __future__ import annotations

from .builder import Pipeline
from .checkpoint import Checkpoint, CheckpointStore
from .metrics import RunMetrics, StageStats
from .runner import GUARANTEES, RunConfig, RunResult

__all__ = [
    "GUARANTEES",
    "Checkpoint",
    "CheckpointStore",
    "Pipeline",
    "RunConfig",
    "RunMetrics",
    "RunResult",
    "StageStats",
]
