"""In-memory collections as a bounded source (Flink's ``fromCollection`` / ``fromElements``).

:class:`CollectionSource` accepts:

* materialized data: a ``pyarrow.Table``, a ``RecordBatch``, a list of ``RecordBatch`` es, a list of
  dicts (rows), a dict of lists (columns), a list of tuples together with ``schema``, a pandas or
  polars ``DataFrame`` (recognised by ``type(obj).__module__``, so neither library is imported unless
  the object already is one);
* streamed data: an iterator or generator (or a ``pyarrow.RecordBatchReader``) whose items are either
  chunks (any materialized form above except a dict of lists) or single rows (a ``dict``, or a
  ``tuple`` with ``schema``). Rows are grouped into batches of at most ``max_rows``. A ``dict`` item
  is always one row, never a dict of lists, because the two cannot be told apart reliably;
* a generator *function*: a zero-argument callable returning such an iterator.

Splits and positions:

* Materialized data is split into ``split_count`` contiguous row ranges. A position is the absolute
  row offset of the next row to read, so a reader reopened from a snapshot resumes exactly (the
  source is replayable). Batches are zero-copy slices of the table; a batch that would cross a chunk
  boundary stops at the boundary instead of copying.
* Streamed data is a single split whose position is the number of rows delivered so far. Resuming is
  exact only in two cases: a generator *function* is called again and the first ``position`` rows
  are skipped (so it must produce the same rows each time), and a plain iterator is resumed in the
  same process at or after the position it reached (rows the previous reader had pulled but not yet
  delivered are kept by the source and handed to the next reader). A consumed iterator cannot be
  rewound: asking for an earlier position raises :class:`~arrowflow.errors.ArrowflowError`. A
  streamed source is therefore bounded but not replayable across processes.

``read_batch`` never blocks on materialized data. On streamed data it stops pulling items once
``timeout`` has passed, but one ``next()`` call on the user's iterator cannot be interrupted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import check_positive, check_type
from ..errors import ArrowflowError, ConfigurationError
from ..source import Position, Source, Split, SplitReader

__all__ = ["CollectionSource", "CollectionSourceConfig", "to_table"]


@dataclass(frozen=True, kw_only=True)
class CollectionSourceConfig:
    """Options of :class:`CollectionSource` (the data itself is held by the source, not here)."""

    schema: pa.Schema | None = None
    batch_size: int = 65536
    split_count: int = 1

    def __post_init__(self) -> None:
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        check_type("batch_size", self.batch_size, int)
        check_positive("batch_size", self.batch_size)
        check_type("split_count", self.split_count, int)
        check_positive("split_count", self.split_count)


def _module_of(obj: object) -> str:
    return type(obj).__module__ or ""


def _is_pandas(obj: object) -> bool:
    return _module_of(obj).startswith("pandas") and type(obj).__name__ == "DataFrame"


def _is_polars(obj: object) -> bool:
    return _module_of(obj).startswith("polars") and type(obj).__name__ == "DataFrame"


def _conform(table: pa.Table, schema: pa.Schema | None) -> pa.Table:
    if schema is None or table.schema == schema:
        return table
    try:
        if table.schema.names != schema.names:
            table = table.select(schema.names)
        return table.cast(schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise ConfigurationError(
            f"schema: the data does not fit the given schema ({exc})", option="schema"
        ) from exc


def _rows_to_table(rows: Sequence[Any], schema: pa.Schema | None) -> pa.Table:
    """Rows (all dicts, or all tuples with ``schema``) to a table."""
    if not rows:
        return (schema or pa.schema([])).empty_table()
    first = rows[0]
    if isinstance(first, Mapping):
        return pa.Table.from_pylist(list(rows), schema=schema)
    if isinstance(first, (tuple, list)):
        if schema is None:
            raise ConfigurationError(
                "schema: rows given as tuples need a schema naming their columns", option="schema"
            )
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
        if len(columns) != len(schema):
            raise ConfigurationError(
                f"schema: has {len(schema)} fields but the rows have {len(columns)} values",
                option="schema",
            )
        return pa.Table.from_arrays(
            [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema
        )
    raise ConfigurationError(f"data: rows must be dicts or tuples, got {type(first).__name__}", option="data")


def to_table(data: Any, schema: pa.Schema | None = None) -> pa.Table:
    """Convert one materialized chunk (see the module docstring) to a table conforming to ``schema``."""
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif _is_pandas(data):
        table = pa.Table.from_pandas(data, preserve_index=False)
    elif _is_polars(data):
        table = data.to_arrow()
    elif isinstance(data, Mapping):
        table = pa.table(dict(data))
    elif isinstance(data, (list, tuple)):
        if data and all(isinstance(b, pa.RecordBatch) for b in data):
            table = pa.Table.from_batches(list(data))
        elif data and all(isinstance(b, pa.Table) for b in data):
            table = pa.concat_tables(list(data))
        else:
            return _rows_to_table(data, schema)
    else:
        raise ConfigurationError(f"data: cannot make a table from {type(data).__name__}", option="data")
    return _conform(table, schema)


def _is_stream(data: Any) -> bool:
    return isinstance(data, (Iterator, pa.RecordBatchReader))


def _is_factory(data: Any) -> bool:
    return (
        callable(data)
        and not isinstance(data, (type, pa.Table, pa.RecordBatch, Mapping))
        and not _is_pandas(data)
        and not _is_polars(data)
    )


class _StreamState:
    """What a streamed (iterator) split shares between successive readers in one process.

    ``delivered`` counts rows handed out; ``pending`` holds rows pulled from the iterator but not yet
    delivered, so a reader closed mid-chunk loses nothing.
    """

    def __init__(self, iterator: Iterator[Any] | None) -> None:
        self.iterator = iterator
        self.delivered = 0
        self.pending: pa.Table | None = None
        self.exhausted = False
        self.lock = threading.Lock()


class CollectionSource(Source):
    """A bounded source over in-memory data. See the module docstring for inputs and positions."""

    name = "collection"

    def __init__(
        self,
        data: Any,
        *,
        schema: pa.Schema | None = None,
        batch_size: int = 65536,
        split_count: int = 1,
    ) -> None:
        self.config = CollectionSourceConfig(schema=schema, batch_size=batch_size, split_count=split_count)
        self._table: pa.Table | None = None
        self._factory: Callable[[], Iterable[Any]] | None = None
        self._stream: _StreamState | None = None
        self._stream_schema: pa.Schema | None = schema
        if isinstance(data, pa.RecordBatchReader):
            self._stream = _StreamState(iter(data))
        elif _is_stream(data):
            self._stream = _StreamState(data)
        elif _is_factory(data):
            self._factory = data
        else:
            self._table = to_table(data, schema)

    #: Every split ends (a class constant, not a property).
    bounded = True

    @property
    def replayable(self) -> bool:  # type: ignore[override]
        """True when any position can be re-read (materialized data or a generator function)."""
        return self._stream is None

    @property
    def schema(self) -> pa.Schema | None:
        if self._table is not None:
            return self._table.schema
        return self._stream_schema

    @property
    def table(self) -> pa.Table | None:
        """The materialized data (``None`` for streamed data)."""
        return self._table

    def plan(self) -> list[Split]:
        if self._table is None:
            return [Split(split_id="collection-stream", bounded=True, params={"kind": "stream"})]
        n = self._table.num_rows
        k = self.config.split_count
        bounds = [(i * n) // k for i in range(k + 1)]
        return [
            Split(
                split_id=f"collection-{i}",
                bounded=True,
                params={"kind": "rows", "start": bounds[i], "stop": bounds[i + 1]},
            )
            for i in range(k)
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        kind = split.params.get("kind")
        if kind == "rows":
            if self._table is None:
                raise ArrowflowError(f"split {split.split_id!r} is a row range but this source streams")
            return _TableReader(split, position, self._table, self.config.batch_size)
        if kind == "stream":
            if self._table is not None:
                raise ArrowflowError(f"split {split.split_id!r} is a stream but this source is a table")
            return _StreamReader(split, position, self)
        raise ArrowflowError(f"split {split.split_id!r} was not planned by a CollectionSource")

    # -- streamed data --------------------------------------------------------------------------

    def _stream_state(self, position: int) -> _StreamState:
        """The shared stream state positioned at ``position`` (re-creating a factory's iterator)."""
        if self._factory is not None:
            state = _StreamState(iter(self._factory()))
            self._skip(state, position)
            return state
        assert self._stream is not None
        state = self._stream
        with state.lock:
            if position < state.delivered:
                raise ArrowflowError(
                    f"cannot resume a consumed iterator at row {position}: it already delivered "
                    f"{state.delivered} rows (pass a generator function to make it replayable)"
                )
        self._skip(state, position)
        return state

    def _skip(self, state: _StreamState, position: int) -> None:
        while state.delivered < position:
            chunk = self._pull(state, position - state.delivered, None)
            if chunk is None:
                raise ArrowflowError(
                    f"cannot resume at row {position}: the iterator ended after {state.delivered} rows"
                )
            state.delivered += chunk.num_rows

    def _pull(self, state: _StreamState, max_rows: int, deadline: float | None) -> pa.Table | None:
        """Up to ``max_rows`` rows from ``state`` (pending rows first); ``None`` when exhausted."""
        with state.lock:
            if state.pending is None or state.pending.num_rows == 0:
                state.pending = self._next_chunk(state, max_rows, deadline)
                if state.pending is None:
                    return None
            out = state.pending.slice(0, max_rows)
            state.pending = state.pending.slice(out.num_rows)
            return out

    def _next_chunk(self, state: _StreamState, max_rows: int, deadline: float | None) -> pa.Table | None:
        if state.exhausted or state.iterator is None:
            return None
        rows: list[Any] = []
        schema = self._stream_schema
        while True:
            try:
                item = next(state.iterator)
            except StopIteration:
                state.exhausted = True
                break
            if isinstance(item, (Mapping, tuple)) and not isinstance(item, pa.RecordBatch):
                rows.append(item)
                if len(rows) >= max_rows:
                    break
                # Looking at the clock every 256 rows keeps a fast generator from yielding tiny batches.
                if deadline is not None and len(rows) % 256 == 0 and time.monotonic() >= deadline:
                    break
                continue
            chunk = to_table(item, schema)
            if rows:
                # A chunk after loose rows: deliver the rows first and keep the chunk for later.
                table = self._fix_schema(_rows_to_table(rows, schema))
                return pa.concat_tables([table, _conform(chunk, table.schema)])
            return self._fix_schema(chunk)
        if not rows:
            return None
        return self._fix_schema(_rows_to_table(rows, schema))

    def _fix_schema(self, chunk: pa.Table) -> pa.Table:
        # Later chunks may infer narrower types (a column of nulls); cast them to the first schema.
        if self._stream_schema is None:
            self._stream_schema = chunk.schema
            return chunk
        return _conform(chunk, self._stream_schema)


class _TableReader(SplitReader):
    """Zero-copy slices of one row range of a table. Position: absolute offset of the next row."""

    def __init__(self, split: Split, position: Position, table: pa.Table, batch_size: int) -> None:
        super().__init__(split, position)
        self._table = table
        self._start = int(split.params["start"])
        self._stop = int(split.params["stop"])
        if position is None:
            self._pos = self._start
        else:
            if isinstance(position, bool) or not isinstance(position, int):
                raise ArrowflowError(
                    f"split {split.split_id!r}: position must be a row offset, got {position!r}"
                )
            if not self._start <= position <= self._stop:
                raise ArrowflowError(
                    f"split {split.split_id!r}: position {position} outside rows "
                    f"[{self._start}, {self._stop}]"
                )
            self._pos = position
        self._batch_size = batch_size
        # The table's own record batches (zero-copy views) and their start rows: a batch is sliced
        # from one of them and stops at its end rather than copying across a chunk boundary.
        self._batches = table.to_batches()
        self._starts = np.cumsum([0, *(b.num_rows for b in self._batches)])
        self._closed = False

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed:
            raise ArrowflowError("read_batch() on a closed reader")
        if self._pos >= self._stop:
            return None
        i = int(np.searchsorted(self._starts, self._pos, side="right")) - 1
        offset = self._pos - int(self._starts[i])
        n = min(max_rows, self._batch_size, self._stop - self._pos, self._batches[i].num_rows - offset)
        batch = self._batches[i].slice(offset, n)
        self._pos += n
        return batch

    @property
    def finished(self) -> bool:
        return self._pos >= self._stop

    def snapshot(self) -> Position:
        return self._pos

    def close(self) -> None:
        self._closed = True


class _StreamReader(SplitReader):
    """Rows pulled from an iterator. Position: the number of rows delivered."""

    def __init__(self, split: Split, position: Position, source: CollectionSource) -> None:
        super().__init__(split, position)
        if position is not None and (
            isinstance(position, bool) or not isinstance(position, int) or position < 0
        ):
            raise ArrowflowError(f"split {split.split_id!r}: position must be a row count, got {position!r}")
        self._source = source
        self._state = source._stream_state(position or 0)
        self._finished = False
        self._closed = False

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed:
            raise ArrowflowError("read_batch() on a closed reader")
        if self._finished:
            return None
        max_rows = min(max_rows, self._source.config.batch_size)
        chunk = self._source._pull(self._state, max_rows, time.monotonic() + max(timeout, 0.0))
        if chunk is None:
            self._finished = True
            return None
        self._state.delivered += chunk.num_rows
        batches = chunk.combine_chunks().to_batches()
        if not batches:
            return pa.RecordBatch.from_pylist([], schema=chunk.schema)
        return batches[0]

    @property
    def finished(self) -> bool:
        return self._finished

    def snapshot(self) -> Position:
        return self._state.delivered

    def close(self) -> None:
        self._closed = True
