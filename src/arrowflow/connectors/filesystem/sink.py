"""Files as an exactly-once sink (Flink's FileSink): :class:`FileSink`, :class:`RollingPolicy`.

File life cycle (all names below the sink's base directory, in the bucket/partition directory of the
rows; ``<final>`` = ``<prefix>-<run id>-<n><suffix>``):

1. **in-progress** ``.<final>.inprogress`` - rows are appended here. One open file per directory.
2. **pending** ``.<final>.pending`` - a file closed by rolling (``rolling``: rows, bytes, age,
   inactivity) or by ``prepare_commit()``. Closed, fsynced (local file systems), still hidden.
3. **finished** ``<final>`` - renamed by ``commit()``.

Hidden names start with ``.``, so ``pyarrow.dataset`` (``ignore_prefixes`` ``['.', '_']``),
:class:`~arrowflow.connectors.filesystem.FileSource`, Spark, DuckDB and polars never read a partial or
uncommitted file; and as every committed file is renamed exactly once, never a duplicate.

Two-phase protocol. ``prepare_commit()`` closes every in-progress file (it becomes pending) and returns
committables ``{"pending": rel path, "final": rel path, "rows": n}`` for every file pending since the
last call. The pipeline stores them in its checkpoint, then calls ``commit(committables)``: pending ->
final renames. ``commit`` is idempotent: a committable whose final file exists and whose pending file is
gone counts as done; if both are gone the data is lost and :class:`~arrowflow.errors.ConnectorError` is
raised. ``recover(committables)`` after a restart commits the checkpoint's committables and then deletes
every other in-progress or pending file of this sink's ``prefix`` below the base directory: they belong
to an epoch no checkpoint covers, and the restarted source replays their rows. Consequently one base
directory (and prefix) belongs to one pipeline at a time. ``abort()`` deletes the files of the current
epoch. Part names carry a random run id, so names never collide across restarts.

Without a pipeline: ``flush()`` and ``close()`` publish everything written so far (prepare + commit).

Parallel subtasks (``run(parallelism=N)``): every subtask writes its own files through its own
instance (:meth:`FileSink.for_subtask`: the same options, another run id), so names never collide.
Committables can be committed by any instance, so the pipeline commits every instance's committables
of a checkpoint in one ``commit`` call: all files first, then the partitions, so a ``_SUCCESS`` file
appears only after every subtask's files of that checkpoint are visible. A partition complete in
several subtasks at once is committed once per call; when subtasks see it complete at different
checkpoints the callback runs again (it is at-least-once anyway).

Partitioning and buckets. ``partition_by`` columns become Hive directories ``col=value`` (values
percent-encoded, null as ``__HIVE_DEFAULT_PARTITION__``) and are dropped from the written rows (a
reader restores them from the path). ``bucket`` is a strftime template: over ``bucket_column``
(a timestamp/date column) per row, or over the current UTC time per batch without one. The bucket
directory comes first (``null`` for a null ``bucket_column``), then the partition directories. Rows
are routed with one vectorized ``group_by`` per batch (no Python per row); each group is one ``take``.

Partition commit on watermark (Flink's ``sink.partition-commit``). With ``partition_commit=
PartitionCommit(...)`` the sink tracks, for every directory it wrote to, the end of the event-time
period its rows belong to: per row ``floor(time / every) * every + every`` over ``time_column`` (default
``bucket_column``; a timestamp, date or int64 epoch-milliseconds column), the maximum per directory.
When the pipeline's watermark (:meth:`on_watermark`) has reached ``end + delay`` at a checkpoint, the
directory is *complete*: ``prepare_commit`` adds a partition committable after the file committables,
and ``commit`` - after renaming the files, so a reader never sees the marker before the data - writes
the ``success_file`` (``_SUCCESS``, hidden from readers) and calls ``callback(CommittedPartition)``
(e.g. to register the partition in a catalog). Directories not yet complete travel in every
checkpoint's committables as ``open_partition`` entries, so a restarted sink (``recover``) still commits
them later. ``commit`` is idempotent for the success file; the callback may run again for the same
partition after a crash between the rename and the checkpoint's completion (at-least-once), and it runs
again if rows arrive for a partition already committed (late rows kept on purpose). Without a
pipeline, call ``on_watermark`` yourself before ``flush``/``close``.

``write`` blocks on file-system writes only. A write error propagates; the files of the current epoch
are then garbage that ``abort`` or the next ``recover`` removes. Rolling by age and inactivity is
checked on every ``write`` (there is no timer thread); at the latest, every checkpoint rolls every file.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import REQUIRED, resolve_config
from ...errors import ArrowflowError, ConnectorError
from ...sink import Committable, TwoPhaseSink
from ...time import MIN_WATERMARK, event_time_us, to_datetime
from .config import (
    _INPROGRESS,
    _PENDING,
    CommittedPartition,
    FileSinkConfig,
    PartitionCommit,
    RollingPolicy,
)
from .file_formats import FileWriter
from .paths import decode_hive_segment, encode_hive_segment, is_local, join, relative, resolve

__all__ = ["CommittedPartition", "FileSink", "FileSinkConfig", "PartitionCommit", "RollingPolicy"]

#: The bucket directory of rows whose ``bucket_column`` is null.
_NULL_BUCKET = "null"
#: The constructor's defaults of ``rolling`` and ``writer_options`` (equal to the configuration's).
_ROLLING = RollingPolicy()
_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


class _OpenFile:
    __slots__ = ("final", "inprogress", "last_write", "opened_at", "rel_dir", "schema", "writer")

    def __init__(
        self, rel_dir: str, final: str, inprogress: str, writer: FileWriter, schema: pa.Schema, now: float
    ) -> None:
        self.rel_dir = rel_dir
        self.final = final
        self.inprogress = inprogress
        self.writer = writer
        self.schema = schema
        self.opened_at = now
        self.last_write = now


class FileSink(TwoPhaseSink):
    """Writes Parquet, Arrow IPC, CSV, NDJSON or text files exactly once (see the module docstring)."""

    name = "filesystem"

    def __init__(
        self,
        path: str | os.PathLike[str] = REQUIRED,
        *,
        format: str = "parquet",
        partition_by: str | Sequence[str] | None = None,
        bucket: str | None = None,
        bucket_column: str | None = None,
        rolling: RollingPolicy | None = _ROLLING,
        prefix: str = "part",
        suffix: str | None = None,
        compression: Any = None,
        writer_options: Mapping[str, Any] | None = _NO_OPTIONS,
        filesystem: Any = None,
        fsync: bool = True,
        partition_commit: PartitionCommit | None = None,
        config: FileSinkConfig | None = None,
    ) -> None:
        self.config = config = resolve_config(FileSinkConfig, config, locals())
        path, filesystem, suffix = config.path, config.filesystem, config.suffix
        self.fs, self.base = resolve(path, filesystem)
        self.fs.create_dir(self.base, recursive=True)
        self.suffix = suffix if suffix is not None else self.config.default_suffix
        self.run_id = uuid.uuid4().hex[:16]
        self._counter = 0
        self._open: dict[str, _OpenFile] = {}
        self._pending: list[dict[str, Any]] = []
        self._local = is_local(self.fs)
        self._made_dirs: set[str] = {""}
        self.rows_written = 0
        self.files_committed = 0
        #: Directories written to and not yet committed as partitions -> end of their period (us).
        self._partitions: dict[str, int] = {}
        self._watermark = MIN_WATERMARK
        self.partitions_committed = 0

    def for_subtask(self, index: int, count: int) -> FileSink:
        """A sink with the same options writing its own files (see the module docstring)."""
        return FileSink(config=self.config)  # the configuration is frozen: shared as it is

    # -- writing -----------------------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise ArrowflowError("write() on a closed FileSink")
        if batch.num_rows:
            now = time.monotonic()
            for rel_dir, part, end in self._route(batch):
                if end is not None and end > self._partitions.get(rel_dir, MIN_WATERMARK):
                    self._partitions[rel_dir] = end
                self._append(rel_dir, part, now)
            self.rows_written += batch.num_rows
            self._roll_by_time(now)

    def _route(self, batch: pa.RecordBatch) -> Iterator[tuple[str, pa.RecordBatch, int | None]]:
        """``(relative directory, rows for it, end of its period or None)``: bucket and partition columns
        grouped vectorized (the period's end only with ``partition_commit``)."""
        cfg = self.config
        keys = list(cfg.partition_by or ())
        period = cfg.commit_period
        needed = [
            *keys,
            *([cfg.bucket_column] if cfg.bucket_column else []),
            *([period[0]] if period else []),
        ]
        missing = [k for k in needed if k not in batch.schema.names]
        if missing:
            raise ArrowflowError(
                f"FileSink: batch has no column(s) {missing} (partition_by/bucket_column/partition_commit)"
            )
        ends: np.ndarray | None = None
        if period is not None:
            us = event_time_us(batch.column(period[0]), f"partition_commit time column {period[0]!r}")
            t = us.fill_null(0).to_numpy(zero_copy_only=False)
            ends = np.floor_divide(t, period[1]) * period[1] + period[1]
            if us.null_count:
                # A row without event time belongs to no period: its directory is never complete.
                ends[us.is_null().to_numpy(zero_copy_only=False)] = MIN_WATERMARK
        data = batch.drop_columns(keys) if keys else batch
        fixed_bucket: str | None = None
        columns: dict[str, pa.Array] = {}
        if cfg.bucket is not None:
            if cfg.bucket_column is None:
                fixed_bucket = time.strftime(cfg.bucket, time.gmtime())
            else:
                columns["__bucket"] = _strftime(batch.column(cfg.bucket_column), cfg.bucket)
        for i, k in enumerate(keys):
            columns[f"__k{i}"] = batch.column(k)
        if not columns:
            yield fixed_bucket or "", data, None if ends is None else int(ends.max())
            return
        names = list(columns)
        table = pa.table({**columns, "__row": pa.array(np.arange(batch.num_rows, dtype=np.int64))})
        aggregates: list[tuple[str, str]] = [("__row", "list")]
        if ends is not None:
            table = table.append_column("__end", pa.array(ends))
            aggregates.append(("__end", "max"))
        groups = table.group_by(names, use_threads=False).aggregate(aggregates)
        values = groups.select(names).to_pylist()  # one dict per *group*, not per row
        rows = groups.column("__row_list")
        group_ends = groups.column("__end_max").to_pylist() if ends is not None else None
        for g, group_values in enumerate(values):
            segments = [fixed_bucket or ""]
            if "__bucket" in group_values:
                b = group_values["__bucket"]
                # Not the Hive null marker: a bare segment starting with "_" is hidden from readers.
                segments.append(_NULL_BUCKET if b is None else b)
            segments += [encode_hive_segment(k, group_values[f"__k{i}"]) for i, k in enumerate(keys)]
            rel_dir = join(*segments)
            end = None if group_ends is None else group_ends[g]
            if len(values) == 1:
                yield rel_dir, data, end
            else:
                yield rel_dir, data.take(rows[g].values), end

    def _append(self, rel_dir: str, batch: pa.RecordBatch, now: float) -> None:
        policy = self.config.rolling
        part = self._open.get(rel_dir)
        if part is not None and part.schema != batch.schema:
            self._roll(rel_dir)  # a file holds one schema
            part = None
        while batch.num_rows:
            if part is None:
                part = self._new_file(rel_dir, batch.schema, now)
            take = batch.num_rows
            if policy.max_rows is not None:
                take = min(take, policy.max_rows - part.writer.rows)
            part.writer.write(batch if take == batch.num_rows else batch.slice(0, take))
            part.last_write = now
            batch = batch.slice(take)
            if (
                (policy.max_rows is not None and part.writer.rows >= policy.max_rows)
                or (policy.max_bytes is not None and part.writer.bytes_written >= policy.max_bytes)
                or (policy.max_age_s is not None and now - part.opened_at >= policy.max_age_s)
            ):
                self._roll(rel_dir)
                part = None

    def _roll_by_time(self, now: float) -> None:
        policy = self.config.rolling
        if policy.max_age_s is None and policy.inactivity_s is None:
            return
        for rel_dir, part in list(self._open.items()):
            if (policy.max_age_s is not None and now - part.opened_at >= policy.max_age_s) or (
                policy.inactivity_s is not None and now - part.last_write >= policy.inactivity_s
            ):
                self._roll(rel_dir)

    def _new_file(self, rel_dir: str, schema: pa.Schema, now: float) -> _OpenFile:
        cfg = self.config
        self._counter += 1
        name = f"{cfg.prefix}-{self.run_id}-{self._counter:06d}{self.suffix}"
        final = join(rel_dir, name)
        inprogress = join(rel_dir, f".{name}{_INPROGRESS}")
        if rel_dir not in self._made_dirs:
            self.fs.create_dir(join(self.base, rel_dir), recursive=True)
            self._made_dirs.add(rel_dir)
        text_compression = cfg.compression if cfg.file_format.name in ("csv", "ndjson", "text") else None
        stream = self.fs.open_output_stream(
            join(self.base, inprogress), compression=text_compression, buffer_size=1 << 20
        )
        writer = cfg.file_format.open_writer(
            stream,
            schema,
            compression=None if text_compression is not None else cfg.compression,
            options=cfg.writer_options,
        )
        part = _OpenFile(rel_dir, final, inprogress, writer, schema, now)
        self._open[rel_dir] = part
        return part

    def _roll(self, rel_dir: str) -> None:
        """Close the directory's in-progress file; it becomes pending (hidden) until committed."""
        part = self._open.pop(rel_dir)
        part.writer.close()
        src = join(self.base, part.inprogress)
        pending = part.inprogress[: -len(_INPROGRESS)] + _PENDING
        if self._local and self.config.fsync:
            _fsync(src)
        self.fs.move(src, join(self.base, pending))
        self._pending.append({"pending": pending, "final": part.final, "rows": part.writer.rows})

    # -- two-phase commit --------------------------------------------------------------------------

    def on_watermark(self, watermark: int) -> None:
        """Event time reached ``watermark``: partitions ending by then are committed at the next
        checkpoint (see the module docstring)."""
        if watermark > self._watermark:
            self._watermark = watermark

    def prepare_commit(self) -> list[Committable]:
        """Close every in-progress file; return every pending file since the last call, then the
        partitions complete at the current watermark and the ones still open."""
        if self._closed:
            return []
        for rel_dir in list(self._open):
            self._roll(rel_dir)
        out, self._pending = self._pending, []
        self._sync_dirs(c["pending"] for c in out)
        return out + self._partition_committables()

    def _partition_committables(self) -> list[Committable]:
        period = self.config.commit_period
        if period is None or not self._partitions:
            return []
        delay = period[2]
        done = [(d, e) for d, e in self._partitions.items() if self._watermark - delay >= e]
        for d, _ in done:
            del self._partitions[d]
        return [{"partition": d, "end": e} for d, e in sorted(done)] + [
            {"open_partition": d, "end": e} for d, e in sorted(self._partitions.items())
        ]

    def commit(self, committables: Sequence[Committable]) -> None:
        """Rename pending files to their final names, then commit complete partitions. Idempotent (see
        the module docstring)."""
        import pyarrow.fs as pafs

        if not committables:
            return
        files = [c for c in committables if "pending" in c]
        for c in files:
            pending, final = join(self.base, c["pending"]), join(self.base, c["final"])
            pinfo, finfo = self.fs.get_file_info([pending, final])
            if pinfo.type == pafs.FileType.File:
                self.fs.move(pending, final)
                self.files_committed += 1
            elif finfo.type != pafs.FileType.File:
                raise ConnectorError(
                    f"FileSink: cannot commit {final!r}: neither it nor its pending file {pending!r} exists"
                )
        self._sync_dirs(c["final"] for c in files)
        done: set[str] = set()
        for c in committables:
            # Several parallel subtasks may report the same partition complete in one checkpoint.
            if "partition" in c and c["partition"] not in done:
                done.add(c["partition"])
                self._commit_partition(str(c["partition"]), int(c["end"]))

    def _commit_partition(self, rel_dir: str, end: int) -> None:
        policy = self.config.partition_commit
        assert policy is not None
        path = join(self.base, rel_dir) if rel_dir else self.base
        if policy.success_file is not None:
            marker = join(path, policy.success_file)
            with self.fs.open_output_stream(marker):
                pass
            if self._local and self.config.fsync:
                _fsync(marker)
                _fsync(path)
        if policy.callback is not None:
            values = {}
            for segment in rel_dir.split("/"):
                kv = decode_hive_segment(segment)
                if kv is not None:
                    values[kv[0]] = kv[1]
            policy.callback(CommittedPartition(path, rel_dir, to_datetime(end), values, self.fs))
        self.partitions_committed += 1

    def recover(self, committables: Sequence[Committable]) -> None:
        """Commit the checkpoint's files, then delete this prefix's other in-progress/pending files."""
        import pyarrow.fs as pafs

        self.commit(committables)
        for c in committables:
            if "open_partition" in c:
                d, e = str(c["open_partition"]), int(c["end"])
                self._partitions[d] = max(e, self._partitions.get(d, MIN_WATERMARK))
        keep = {c["pending"] for c in committables if "pending" in c}
        keep |= {p.inprogress for p in self._open.values()}
        keep |= {c["pending"] for c in self._pending}
        if self.fs.get_file_info(self.base).type != pafs.FileType.Directory:
            return
        marker = f".{self.config.prefix}-"
        for info in self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True)):
            if info.type != pafs.FileType.File:
                continue
            name = info.base_name
            if name.startswith(marker) and name.endswith((_INPROGRESS, _PENDING)):
                rel = relative(info.path, self.base)
                if rel not in keep:
                    self.fs.delete_file(info.path)

    def abort(self) -> None:
        """Discard the current epoch: open and rolled-but-unprepared files are deleted."""
        doomed = []
        for part in self._open.values():
            try:
                part.writer.close()
            except Exception:
                pass
            doomed.append(part.inprogress)
        doomed += [c["pending"] for c in self._pending]
        self._open.clear()
        self._pending = []
        for rel in doomed:
            try:
                self.fs.delete_file(join(self.base, rel))
            except (FileNotFoundError, OSError):
                pass

    def flush(self) -> None:
        """Without a pipeline: publish everything written so far (prepare + commit)."""
        if not self._closed:
            self.commit(self.prepare_commit())

    def _close(self) -> None:
        if self._open or self._pending:  # close() failed half-way: leave nothing open
            self.abort()

    def metrics(self) -> dict[str, int]:
        return {
            "rows_written": self.rows_written,
            "files_committed": self.files_committed,
            "files_open": len(self._open),
            "partitions_committed": self.partitions_committed,
            "partitions_open": len(self._partitions),
        }

    # -- durability --------------------------------------------------------------------------------

    def _sync_dirs(self, rel_paths: Iterator[str] | Any) -> None:
        if not (self._local and self.config.fsync):
            return
        for d in {os.path.dirname(join(self.base, p)) for p in rel_paths}:
            _fsync(d)


def _fsync(path: str) -> None:
    """fsync a local file or directory (any descriptor of the inode flushes its dirty pages)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _strftime(arr: pa.Array, template: str) -> pa.Array:
    import pyarrow.compute as pc

    if pa.types.is_date(arr.type):
        arr = arr.cast(pa.timestamp("s"))
    if not pa.types.is_timestamp(arr.type):
        raise ArrowflowError(f"FileSink: bucket_column must be a timestamp or date column, got {arr.type}")
    return pc.strftime(arr, format=template)
