"""The single-process pipeline runner (see :mod:`arrowflow.pipeline.runner` for threads and checkpoints).

``Pipeline(source).filter(...).to(sink).run(checkpoint_dir=..., guarantee=...)``.
"""

from __future__ import annotations

from .builder import Pipeline
from .checkpoint import Checkpoint, CheckpointStore
from .metrics import RunMetrics, StageStats
from .restart import RestartStrategy, exponential_delay, failure_rate, fixed_delay, no_restart
from .runner import GUARANTEES, RunConfig, RunResult

__all__ = [
    "GUARANTEES",
    "Checkpoint",
    "CheckpointStore",
    "Pipeline",
    "RestartStrategy",
    "RunConfig",
    "RunMetrics",
    "RunResult",
    "StageStats",
    "exponential_delay",
    "failure_rate",
    "fixed_delay",
    "no_restart",
]
