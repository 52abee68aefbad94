"""Crash-resume of an event-time pipeline: DataGen -> tumbling window -> FileSink, SIGKILLed mid-run.

The committed window results must equal the oracle (polars ``group_by_dynamic`` over every generated
row, and a one-shot HyperLogLog per window) exactly: no window lost, none twice. Exactly ``KILLS``
SIGKILLs land while data is in flight (the harness's count: after the first batch, before ``done``).
After every kill, and all along as a reader polling the directory sees it, a bucket directory with
``_SUCCESS`` holds all of its windows (it was complete when committed), and no directory holds a window
twice or one the oracle does not have (window_checks.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from crash_harness import crash_mid_stream, python_command
from window_checks import WindowOutput, oracle_windows
from window_crash_pipeline import BUCKET, ROWS, WINDOW, generate

KILLS = 4


def test_tumbling_window_to_file_sink_exactly_once_across_sigkills(tmp_path: Path) -> None:
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    rows = pl.from_arrow(generate(np.arange(ROWS, dtype=np.int64)))
    assert isinstance(rows, pl.DataFrame)
    output = WindowOutput(out, oracle_windows(rows, WINDOW, BUCKET))

    command = python_command(
        "window_crash_pipeline.py",
        f"--checkpoint-dir={ckpt}",
        f"--out={out}",
        "--rate=5000",
        "--interval=0.2",
    )

    with output.watched():
        # Killed after 3-30 progress lines of a run (500 rows each, 5,000 rows/s) plus up to 50 ms;
        # exactly KILLS kills must land in flight.
        report = crash_mid_stream(
            command,
            verify=output.verify_final,
            kills=KILLS,
            kill_after=(3, 30),
            timeout=240.0,
            after_kill=output.after_kill,
        )
    output.assert_resumed(report)
