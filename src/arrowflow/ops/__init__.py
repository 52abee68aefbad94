"""Vectorized operators over RecordBatches (see :mod:`arrowflow.ops.base` for the contract).

One module per family: :mod:`.columns` (filter/select/rename/with_columns), :mod:`.map`
(map_batches/flat_map), :mod:`.partition` (key_by/partition), :mod:`.rebatch`, :mod:`.enrich`
(async I/O), :mod:`.window` (windowed aggregation). Importing this package imports pyarrow and numpy only.
"""

from __future__ import annotations

from .base import Operator
from .columns import Filter, Rename, Select, WithColumns
from .enrich import Enrich, EnrichError, RetryStrategy
from .map import FlatMap, MapBatches
from .partition import PARTITION_KEY, KeyBy, Partition, partition_of
from .rebatch import Rebatch
from .window import Window

__all__ = [
    "PARTITION_KEY",
    "Enrich",
    "EnrichError",
    "Filter",
    "FlatMap",
    "KeyBy",
    "MapBatches",
    "Operator",
    "Partition",
    "Rebatch",
    "Rename",
    "RetryStrategy",
    "Select",
    "Window",
    "WithColumns",
    "partition_of",
]
