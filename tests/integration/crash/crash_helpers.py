"""Test doubles of external systems for the crash tests: a replayable row-range source and file sinks.

* :class:`RangeSource` - ``num_splits`` splits over ``[0, rows)``; a position is the next id to read,
  so reopening from a snapshot neither re-reads nor skips (a replayable source). ``delay`` slows
  every batch so a test can kill the process mid-run. ``rows=None`` makes it unbounded.
* :class:`FileTwoPhaseSink` - the rename protocol of a transactional file sink: batches go to an
  ``inprogress-*`` Arrow IPC file; ``prepare_commit`` closes, fsyncs and renames it to
  ``pending-*`` and returns its name; ``commit`` renames pending files to ``part-*`` (idempotent);
  ``recover`` commits the checkpoint's pending files and deletes every other in-progress/pending file.
* :class:`FileAppendSink` - a plain (at-least-once) sink: each flush publishes what was written since
  the last one as one ``part-*`` file.
* :class:`Progress` - the pass-through operator every crash pipeline uses to tell the harness where it
  is: ``started`` on the first batch, ``progress`` on every batch (see crash_harness.py).
* :func:`stalling` - a sink class whose first checkpoint flush after written rows stalls (``stalled``),
  so that the kill finds acknowledged rows that no checkpoint covers: the restart writes them again.
* :func:`run_number` - which start of a crash pipeline this is (0, 1, ...), to stall chosen runs.

Committed output is read back with :func:`committed_ids`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
from crash_harness import PROGRESS, STALLED, STARTED

from arrowflow import Sink, Source, Split, SplitReader, TwoPhaseSink
from arrowflow.ops.base import Operator

SCHEMA = pa.schema([("id", pa.int64()), ("value", pa.float64())])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RangeReader(SplitReader):
    def __init__(self, split: Split, position: Any, *, batch_rows: int, delay: float) -> None:
        super().__init__(split, position)
        self.start = int(split.params["start"])
        self.end: int | None = split.params.get("end")
        self.next = self.start if position is None else int(position)
        self.batch_rows = batch_rows
        self.delay = delay
        self.committed: list[Any] = []

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self.finished:
            return None
        if self.delay:
            time.sleep(min(self.delay, timeout))
        stop = self.next + min(max_rows, self.batch_rows)
        if self.end is not None:
            stop = min(stop, self.end)
        ids = np.arange(self.next, stop, dtype=np.int64)
        self.next = stop
        return pa.record_batch([pa.array(ids), pa.array(ids * 0.5)], schema=SCHEMA)

    @property
    def finished(self) -> bool:
        return self.end is not None and self.next >= self.end

    def snapshot(self) -> Any:
        return self.next

    def commit(self, snapshot: Any) -> None:
        self.committed.append(snapshot)

    def lag(self) -> int | None:
        return None if self.end is None else self.end - self.next


class RangeSource(Source):
    """Ids ``[0, rows)`` in ``num_splits`` contiguous splits (unbounded splits when ``rows`` is None)."""

    name = "range"
    replayable = True

    def __init__(
        self, rows: int | None, *, num_splits: int = 1, batch_rows: int = 100, delay: float = 0.0
    ) -> None:
        self.rows = rows
        self.num_splits = num_splits
        self.batch_rows = batch_rows
        self.delay = delay

    @property
    def bounded(self) -> bool:
        return self.rows is not None

    def plan(self) -> list[Split]:
        if self.rows is None:
            # Unbounded: split i yields ids i*10**12, i*10**12 + 1, ...
            return [
                Split(split_id=f"r{i}", bounded=False, params={"start": i * 10**12})
                for i in range(self.num_splits)
            ]
        bounds = np.linspace(0, self.rows, self.num_splits + 1).astype(int)
        return [
            Split(split_id=f"r{i}", params={"start": int(bounds[i]), "end": int(bounds[i + 1])})
            for i in range(self.num_splits)
        ]

    def open(self, split: Split, position: Any = None) -> RangeReader:
        return RangeReader(split, position, batch_rows=self.batch_rows, delay=self.delay)


class FileTwoPhaseSink(TwoPhaseSink):
    """Exactly-once file output through in-progress -> pending -> part renames."""

    name = "file-2pc"

    def __init__(self, directory: str | os.PathLike[str], *, prepare_delay: float = 0.0) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare_delay = prepare_delay
        self._writer: ipc.RecordBatchFileWriter | None = None
        self._file: Any = None
        self._name: str | None = None
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._name = uuid.uuid4().hex
            self._file = open(self.dir / f"inprogress-{self._name}.arrow", "wb")  # noqa: SIM115 - spans calls
            self._writer = ipc.new_file(self._file, batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def prepare_commit(self) -> list[Any]:
        if self.prepare_delay:
            print("preparing", flush=True)
            time.sleep(self.prepare_delay)
        if self._writer is None:
            return []
        self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        name, self._writer, self._file, self._name = self._name, None, None, None
        os.replace(self.dir / f"inprogress-{name}.arrow", self.dir / f"pending-{name}.arrow")
        _fsync_dir(self.dir)
        return [name]

    def commit(self, committables: Sequence[Any]) -> None:
        for name in committables:
            pending = self.dir / f"pending-{name}.arrow"
            if pending.exists():
                os.replace(pending, self.dir / f"part-{name}.arrow")
        if committables:
            _fsync_dir(self.dir)

    def abort(self) -> None:
        if self._writer is not None:
            self._file.close()
            (self.dir / f"inprogress-{self._name}.arrow").unlink(missing_ok=True)
            self._writer, self._file, self._name = None, None, None

    def recover(self, committables: Sequence[Any]) -> None:
        self.commit(committables)
        for p in [*self.dir.glob("inprogress-*.arrow"), *self.dir.glob("pending-*.arrow")]:
            p.unlink()


class FileAppendSink(Sink):
    """At-least-once file output: each ``flush`` publishes the rows written since the previous one."""

    name = "file-append"

    def __init__(self, directory: str | os.PathLike[str], *, started_marker: bool = False) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._buffer: list[pa.RecordBatch] = []
        self._started_marker = started_marker
        self.flushes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._started_marker:
            print("started", flush=True)
            self._started_marker = False
        self._buffer.append(batch)

    def flush(self) -> None:
        self.flushes += 1
        if not self._buffer:
            return
        name = uuid.uuid4().hex
        tmp = self.dir / f".tmp-{name}.arrow"
        with open(tmp, "wb") as f:
            with ipc.new_file(f, self._buffer[0].schema) as w:
                for b in self._buffer:
                    w.write_batch(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / f"part-{name}.arrow")
        self._buffer = []


class Progress(Operator):
    """Passes batches through, sleeping ``delay`` per batch; prints ``started`` before the first batch
    and ``progress`` for every batch (after the sleep; not when ``quiet``, as in a run that stalls),
    each flushed at once: the harness counts the progress lines to kill a run mid-stream. With
    ``rows_per_line`` a line stands for that many rows instead of a batch (a rate-limited source
    returns batches of whatever rows are due, so their number says little about how far a run got).
    Pipelines that need more (a stop condition) subclass it and call ``super().process``."""

    name = "progress"

    def __init__(self, delay: float = 0.0, *, quiet: bool = False, rows_per_line: int | None = None) -> None:
        self.delay = delay
        self.quiet = quiet
        self.rows_per_line = rows_per_line
        self.rows = 0
        self.announced = False

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if not self.announced:
            print(STARTED, flush=True)
            self.announced = True
        if self.delay:
            time.sleep(self.delay)
        if not self.quiet:
            if self.rows_per_line is None:
                print(PROGRESS, flush=True)
            else:
                lines, self.rows = divmod(self.rows + batch.num_rows, self.rows_per_line)
                for _ in range(lines):
                    print(PROGRESS, flush=True)
        return [batch]


def stalling(sink_cls: type[Any], record: Path | None = None) -> type[Any]:
    """``sink_cls`` whose first checkpoint ``flush`` after written rows returns (every row acknowledged
    by the server), then prints ``stalled`` and sleeps before the checkpoint is saved: the harness
    kills the run at once, finding rows in the target that no checkpoint covers, which the restart
    must write again (a replay the test can then prove was absorbed). With ``record``, the number of
    rows written so far is appended to that file first (a line per stall)."""

    class Stalling(sink_cls):  # type: ignore[misc,valid-type]
        def write(self, batch: pa.RecordBatch) -> None:
            self.pending = getattr(self, "pending", 0) + batch.num_rows
            super().write(batch)

        def flush(self) -> None:
            super().flush()
            if getattr(self, "pending", 0):
                if record is not None:
                    with record.open("a") as f:
                        f.write(f"{self.pending}\n")
                print(STALLED, flush=True)
                time.sleep(600)  # killed here: the checkpoint of these acknowledged rows never lands

    Stalling.__name__ = Stalling.__qualname__ = f"Stalling{sink_cls.__name__}"
    return Stalling


def run_number(checkpoint_dir: str | os.PathLike[str]) -> int:
    """Count this start in ``<checkpoint_dir>.runs`` and return its number (the first start is 0)."""
    runs = Path(str(checkpoint_dir) + ".runs")
    run_no = len(runs.read_text().splitlines()) if runs.exists() else 0
    with runs.open("a") as f:
        f.write(f"{run_no}\n")
    return run_no


def committed_ids(directory: str | os.PathLike[str]) -> np.ndarray:
    """Every ``id`` in the committed ``part-*`` files of ``directory`` (sorted, duplicates kept)."""
    parts = [
        ipc.open_file(pa.memory_map(str(p))).read_all().column("id").to_numpy()
        for p in sorted(Path(directory).glob("part-*.arrow"))
    ]
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
