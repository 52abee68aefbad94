"""``run_partitioned``: one checkpointed pipeline per group of splits on Ray actors, surviving a worker
killed with SIGKILL (the actor's process), resuming from its checkpoint without loss or duplicates
(FileSink is transactional, so the partitions run exactly-once)."""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from ray_helpers import partition_pipeline, sorted_by_id, write_files

import arrowflow.ray as afr
from arrowflow import ConfigurationError
from arrowflow.connectors.filesystem import FileSource
from arrowflow.pipeline import CheckpointStore


def test_killed_worker_resumes_from_its_checkpoint(ray_session: Any, tmp_path: Path) -> None:
    src, out, ckpt = tmp_path / "in", tmp_path / "out", tmp_path / "ckpt"
    expected = write_files(src, [1600, 1600, 1600, 1600])
    factory = functools.partial(partition_pipeline, src=str(src), out=str(out), batch_size=100)
    run = afr.start_partitioned(
        factory,
        splits=FileSource(src, split_row_groups=False),
        checkpoint_root=ckpt,
        num_workers=2,
        max_restarts=2,
        run_options={"guarantee": "exactly-once", "checkpoint_interval": 0.3},
    )
    assert [len(p.splits) for p in run.partitions] == [2, 2]
    victim = run.partitions[0]
    # Kill partition 0's worker once it has a durable checkpoint (mid-run: it takes ~3 s per partition).
    deadline = time.monotonic() + 90
    while CheckpointStore(victim.checkpoint_dir).load() is None:
        assert time.monotonic() < deadline, "partition 0 never checkpointed"
        time.sleep(0.05)
    first_pids = run.pids()
    os.kill(first_pids[0], signal.SIGKILL)

    result = run.wait(timeout=180)

    assert [p.index for p in result.partitions] == [0, 1]
    assert result.partitions[0].attempt == 2
    assert result.partitions[1].attempt == 1
    assert result.restarts == 1
    # The second attempt resumed from the checkpoint instead of re-reading its files from the start.
    assert 0 < result.partitions[0].rows < 3200
    assert result.partitions[1].rows == 3200
    got = sorted_by_id(FileSource(out).read_all())
    assert got.num_rows == expected.num_rows  # nothing lost, nothing twice
    assert got.equals(sorted_by_id(expected))


def test_run_partitioned_validates_its_options(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_files(src, [10])
    factory = functools.partial(partition_pipeline, src=str(src), out=str(tmp_path / "o"), batch_size=10)
    with pytest.raises(ConfigurationError) as info:
        afr.run_partitioned(factory, splits=[], checkpoint_root=tmp_path / "c")
    assert info.value.option == "splits"
    with pytest.raises(ConfigurationError) as info:
        afr.run_partitioned(
            factory,
            splits=FileSource(src),
            checkpoint_root=tmp_path / "c",
            run_options={"checkpoint_dir": "/elsewhere"},
        )
    assert info.value.option == "run_options"
    with pytest.raises(ConfigurationError) as info:
        afr.run_partitioned(factory, splits=FileSource(src), checkpoint_root=tmp_path / "c", max_restarts=-1)
    assert info.value.option == "max_restarts"
