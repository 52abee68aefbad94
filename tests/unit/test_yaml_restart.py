"""YAML pipelines with ``run.restart`` and ``run.parallelism``: they reach ``run()`` and take effect
(a failure injected by a ``map_batches`` function is restarted; every row arrives exactly once),
and bad values name their line and key."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from arrowflow.errors import ConfigurationError, ConnectorError
from arrowflow.pipeline.restart import ExponentialDelay, FailureRate, FixedDelay, NoRestart
from arrowflow.pipeline_spec import load_pipeline

_LOCK = threading.Lock()
#: Batches seen by :func:`fail_twice` and the failures it raised (reset by the test).
SEEN = {"batches": 0, "raised": 0}


def fail_twice(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Raises a retryable failure at the 3rd and 9th batch it sees (across restarts)."""
    with _LOCK:
        SEEN["batches"] += 1
        n = SEEN["batches"]
        if n in (3, 9):
            SEEN["raised"] += 1
            raise ConnectorError(f"injected failure at batch {n}", retryable=True)
    return batch


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_restart_and_parallelism_from_yaml_take_effect(tmp_path: Path) -> None:
    SEEN.update(batches=0, raised=0)
    path = _write(
        tmp_path,
        f"""\
        source: {{type: datagen, count: 20000, num_splits: 4, batch_size: 500,
                  fields: {{id: {{sequence: {{start: 0}}}}}}}}
        operators:
          - map_batches: "{__name__}:fail_twice"
        sink: {{type: file, path: {tmp_path / "out"}, format: parquet}}
        run:
          progress: false
          guarantee: exactly-once
          checkpoint_dir: {tmp_path / "ckpt"}
          checkpoint_interval: 0.05
          parallelism: 2
          restart: {{type: fixed-delay, attempts: 3, delay: 10ms}}
        """,
    )
    spec = load_pipeline(path)
    options = spec.options()
    assert options["parallelism"] == 2
    assert isinstance(options["restart"], FixedDelay) and options["restart"].attempts == 3
    result = spec.run()
    assert SEEN["raised"] == 2 and result.restarts == 2 and result.parallelism == 2
    ids = ds.dataset(tmp_path / "out", format="parquet").to_table().column("id").to_numpy()
    assert np.array_equal(np.sort(ids), np.arange(20000)), "rows lost or committed twice"


@pytest.mark.parametrize(
    ("restart", "kind"),
    [
        ("none", NoRestart),
        ("{type: exponential_delay, initial: 1s, max: 1m, multiplier: 3, reset_after: 1h}", ExponentialDelay),
        ("{type: failure-rate, max_failures: 3, interval: 5m, delay: 10s}", FailureRate),
    ],
)
def test_each_restart_type_builds_its_strategy(tmp_path: Path, restart: str, kind: type) -> None:
    path = _write(
        tmp_path,
        f"""\
        source: {{type: datagen, count: 10, fields: {{id: sequence}}}}
        sink: {{type: memory}}
        run: {{restart: {restart}}}
        """,
    )
    value = load_pipeline(path).options()["restart"]
    # "none" stays None (run() resolves it); every other type is its strategy object.
    assert value is None if kind is NoRestart else isinstance(value, kind)


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ("{restart: sometimes}", "pipeline.yaml:3: run.restart: must be 'none' or a mapping"),
        ("{restart: {type: forever}}", "pipeline.yaml:3: run.restart.type: must be one of"),
        ("{restart: {attempts: 3}}", "pipeline.yaml:3: run.restart.type: must be one of"),
        (
            "{restart: {type: fixed-delay, attempts: 3, delay: 1s, backoff: 2}}",
            "pipeline.yaml:3: run.restart.backoff: unknown option for fixed-delay",
        ),
        ("{restart: {type: fixed-delay, attempts: 0, delay: 1s}}", "pipeline.yaml:3: run.restart.attempts:"),
        ("{restart: {type: fixed-delay, delay: 1s}}", "pipeline.yaml:3: run.restart: fixed-delay:"),
        ("{restart: {type: failure-rate, max_failures: 2, interval: 0, delay: 1s}}", "run.restart.interval:"),
        ("{parallelism: 0}", "pipeline.yaml:3: run.parallelism:"),
    ],
)
def test_bad_restart_and_parallelism_name_line_and_key(tmp_path: Path, run: str, expected: str) -> None:
    path = _write(
        tmp_path,
        f"""\
        source: {{type: datagen, count: 10, fields: {{id: sequence}}}}
        sink: {{type: memory}}
        run: {run}
        """,
    )
    with pytest.raises(ConfigurationError) as info:
        load_pipeline(path)
    assert expected in str(info.value), str(info.value)
