"""The checkpoint store: one small JSON document per checkpoint, replaced atomically.

Layout of ``checkpoint_dir``:

* ``checkpoint.json`` - the last complete checkpoint. It is only ever replaced by ``rename`` of a
  fully written and fsynced temporary file, followed by an fsync of the directory, so after a crash
  (even SIGKILL or power loss on a journaling file system) it holds either the previous or the new
  checkpoint, never a mix.
* ``checkpoint.prev.json`` - the checkpoint before it, kept for inspection and manual rollback. The
  runner never restores from it automatically: the sink may already have committed the newer
  checkpoint's output, and replaying the older positions would duplicate it.
* ``.checkpoint-*.tmp`` - a write in progress; left behind only by a crash and deleted by the next
  :meth:`CheckpointStore.save`.
* ``state/<checkpoint id>/<operator index>-<operator name>/<table>.arrow`` - the state of stateful
  operators (windows) as Arrow IPC files, written and fsynced *before* the checkpoint document that
  names them (with their SHA-256) is renamed into place. A checkpoint's state directory is deleted once
  neither ``checkpoint.json`` nor ``checkpoint.prev.json`` names it; directories of checkpoints that
  never completed are deleted by :meth:`CheckpointStore.discard_incomplete_state` on restart.

Every document carries a SHA-256 of its canonical body; :meth:`CheckpointStore.load` verifies it and
raises :class:`~arrowflow.errors.CheckpointError` for a damaged file instead of silently restarting
from scratch (which would re-read everything).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import CheckpointError
from ..source import Position, Split

__all__ = ["FORMAT_VERSION", "Checkpoint", "CheckpointStore"]

#: Version of the on-disk document; a store refuses documents of a newer version. Version 2 added
#: ``watermarks`` and ``operator_state``; a checkpoint without them is still written as version 1.
FORMAT_VERSION = 2

CURRENT = "checkpoint.json"
PREVIOUS = "checkpoint.prev.json"
_TMP_PREFIX = ".checkpoint-"
_TMP_SUFFIX = ".tmp"
STATE_DIR = "state"


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """One durable checkpoint.

    ``positions`` maps ``split_id`` to the position after the last row that was emitted before the
    checkpoint barrier (what ``SplitReader.snapshot()`` returned); reopening a split from it resumes
    exactly after that row. ``finished`` lists bounded splits read to the end: they are not reopened.
    ``splits`` holds every split known at checkpoint time (planned, discovered or restored), so splits
    that a later ``plan()`` no longer returns can still be resumed. ``committables`` are the two-phase
    sink's prepared output covered by this checkpoint (empty for other sinks). ``watermarks`` is the
    reader's event-time state (pipeline watermark, per-split maximum event time); ``operator_state``
    maps an operator's index in the pipeline to the reference of its state files (see
    :meth:`CheckpointStore.write_state`).
    """

    checkpoint_id: int
    splits: Sequence[Split] = ()
    positions: Mapping[str, Position] = field(default_factory=dict)
    finished: Sequence[str] = ()
    committables: Sequence[Any] = ()
    timestamp: float = 0.0
    version: int = FORMAT_VERSION
    watermarks: Mapping[str, Any] = field(default_factory=dict)
    operator_state: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body = {
            "version": self.version,
            "checkpoint_id": self.checkpoint_id,
            "timestamp": self.timestamp,
            "splits": [s.to_json() for s in self.splits],
            "positions": dict(self.positions),
            "finished": list(self.finished),
            "committables": list(self.committables),
        }
        if self.watermarks or self.operator_state:
            body["watermarks"] = dict(self.watermarks)
            body["operator_state"] = dict(self.operator_state)
        elif self.version == FORMAT_VERSION:
            body["version"] = 1  # nothing a version-1 reader would miss: stay readable by it
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        try:
            return cls(
                version=int(data["version"]),
                checkpoint_id=int(data["checkpoint_id"]),
                timestamp=float(data["timestamp"]),
                splits=tuple(Split.from_json(s) for s in data["splits"]),
                positions=dict(data["positions"]),
                finished=tuple(data["finished"]),
                committables=tuple(data["committables"]),
                watermarks=dict(data.get("watermarks") or {}),
                operator_state=dict(data.get("operator_state") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed checkpoint document: {exc!r}") from exc


def _digest(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CheckpointStore:
    """Reads and atomically replaces the checkpoint in one directory (created if missing).

    Not thread-safe: one runner owns a store. ``on_stage`` is a test hook called with ``"temp-written"``
    (temporary file complete and fsynced, not yet renamed) and ``"renamed"`` (new checkpoint in place,
    directory not yet fsynced), so tests can crash the process at exactly those points.
    """

    def __init__(self, directory: str | os.PathLike[str], *, on_stage: Callable[[str], None] | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._on_stage = on_stage

    @property
    def path(self) -> Path:
        return self.directory / CURRENT

    def load(self) -> Checkpoint | None:
        """The last complete checkpoint, or ``None`` if none was ever written.

        Raises :class:`CheckpointError` if ``checkpoint.json`` exists but is damaged or of a newer
        format version.
        """
        return self._read(self.path)

    def load_previous(self) -> Checkpoint | None:
        """The checkpoint before the last one (for inspection), or ``None``."""
        return self._read(self.directory / PREVIOUS)

    def _read(self, path: Path) -> Checkpoint | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or "body" not in doc or "sha256" not in doc:
            raise CheckpointError(f"checkpoint {path} lacks its body or checksum")
        body = doc["body"]
        if _digest(body) != doc["sha256"]:
            raise CheckpointError(f"checkpoint {path} fails its checksum (damaged file)")
        version = body.get("version") if isinstance(body, dict) else None
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {path} has format version {version!r}; this arrowflow reads <= {FORMAT_VERSION}"
            )
        return Checkpoint.from_json(body)

    def save(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` durably and make it the current one.

        On return the new checkpoint survives a crash. If this raises (or the process dies inside it),
        the previous checkpoint is still the current one. Positions and committables must be
        JSON-serializable (a :class:`CheckpointError` says which are not).
        """
        body = checkpoint.to_json()
        if not body["timestamp"]:
            body["timestamp"] = time.time()
        try:
            data = json.dumps({"sha256": _digest(body), "body": body}, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {checkpoint.checkpoint_id} is not JSON-serializable: {exc}"
            ) from exc
        self._remove_stale_temps()
        tmp = self.directory / f"{_TMP_PREFIX}{os.getpid()}-{checkpoint.checkpoint_id}{_TMP_SUFFIX}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._stage("temp-written")
            current = self.path
            if current.exists():
                # The previous checkpoint is kept through a hard link, so ``checkpoint.json`` never
                # disappears even for an instant.
                prev_tmp = self.directory / f"{_TMP_PREFIX}prev-{os.getpid()}{_TMP_SUFFIX}"
                try:
                    os.link(current, prev_tmp)
                    os.replace(prev_tmp, self.directory / PREVIOUS)
                except OSError:
                    prev_tmp.unlink(missing_ok=True)
            os.replace(tmp, current)
            self._stage("renamed")
            _fsync_dir(self.directory)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"cannot write checkpoint to {self.directory}: {exc}") from exc
        self._remove_old_state(checkpoint.checkpoint_id)

    # -- operator state ----------------------------------------------------------------------------

    def write_state(
        self, checkpoint_id: int, index: int, name: str, tables: Mapping[str, pa.Table]
    ) -> dict[str, Any]:
        """Write an operator's state tables as fsynced Arrow IPC files; return the reference to put in
        :attr:`Checkpoint.operator_state` (its directory, operator name, and each file's SHA-256)."""
        import pyarrow.ipc as ipc

        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        rel = f"{STATE_DIR}/{checkpoint_id}/{index}-{safe}"
        directory = self.directory / rel
        if directory.exists():  # left by a run that died before completing this checkpoint id
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        files: dict[str, str] = {}
        try:
            for table_name, table in tables.items():
                sink = pa.BufferOutputStream()
                with ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)
                data = sink.getvalue().to_pybytes()
                path = directory / f"{table_name}.arrow"
                with open(path, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                files[table_name] = hashlib.sha256(data).hexdigest()
            _fsync_dir(directory)
            _fsync_dir(directory.parent)
            _fsync_dir(directory.parent.parent)
        except OSError as exc:
            raise CheckpointError(f"cannot write operator state to {directory}: {exc}") from exc
        return {"dir": rel, "operator": name, "files": files}

    def read_state(self, ref: Mapping[str, Any]) -> dict[str, pa.Table]:
        """The tables of a :meth:`write_state` reference; :class:`CheckpointError` if one is missing
        or damaged."""
        import pyarrow.ipc as ipc

        out: dict[str, pa.Table] = {}
        directory = self.directory / str(ref["dir"])
        for table_name, digest in dict(ref.get("files", {})).items():
            path = directory / f"{table_name}.arrow"
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise CheckpointError(f"operator state {path} is missing: {exc}") from exc
            if hashlib.sha256(data).hexdigest() != digest:
                raise CheckpointError(f"operator state {path} fails its checksum (damaged file)")
            out[table_name] = ipc.open_file(pa.py_buffer(data)).read_all()
        return out

    def _state_ids(self) -> list[int]:
        root = self.directory / STATE_DIR
        if not root.is_dir():
            return []
        return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())

    def _remove_old_state(self, current_id: int) -> None:
        """Delete state of checkpoints older than the current one, except the previous checkpoint's."""
        if not (self.directory / STATE_DIR).is_dir():
            return
        keep = {current_id}
        try:
            prev = self.load_previous()
        except CheckpointError:
            prev = None
        if prev is not None:
            keep.add(prev.checkpoint_id)
        for cid in self._state_ids():
            if cid < current_id and cid not in keep:
                shutil.rmtree(self.directory / STATE_DIR / str(cid), ignore_errors=True)

    def discard_incomplete_state(self, current_id: int) -> None:
        """On restart: delete state written for checkpoints after ``current_id`` (the id of the current
        checkpoint, ``0`` for none): they never completed."""
        for cid in self._state_ids():
            if cid > current_id:
                shutil.rmtree(self.directory / STATE_DIR / str(cid), ignore_errors=True)

    def _remove_stale_temps(self) -> None:
        for p in self.directory.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
            p.unlink(missing_ok=True)

    def _stage(self, stage: str) -> None:
        if self._on_stage is not None:
            self._on_stage(stage)
