"""A local write-ahead journal of the rows of each open Kafka transaction.

librdkafka cannot resume a transaction another producer (a crashed run) opened: ``init_transactions``
aborts it. So that a crash between a durable checkpoint and the commit of its transaction loses
nothing, :class:`~arrowflow.connectors.kafka.transactional.TransactionalKafkaSink` also appends every row it
produces in a transaction to this journal (Arrow IPC streams, one file per schema), fsyncs it before
the checkpoint is saved, and deletes it once the transaction is committed. On recovery the sink replays
the journal of a transaction the broker did not commit.

Files are ``txn-<sequence>-<segment>.arrows`` in one directory owned by one sink. Not thread-safe.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

__all__ = ["TransactionJournal"]

_NAME = re.compile(r"^txn-(\d{20})-(\d{6})\.arrows$")


def _fsync(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TransactionJournal:
    """Rows of transactions by sequence number, durable once :meth:`seal` returns."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq: int | None = None
        self._segment = 0
        self._sink: pa.OSFile | None = None
        self._writer: ipc.RecordBatchStreamWriter | None = None
        self._schema: pa.Schema | None = None
        self._open_paths: list[Path] = []

    def _path(self, seq: int, segment: int) -> Path:
        return self.directory / f"txn-{seq:020d}-{segment:06d}.arrows"

    def append(self, seq: int, batch: pa.RecordBatch) -> None:
        """Append ``batch`` to transaction ``seq`` (buffered; durable only after :meth:`seal`)."""
        if self._seq != seq:
            self._close_writer()
            self._seq, self._segment, self._open_paths = seq, 0, []
        if self._writer is None or self._schema is None or not batch.schema.equals(self._schema):
            self._close_writer()
            path = self._path(seq, self._segment)
            self._segment += 1
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = ipc.new_stream(self._sink, batch.schema)
            self._schema = batch.schema
            self._open_paths.append(path)
        self._writer.write_batch(batch)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._sink is not None:
            self._sink.close()
        self._writer = self._sink = self._schema = None

    def seal(self, seq: int) -> list[str]:
        """Close and fsync the files of transaction ``seq`` (and the directory); return their names."""
        if self._seq == seq:
            self._close_writer()
            for path in self._open_paths:
                _fsync(path)
        _fsync(self.directory, directory=True)
        return [p.name for p in self.files(seq)]

    def files(self, seq: int) -> list[Path]:
        """The journal files of transaction ``seq``, in write order."""
        found = []
        for p in self.directory.iterdir():
            m = _NAME.match(p.name)
            if m and int(m.group(1)) == seq:
                found.append((int(m.group(2)), p))
        return [p for _, p in sorted(found)]

    def sequences(self) -> list[int]:
        """Every transaction sequence with a file in the journal."""
        return sorted({int(m.group(1)) for p in self.directory.iterdir() if (m := _NAME.match(p.name))})

    def read(self, seq: int) -> Iterator[pa.RecordBatch]:
        """The rows journalled for transaction ``seq``, in write order. A file cut short by a crash
        while it was being written raises (only sealed transactions are replayed)."""
        for path in self.files(seq):
            with pa.OSFile(str(path), "rb") as f, ipc.open_stream(f) as reader:
                yield from reader

    def discard(self, seq: int) -> None:
        """Delete the files of transaction ``seq`` (after it committed, or when it will not be replayed)."""
        if self._seq == seq:
            self._close_writer()
            self._seq = None
        for path in self.files(seq):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self._close_writer()
