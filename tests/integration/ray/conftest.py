"""One local Ray instance for the whole Ray test module (start-up costs seconds on the 2-core box).

``ray.init(num_cpus=2)`` with a small object store and no dashboard, started on first use and shut
down at the end of the session. Worker processes get this directory on ``PYTHONPATH`` so functions
defined in the test modules (``map_batches`` functions, factories) unpickle there by reference.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    import ray

    if ray.is_initialized():  # pragma: no cover - a stray session from elsewhere
        ray.shutdown()
    pythonpath = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=160 * 1024 * 1024,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        yield ray
    finally:
        ray.shutdown()
