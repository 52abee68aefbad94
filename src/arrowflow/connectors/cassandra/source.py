"""CassandraSource: a bounded table read split by token ranges, decoded into Arrow page by page.

Contract:

* ``plan()`` cuts the Murmur3 ring ``(-2**63, 2**63 - 1]`` into ``splits`` contiguous ranges; each
  split is ``{"start": s, "end": e}`` (JSON) and reads ``SELECT cols FROM ks.t WHERE token(pk) > s
  AND token(pk) <= e``, so the splits cover every partition exactly once. The bounds follow the
  ring: from the driver's token metadata (on by default), the ring's token ranges (one per vnode)
  are grouped into ``splits`` runs of whole ranges, or, when ``splits`` is larger, each range is cut
  into parts in proportion to its width, so no split straddles a range boundary. A split whose range
  is one node's then asks only that node's replicas (reads are still sent to any node: the driver
  cannot route a token range). Without token metadata the ring is cut into equal ranges. The split
  id names its bounds, so a checkpoint taken under another ring layout (nodes added) resumes its own
  ranges and the new layout's ranges are read as well: rows may then be read twice, never missed.
  Only the Murmur3 partitioner (Cassandra's default) is supported.
* ``read_batch(max_rows, timeout)`` fetches ONE page of at most ``min(page_size, max_rows)`` rows
  (it blocks for that round trip, bounded by the connection's ``request_timeout``, not by
  ``timeout``) and decodes it column by column into a RecordBatch of ``schema``.
* Position: ``{"start", "end", "paging_state": hex or None, "done": bool}`` (the range and the
  paging state after the last page returned); a reader opened with it resumes inside its range at
  the next page (the server's paging state, valid for the same statement). Like any Cassandra scan
  it is not a snapshot: concurrent writes may or may not be seen.
* ``columns`` projects (default: ``*``, in the server's order); ``schema`` fixes the Arrow types
  (default: from the CQL types: uuid/inet/varint/decimal as strings, sets as lists, timestamp[ms]).
  ``partition_key`` names the partition key columns for ``token()``; by default they are read from
  ``system_schema.columns``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ...config import REQUIRED, resolve_config
from ...errors import ConfigurationError, ConnectorError, SerializationError
from ...source import Position, Source, Split, SplitReader
from ._client import SessionHolder, quote_ident
from ._convert import arrow_type_for, column_from_driver
from .config import CassandraConnection, CassandraSourceConfig, split_table

__all__ = ["CassandraSource", "CassandraSourceConfig", "token_ranges"]

MIN_TOKEN = -(2**63)
MAX_TOKEN = 2**63 - 1


def token_ranges(n: int, ring: Sequence[int] = ()) -> list[tuple[int, int]]:
    """``n`` contiguous ranges ``(start, end]`` covering ``(-2**63, 2**63 - 1]``.

    Without ``ring`` they are of equal width. With ``ring`` (the nodes' tokens) the bounds are ring
    tokens: the ring's ranges ``(MIN, t0], (t0, t1], ..., (t_last, MAX]`` are grouped into ``n`` runs
    of about equally many whole ranges, or, when ``n`` is larger than their number, each range is
    cut into equal parts, their count in proportion to its width (at least one each, ``n`` in all).
    """
    tokens = sorted({int(t) for t in ring if MIN_TOKEN < int(t) < MAX_TOKEN})
    if not tokens:
        width = MAX_TOKEN - MIN_TOKEN
        bounds = [MIN_TOKEN + (width * i) // n for i in range(n)] + [MAX_TOKEN]
        return list(itertools.pairwise(bounds))
    ranges = list(itertools.pairwise([MIN_TOKEN, *tokens, MAX_TOKEN]))
    k = len(ranges)
    if n <= k:
        cuts = [(k * i) // n for i in range(n + 1)]  # strictly increasing since n <= k
        return [(ranges[a][0], ranges[b - 1][1]) for a, b in itertools.pairwise(cuts)]
    # Largest-remainder apportionment of n parts by width, every range at least one part.
    widths = [e - s for s, e in ranges]
    total = sum(widths)
    extra = n - k
    shares = [extra * w / total for w in widths]
    parts = [1 + int(x) for x in shares]
    order = sorted(range(k), key=lambda i: int(shares[i]) - shares[i])  # largest remainder first
    for i in order[: n - sum(parts)]:
        parts[i] += 1
    out: list[tuple[int, int]] = []
    for (s, e), p in zip(ranges, parts, strict=True):
        p = min(p, e - s)  # a range of width w holds at most w non-empty parts
        bounds = [s + ((e - s) * j) // p for j in range(p)] + [e]
        out.extend(itertools.pairwise(bounds))
    return out


class CassandraSource(Source):
    """Reads a Cassandra table with token-range splits (see the module docstring).

    ``table``: ``"ks.table"`` (or ``"table"`` with ``connection.keyspace``); ``connection``: a
    :class:`CassandraConnection` or a dict of its fields; ``session``: an existing driver session
    (not shut down by the source; its row factory may be tuples, named tuples or dicts).
    """

    name = "cassandra"
    replayable = True

    def __init__(
        self,
        table: str = REQUIRED,
        *,
        connection: CassandraConnection | Mapping[str, Any] | None = None,
        session: Any = None,
        columns: Sequence[str] | None = None,
        schema: pa.Schema | None = None,
        partition_key: Sequence[str] | None = None,
        splits: int = 8,
        page_size: int = 5000,
        config: CassandraSourceConfig | None = None,
    ) -> None:
        config = resolve_config(CassandraSourceConfig, config, locals())
        self.config = config
        self.connection = CassandraConnection.coerce(connection)
        self.keyspace, self.table = split_table(config.table, self.connection.keyspace)
        self.columns = config.columns
        self._schema = config.schema
        self.partition_key = config.partition_key
        self.splits = config.splits
        self.page_size = config.page_size
        self._holder = SessionHolder(self.connection, session)
        self._lock = threading.Lock()
        self._statement: Any = None
        self._readers = 0

    def __getstate__(self) -> dict[str, Any]:
        # Picklable whole (Ray read tasks): no lock, prepared statement or reader count travels.
        state = self.__dict__.copy()
        for key in ("_lock", "_statement", "_readers"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._statement = None
        self._readers = 0

    def __repr__(self) -> str:
        return f"CassandraSource({self.keyspace}.{self.table}, splits={self.splits})"

    #: Every split ends (a class constant, not a property).
    bounded = True

    @property
    def schema(self) -> pa.Schema | None:
        return self._schema

    def plan(self) -> list[Split]:
        """``splits`` token ranges that follow the ring (see the module docstring). Connects to read
        the ring; a session the source opened for this alone is shut down again (no reader open)."""
        try:
            ranges = token_ranges(self.splits, self._ring())
        finally:
            with self._lock:
                idle = self._readers == 0
                if idle:
                    self._statement = None
            if idle:
                self._holder.close()
        return [Split(split_id=f"token({s},{e}]", params={"start": s, "end": e}) for s, e in ranges]

    def _ring(self) -> list[int]:
        """The ring's tokens from the driver's token metadata; empty when the driver has none."""
        metadata = getattr(getattr(self._holder.session, "cluster", None), "metadata", None)
        partitioner = getattr(metadata, "partitioner", None)
        if partitioner and not str(partitioner).endswith("Murmur3Partitioner"):
            raise ConfigurationError(
                f"cassandra: the cluster uses {partitioner}; CassandraSource supports only the "
                "Murmur3Partitioner",
                option="table",
            )
        token_map = getattr(metadata, "token_map", None)
        if token_map is None:
            return []
        return [int(t.value) for t in token_map.ring]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        reader = CassandraRangeReader(self, split, position)
        with self._lock:
            self._readers += 1
        return reader

    def _release(self) -> None:
        """A reader closed: the last one shuts down the session the source created (if it did)."""
        with self._lock:
            self._readers -= 1
            if self._readers > 0:
                return
            self._statement = None
        self._holder.close()

    # -- shared by the readers --------------------------------------------------------------------

    def _partition_key(self, session: Any) -> tuple[str, ...]:
        if self.partition_key is None:
            rows = session.execute(
                "SELECT column_name, kind, position FROM system_schema.columns "
                "WHERE keyspace_name = %s AND table_name = %s",
                (self.keyspace, self.table),
            )
            pk = []
            for row in rows:
                r = (
                    row
                    if isinstance(row, Mapping)
                    else dict(zip(("column_name", "kind", "position"), row, strict=True))
                )
                if r["kind"] == "partition_key":
                    pk.append((r["position"], r["column_name"]))
            if not pk:
                raise ConfigurationError(
                    f"table {self.keyspace}.{self.table} not found in system_schema.columns; "
                    "give partition_key",
                    option="partition_key",
                )
            self.partition_key = tuple(c for _, c in sorted(pk))
        return self.partition_key

    def _prepared(self) -> Any:
        with self._lock:
            if self._statement is None:
                session = self._holder.session
                pk = ", ".join(quote_ident(c) for c in self._partition_key(session))
                cols = "*" if self.columns is None else ", ".join(quote_ident(c) for c in self.columns)
                cql = (
                    f"SELECT {cols} FROM {quote_ident(self.keyspace)}.{quote_ident(self.table)} "
                    f"WHERE token({pk}) > ? AND token({pk}) <= ?"
                )
                self._statement = session.prepare(cql)
            return self._statement

    def _schema_for(self, names: Sequence[str], types: Sequence[Any]) -> pa.Schema:
        with self._lock:
            if self._schema is None:
                self._schema = pa.schema([(n, arrow_type_for(t)) for n, t in zip(names, types, strict=True)])
            return self._schema


class CassandraRangeReader(SplitReader):
    """Reads one token range page by page; the position is the paging state after the last page."""

    def __init__(self, source: CassandraSource, split: Split, position: Position = None) -> None:
        super().__init__(split, position)
        self.source = source
        try:
            self.start = int(split.params["start"])
            self.end = int(split.params["end"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"not a token-range split: {split!r}", option="split") from exc
        state = position or {}
        if not isinstance(state, Mapping):
            raise ConfigurationError(f"not a cassandra position: {position!r}", option="position")
        if ("start" in state and state["start"] != self.start) or (
            "end" in state and state["end"] != self.end
        ):
            raise ConfigurationError(
                f"position {position!r} belongs to another token range than ({self.start}, {self.end}]",
                option="position",
            )
        ps = state.get("paging_state")
        self._paging_state: bytes | None = bytes.fromhex(ps) if ps else None
        self._done = bool(state.get("done", False))
        self._closed = False
        #: The page request in flight: (its fetch size, the driver's future, set when answered).
        self._pending: tuple[int, Any, threading.Event] | None = None

    @property
    def finished(self) -> bool:
        return self._done

    def snapshot(self) -> Position:
        return {
            "start": self.start,
            "end": self.end,
            "paging_state": None if self._paging_state is None else self._paging_state.hex(),
            "done": self._done,
        }

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        """The next page of the range (at most ``max_rows`` rows), or ``None`` if it has not come
        within ``timeout``: the page request stays in flight and a later call takes its answer. The
        position moves only when a page is returned."""
        if self._done or self._closed:
            return None
        fetch_size = max(1, min(self.source.page_size, max_rows))
        if self._pending is not None and self._pending[0] > fetch_size:
            # Asked for with a larger page than this call may return: ask again from the same paging
            # state (the answer of the old request is dropped unread).
            self._pending = None
        if self._pending is None:
            self._pending = (fetch_size, *self._request(fetch_size))
        _, future, answered = self._pending
        if not answered.wait(timeout):
            return None
        self._pending = None
        try:
            rs = future.result()
        except Exception as exc:
            raise ConnectorError(
                f"cassandra: range ({self.start}, {self.end}]: {exc}", retryable=True
            ) from exc
        rows = rs.current_rows
        names = list(rs.column_names or [])
        types = list(rs.column_types or [])
        next_state = rs.paging_state
        batch = self._to_batch(rows, names, types) if rows else None
        self._paging_state = next_state
        if next_state is None:
            self._done = True
        return batch

    def _request(self, fetch_size: int) -> tuple[Any, threading.Event]:
        """Send the request for the page after the current paging state; the event is set when its
        answer (rows or an error) has come."""
        src = self.source
        bound = src._prepared().bind((self.start, self.end))
        bound.fetch_size = fetch_size
        try:
            future = src._holder.session.execute_async(bound, paging_state=self._paging_state)
        except Exception as exc:
            raise ConnectorError(
                f"cassandra: range ({self.start}, {self.end}]: {exc}", retryable=True
            ) from exc
        answered = threading.Event()
        future.add_callbacks(lambda _rows: answered.set(), lambda _exc: answered.set())
        return future, answered

    def _to_batch(self, rows: Sequence[Any], names: list[str], types: list[Any]) -> pa.RecordBatch:
        schema = self.source._schema_for(names, types)
        if isinstance(rows[0], Mapping):
            columns: list[Sequence[Any]] = [[r[n] for r in rows] for n in names]
        else:
            columns = list(zip(*rows, strict=True))  # page rows -> columns: one transpose in C
        by_name = dict(zip(names, range(len(names)), strict=True))
        arrays = []
        for field in schema:
            i = by_name.get(field.name)
            if i is None:
                raise SerializationError(f"cassandra: column {field.name!r} is not in the result {names}")
            try:
                arrays.append(column_from_driver(columns[i], types[i], field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                raise SerializationError(
                    f"cassandra: column {field.name!r} does not convert to {field.type}: {exc}"
                ) from exc
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pending = None
            self.source._release()
