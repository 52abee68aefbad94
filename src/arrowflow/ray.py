"""``arrowflow.ray``: the Ray Data integration under a short name (see :mod:`arrowflow.integrations.ray`).

``arrowflow.ray.read(source)``, ``dataset.write_datasink(arrowflow.ray.Datasink(factory))``,
``arrowflow.ray.run_partitioned(pipeline_factory, splits=..., checkpoint_root=...)``. Importing this
module imports ``ray``. Absolute imports (``from __future__`` semantics) mean this module never shadows
the top-level ``ray`` package for the code that imports it.
"""

from __future__ import annotations

from .integrations.ray import (
    Datasink,
    Partition,
    PartitionedRun,
    PartitionedRunResult,
    PartitionResult,
    SourceDatasource,
    SplitSubset,
    WriteSummary,
    group_splits,
    read,
    run_partitioned,
    start_partitioned,
)

__all__ = [
    "Datasink",
    "Partition",
    "PartitionResult",
    "PartitionedRun",
    "PartitionedRunResult",
    "SourceDatasource",
    "SplitSubset",
    "WriteSummary",
    "group_splits",
    "read",
    "run_partitioned",
    "start_partitioned",
]
