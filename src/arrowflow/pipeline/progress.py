"""A one-line live progress display (rich, imported lazily) on stderr.

Shows rows done, rows/s and MB/s (Arrow bytes, from ``RecordBatch.nbytes``) averaged over the run,
source lag where known, how far the watermark is behind the wall clock and late rows (with event time),
and checkpoints. Refreshed by the supervising thread; never touches the
pipeline threads.
"""

from __future__ import annotations

import time
from typing import Any

from .metrics import RunMetrics

__all__ = ["ProgressLine", "format_progress"]


def format_progress(m: RunMetrics, now: float | None = None) -> str:
    """The progress text for the current counters."""
    elapsed = max((now if now is not None else time.monotonic()) - m.started, 1e-9)
    parts = [
        f"rows {m.rows:,}",
        f"{m.rows / elapsed:,.0f} rows/s",
        f"{m.bytes / elapsed / 1e6:,.1f} MB/s",
    ]
    if m.lag is not None:
        parts.append(f"lag {m.lag:,}")
    event_lag = m.event_time_lag
    if event_lag is not None:
        parts.append(f"watermark {event_lag:,.1f}s behind")
    if m.late_rows:
        parts.append(f"late {m.late_rows:,}")
    parts.append(f"checkpoints {m.checkpoints}")
    if m.errors:
        parts.append(f"errors {m.errors:,}")
    return " | ".join(parts)


class ProgressLine:
    """A rich ``Live`` line on stderr; :meth:`close` prints the final state and stops it."""

    def __init__(self, metrics: RunMetrics) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self._metrics = metrics
        self._text_cls = Text
        self._console = Console(stderr=True)
        self._live: Any = Live(
            Text(format_progress(metrics)),
            console=self._console,
            refresh_per_second=4,
            transient=False,
        )
        self._live.start()

    def update(self) -> None:
        self._live.update(self._text_cls(format_progress(self._metrics)))

    def close(self) -> None:
        self.update()
        self._live.stop()
        if not self._console.is_terminal:
            # Live leaves its last line unterminated when stderr is a file or a pipe.
            self._console.file.write("\n")
