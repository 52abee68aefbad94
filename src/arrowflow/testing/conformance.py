"""The conformance suite every connector passes (the analogue of Flink's connector testing framework).

A connector's test module subclasses :class:`SourceConformance` and/or :class:`SinkConformance` with a
class whose name starts with ``Test`` and overrides a few hooks; pytest then runs every inherited
``test_*`` method against the connector::

    class TestMySource(SourceConformance):
        replayable = True

        def make_source(self, data: pa.Table) -> Source:
            load_into_my_server(data)
            return MySource(...)

The base classes are plain classes (no ``Test`` prefix), so pytest collects them only through a
subclass. pytest makes a new instance per test, so a subclass may keep per-test state on ``self``;
callbacks registered with :meth:`ConformanceBase.add_cleanup` run after each test (stop servers,
drop tables). Data is deterministic (:func:`make_table`), so a failure reproduces.

Nothing here times a connector: the only clock checks bound how long ``read_batch`` may block, with
generous slack (``timeout_slack``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ..error_policy import ErrorPolicy
from ..errors import ArrowflowError
from ..sink import Sink
from ..source import Source, Split, SplitReader

__all__ = [
    "CollectingServer",
    "ConformanceBase",
    "SinkConformance",
    "SourceConformance",
    "TcpServer",
    "assert_same_rows",
    "make_table",
    "row_counter",
    "serve_bytes",
]


# -- deterministic data -----------------------------------------------------------------------------

_WORDS = ("alpha", "beta", "gamma", 'quote"d', "comma,separated", "ünïcödé", "tab\there", "δέλτα", "", "x")


def make_table(num_rows: int = 1000, *, seed: int = 0) -> pa.Table:
    """A deterministic table with a unique ``id`` and the usual column types.

    Columns: ``id`` int64 (0..n-1, unique, so rows are distinct), ``value`` float64 (three decimals,
    so every text format round-trips it), ``name`` string (with quotes, commas, tabs and non-ASCII),
    ``flag`` bool, ``count`` int32 with nulls, ``ts`` timestamp[us].
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(num_rows, dtype=np.int64)
    value = np.round(rng.normal(0.0, 1000.0, num_rows), 3)
    words = np.array(_WORDS, dtype=object)[rng.integers(0, len(_WORDS), num_rows)]
    names = [f"{w}-{i}" for w, i in zip(words, ids, strict=True)]
    flag = rng.integers(0, 2, num_rows).astype(bool)
    count = rng.integers(-(2**31), 2**31 - 1, num_rows).astype(np.int32)
    count_mask = rng.random(num_rows) < 0.1
    ts = (np.int64(1_700_000_000_000_000) + rng.integers(0, 10**12, num_rows)).astype("datetime64[us]")
    return pa.table(
        {
            "id": pa.array(ids),
            "value": pa.array(value),
            "name": pa.array(names, pa.string()),
            "flag": pa.array(flag),
            "count": pa.array(count, mask=count_mask),
            "ts": pa.array(ts, pa.timestamp("us")),
        }
    )


# -- comparing tables -------------------------------------------------------------------------------


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def _normalize(actual: pa.Table, like: pa.Schema) -> pa.Table:
    """``actual`` with ``like`` 's columns in its order, cast to its types where they differ."""
    missing = [n for n in like.names if n not in actual.schema.names]
    assert not missing, f"columns {missing} missing; got {actual.schema.names}"
    actual = actual.select(like.names)
    if actual.schema != like:
        actual = actual.cast(like)
    return actual


def row_counter(table: pa.Table) -> Counter[tuple[Any, ...]]:
    """The multiset of rows of ``table`` (test helper: builds Python objects per row)."""
    return Counter(_hashable(tuple(row.values())) for row in table.to_pylist())


def assert_same_rows(actual: pa.Table, expected: pa.Table, *, ordered: bool = False) -> None:
    """Assert ``actual`` holds exactly the rows of ``expected`` (as a multiset, or in order).

    ``actual`` is first cast to ``expected`` 's schema (a sink's read-back may widen types).
    """
    actual = _normalize(actual, expected.schema)
    if ordered:
        a, e = actual.to_pylist(), expected.to_pylist()
        assert len(a) == len(e), f"{len(a)} rows, expected {len(e)}"
        for i, (x, y) in enumerate(zip(a, e, strict=True)):
            assert x == y, f"row {i} differs: {x!r} != {y!r}"
        return
    got, want = row_counter(actual), row_counter(expected)
    if got != want:
        extra = got - want
        lost = want - got
        raise AssertionError(
            f"{actual.num_rows} rows, expected {expected.num_rows}: "
            f"{sum(lost.values())} missing (e.g. {list(lost)[:3]}), "
            f"{sum(extra.values())} unexpected or duplicated (e.g. {list(extra)[:3]})"
        )


def _as_table(batches: Sequence[pa.RecordBatch], schema: pa.Schema | None) -> pa.Table:
    batches = [b for b in batches if b.num_rows]
    if not batches:
        return (schema or pa.schema([])).empty_table()
    return pa.Table.from_batches(batches)


class ConformanceBase:
    """Per-test cleanup shared by both suites."""

    def add_cleanup(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` after the current test (last registered, first run)."""
        self.__dict__.setdefault("_cleanups", []).append(fn)

    @pytest.fixture(autouse=True)
    def _conformance_cleanup(self) -> Iterator[None]:
        yield
        errors: list[BaseException] = []
        for fn in reversed(self.__dict__.get("_cleanups", [])):
            try:
                fn()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


# -- sources ----------------------------------------------------------------------------------------


class SourceConformance(ConformanceBase):
    """Tests every :class:`~arrowflow.source.Source` must pass. Override the hooks below.

    Required: :meth:`make_source`. Class attributes describe the source: ``replayable`` (reopening a
    split from a snapshot re-reads exactly the remaining rows) and ``ordered_per_split`` (each split
    yields its rows in the order of :meth:`expected_table`).
    """

    replayable: bool = True
    #: What ``Source.replayable`` (read by the exactly-once guard) must say; ``None``: ``replayable``.
    #: It differs only for a queue that drops redeliveries by id (RabbitMQ ``dedup``): not re-read
    #: from a position within a process, yet a restart gets exactly the rows not yet checkpointed.
    declared_replayable: bool | None = None
    ordered_per_split: bool = True
    num_rows: int = 1000
    max_rows: int = 97  # odd, so batches straddle whatever boundaries the source has
    read_timeout: float = 0.5
    timeout_slack: float = 2.0
    drain_timeout: float = 60.0
    #: For unbounded sources: how long to keep reading after every expected row arrived, to catch
    #: duplicates.
    settle_time: float = 0.3

    # -- hooks ---------------------------------------------------------------------------------

    def make_data(self) -> pa.Table:
        """The rows the source under test will hold."""
        return make_table(self.num_rows)

    def make_source(self, data: pa.Table) -> Source:
        """A fresh source holding exactly ``data`` (load it into a real server first if needed)."""
        raise NotImplementedError

    def expected_table(self, data: pa.Table) -> pa.Table:
        """What reading the source back should give (the data itself, unless the source transforms it)."""
        return data

    # -- helpers -------------------------------------------------------------------------------

    def _drain(
        self,
        readers: Sequence[SplitReader],
        expected_rows: int | None,
        *,
        max_rows: int | None = None,
        on_batch: Callable[[SplitReader, pa.RecordBatch], None] | None = None,
    ) -> dict[int, list[pa.RecordBatch]]:
        """Read every reader to its end (bounded) or until ``expected_rows`` arrived (unbounded)."""
        max_rows = max_rows or self.max_rows
        out: dict[int, list[pa.RecordBatch]] = {i: [] for i in range(len(readers))}
        deadline = time.monotonic() + self.drain_timeout
        total = 0
        settle_until: float | None = None
        while True:
            active = [i for i, r in enumerate(readers) if not (r.split.bounded and r.finished)]
            if not active:
                return out
            now = time.monotonic()
            assert now < deadline, (
                f"reading did not finish within {self.drain_timeout}s ({total} rows read, "
                f"expected {expected_rows})"
            )
            unbounded = [i for i in active if not readers[i].split.bounded]
            all_unbounded = bool(unbounded) and len(unbounded) == len(active)
            if all_unbounded and expected_rows is not None and total >= expected_rows:
                settle_until = settle_until or now + self.settle_time
                if now >= settle_until:
                    return out
            for i in active:
                batch = readers[i].read_batch(max_rows, self.read_timeout / len(active))
                if batch is not None and batch.num_rows:
                    assert batch.num_rows <= max_rows, f"{batch.num_rows} rows > max_rows={max_rows}"
                    out[i].append(batch)
                    total += batch.num_rows
                    if on_batch is not None:
                        on_batch(readers[i], batch)

    def _read_source(self, source: Source) -> tuple[list[Split], dict[int, list[pa.RecordBatch]]]:
        splits = source.plan()
        readers = [source.open(s) for s in splits]
        try:
            return splits, self._drain(readers, self._expected_rows)
        finally:
            for r in readers:
                r.close()

    @property
    def _expected_rows(self) -> int:
        return self.expected_table(self.make_data()).num_rows

    def _check_split_order(self, per_split: Sequence[pa.Table], expected: pa.Table) -> None:
        keys = [_hashable(tuple(r.values())) for r in expected.to_pylist()]
        counts = Counter(keys)
        # Only rows that occur once in ``expected`` have an unambiguous place to check.
        index = {row: i for i, row in enumerate(keys) if counts[row] == 1}
        for n, part in enumerate(per_split):
            part = _normalize(part, expected.schema)
            positions = [index.get(_hashable(tuple(r.values())), -1) for r in part.to_pylist()]
            positions = [p for p in positions if p >= 0]
            assert positions == sorted(positions), f"split {n} returned its rows out of order"

    # -- tests ---------------------------------------------------------------------------------

    def test_plan_is_serializable(self) -> None:
        source = self.make_source(self.make_data())
        splits = source.plan()
        assert splits, "plan() returned no splits"
        ids = [s.split_id for s in splits]
        assert len(set(ids)) == len(ids), f"split ids are not unique: {ids}"
        for split in splits:
            text = json.dumps(split.to_json())
            again = Split.from_json(json.loads(text))
            assert again == split
            assert again.to_json() == split.to_json()
            assert isinstance(split.bounded, bool)
            assert split.bounded == source.bounded or not source.bounded

    def test_reads_everything(self) -> None:
        data = self.make_data()
        expected = self.expected_table(data)
        _, per_split = self._read_source(self.make_source(data))
        tables = [_as_table(b, expected.schema) for b in per_split.values()]
        everything = pa.concat_tables([_normalize(t, expected.schema) for t in tables])
        assert_same_rows(everything, expected)
        if self.ordered_per_split:
            self._check_split_order(tables, expected)

    def test_read_batch_respects_max_rows_and_timeout(self) -> None:
        data = self.make_data()
        source = self.make_source(data)
        readers = [source.open(s) for s in source.plan()]
        timeout = 0.2
        try:
            for max_rows in (1, 7):
                for reader in readers:
                    for _ in range(5):
                        started = time.monotonic()
                        batch = reader.read_batch(max_rows, timeout)
                        elapsed = time.monotonic() - started
                        assert elapsed <= timeout + self.timeout_slack, (
                            f"read_batch blocked {elapsed:.2f}s with timeout={timeout}"
                        )
                        assert batch is None or isinstance(batch, pa.RecordBatch)
                        if batch is not None:
                            assert batch.num_rows <= max_rows
            rest = self._drain(readers, None if source.bounded else 0)
            for reader in readers:
                if reader.split.bounded:
                    assert reader.finished
                    started = time.monotonic()
                    after = reader.read_batch(self.max_rows, timeout)
                    assert time.monotonic() - started <= timeout + self.timeout_slack
                    assert after is None or after.num_rows == 0, "a finished split returned rows"
            assert all(b.num_rows <= self.max_rows for bs in rest.values() for b in bs)
        finally:
            for r in readers:
                r.close()

    def test_snapshots_are_json(self) -> None:
        source = self.make_source(self.make_data())
        readers = [source.open(s) for s in source.plan()]
        seen: list[Any] = []

        def check(reader: SplitReader, batch: pa.RecordBatch) -> None:
            snap = reader.snapshot()
            assert json.loads(json.dumps(snap)) == snap, f"snapshot {snap!r} does not survive JSON"
            seen.append(snap)

        try:
            for r in readers:
                snap = r.snapshot()
                assert json.loads(json.dumps(snap)) == snap, (
                    f"initial snapshot {snap!r} does not survive JSON"
                )
            self._drain(readers, self._expected_rows, on_batch=check)
        finally:
            for r in readers:
                r.close()
        assert seen, "no batch was read"

    def test_resume_from_snapshot(self) -> None:
        data = self.make_data()
        expected = self.expected_table(data)
        source = self.make_source(data)
        splits = source.plan()
        readers = [source.open(s) for s in splits]
        first: list[pa.RecordBatch] = []
        snapshots: dict[str, Any] = {}
        try:
            for split, reader in zip(splits, readers, strict=True):
                deadline = time.monotonic() + self.drain_timeout
                got = 0
                # Read about a third of the split's share (or until it ends).
                target = max(1, expected.num_rows // (3 * len(splits)))
                while got < target and not (split.bounded and reader.finished):
                    assert time.monotonic() < deadline, "no rows arrived"
                    batch = reader.read_batch(self.max_rows, self.read_timeout)
                    if batch is not None and batch.num_rows:
                        first.append(batch)
                        got += batch.num_rows
                snapshots[split.split_id] = json.loads(json.dumps(reader.snapshot()))
        finally:
            for r in readers:
                r.close()
        assert first, "nothing was read before the snapshot"

        # A restart: a new source instance, splits coming back from their JSON form.
        restarted = self.make_source(data)
        resumed = [
            restarted.open(Split.from_json(json.loads(s.dumps())), snapshots[s.split_id]) for s in splits
        ]
        try:
            for split, reader in zip(splits, resumed, strict=True):
                assert json.loads(json.dumps(reader.snapshot())) == snapshots[split.split_id], (
                    "a reader opened at a position must report that position before reading"
                )
            if not self.replayable:
                return
            remaining = expected.num_rows - sum(b.num_rows for b in first)
            rest = self._drain(resumed, remaining)
        finally:
            for r in resumed:
                r.close()
        batches = first + [b for bs in rest.values() for b in bs]
        everything = pa.concat_tables(
            [_normalize(pa.Table.from_batches([b]), expected.schema) for b in batches]
        )
        assert_same_rows(everything, expected)

    def test_declares_replayability(self) -> None:
        expected = self.replayable if self.declared_replayable is None else self.declared_replayable
        source = self.make_source(self.make_data())
        assert source.replayable is expected, (
            f"{type(source).__name__}.replayable is {source.replayable}, the suite says {expected}"
        )

    def test_reopen_split_from_json(self) -> None:
        data = self.make_data()
        expected = self.expected_table(data)
        source = self.make_source(data)
        splits = [Split.from_json(json.loads(s.dumps())) for s in source.plan()]
        readers = [source.open(s) for s in splits]
        try:
            per_split = self._drain(readers, expected.num_rows)
        finally:
            for r in readers:
                r.close()
        batches = [b for bs in per_split.values() for b in bs]
        assert_same_rows(_as_table(batches, expected.schema), expected)

    def test_close_is_idempotent(self) -> None:
        source = self.make_source(self.make_data())
        for split in source.plan():
            reader = source.open(split)
            reader.read_batch(self.max_rows, self.read_timeout)
            position = reader.snapshot()
            reader.close()
            reader.close()
            # Reopening from the last snapshot still works after the close, and so does closing twice.
            with source.open(split, position) as again:
                assert isinstance(again, SplitReader)
                assert again.snapshot() == position
            again.close()

    def test_bounded_source_finishes(self) -> None:
        source = self.make_source(self.make_data())
        splits = source.plan()
        assert all(s.bounded for s in splits) == source.bounded
        readers = [source.open(s) for s in splits]
        try:
            self._drain(readers, self._expected_rows)
            for reader in readers:
                assert reader.finished == reader.split.bounded
        finally:
            for r in readers:
                r.close()

    def test_read_all_and_batches(self) -> None:
        data = self.make_data()
        expected = self.expected_table(data)
        source = self.make_source(data)
        batches = list(
            source.batches(
                max_rows=self.max_rows,
                timeout=self.read_timeout,
                idle_timeout=None if source.bounded else 2.0,
            )
        )
        assert all(0 < b.num_rows <= self.max_rows for b in batches)
        assert_same_rows(_as_table(batches, expected.schema), expected)
        if source.bounded:
            assert_same_rows(self.make_source(data).read_all(max_rows=self.max_rows), expected)
        else:
            with pytest.raises(ArrowflowError):
                self.make_source(data).read_all()


# -- sinks ------------------------------------------------------------------------------------------


class SinkConformance(ConformanceBase):
    """Tests every :class:`~arrowflow.sink.Sink` must pass. Override the hooks below.

    Required: :meth:`make_sink` and :meth:`read_back` (what the real target now holds, written by the
    sink most recently made in this test). Sinks with an error policy supply :meth:`bad_batch`: a
    batch none of whose rows can be delivered. Sinks without one set ``has_error_policy = False``;
    the suite then checks that they accept any batch instead.
    """

    has_error_policy: bool = True
    num_rows: int = 1000
    batch_rows: int = 128
    #: How long :meth:`read_back` may lag behind ``flush`` (eventually consistent targets).
    read_back_timeout: float = 10.0
    ordered: bool = False

    # -- hooks ---------------------------------------------------------------------------------

    def make_data(self) -> pa.Table:
        return make_table(self.num_rows)

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        """A fresh sink writing to a fresh (empty) target."""
        raise NotImplementedError

    def read_back(self) -> pa.Table:
        """Everything the target of the most recently made sink holds."""
        raise NotImplementedError

    def expected_read_back(self, data: pa.Table) -> pa.Table:
        """What :meth:`read_back` should return after ``data`` was written."""
        return data

    def bad_batch(self) -> pa.RecordBatch:
        """A batch none of whose rows the sink can deliver (needed when ``has_error_policy``)."""
        raise NotImplementedError

    def awkward_batch(self) -> pa.RecordBatch:
        """For sinks without an error policy: a batch with nulls and nested types they must accept."""
        return pa.record_batch(
            {
                "l": pa.array([[1, 2], None, []], pa.list_(pa.int64())),
                "s": pa.array([{"a": 1}, None, {"a": None}], pa.struct([("a", pa.int64())])),
                "n": pa.nulls(3),
            }
        )

    def error_policy_of(self, sink: Sink) -> ErrorPolicy:
        return sink.error_policy  # type: ignore[attr-defined, no-any-return]

    def check_written(self, sink: Sink, expected: pa.Table) -> None:
        """Assert the target holds exactly ``expected`` (polling up to ``read_back_timeout``)."""
        deadline = time.monotonic() + self.read_back_timeout
        while True:
            try:
                assert_same_rows(self.read_back(), expected, ordered=self.ordered)
                return
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    # -- helpers -------------------------------------------------------------------------------

    def _batches(self, table: pa.Table) -> list[pa.RecordBatch]:
        return table.to_batches(max_chunksize=self.batch_rows)

    # -- tests ---------------------------------------------------------------------------------

    def test_written_rows_are_read_back(self) -> None:
        data = self.make_data()
        sink = self.make_sink()
        try:
            for batch in self._batches(data):
                sink.write(batch)
            sink.flush()
            self.check_written(sink, self.expected_read_back(data))
        finally:
            sink.close()

    def test_empty_batches_are_accepted(self) -> None:
        data = self.make_data()
        empty = data.schema.empty_table().to_batches() or [pa.RecordBatch.from_pylist([], schema=data.schema)]
        sink = self.make_sink()
        try:
            sink.write(empty[0])
            batches = self._batches(data)
            for batch in batches[: len(batches) // 2]:
                sink.write(batch)
            sink.write(data.slice(0, 0).to_batches()[0] if data.slice(0, 0).to_batches() else empty[0])
            for batch in batches[len(batches) // 2 :]:
                sink.write(batch)
            sink.write(empty[0])
            sink.flush()
            self.check_written(sink, self.expected_read_back(data))
        finally:
            sink.close()

    def test_close_flushes(self) -> None:
        data = self.make_data()
        sink = self.make_sink()
        sink.write_table(data)
        sink.close()
        assert sink.closed
        self.check_written(sink, self.expected_read_back(data))

    def test_flush_then_more_writes(self) -> None:
        data = self.make_data()
        half = data.num_rows // 2
        sink = self.make_sink()
        try:
            sink.write_table(data.slice(0, half))
            sink.flush()
            self.check_written(sink, self.expected_read_back(data.slice(0, half)))
            sink.write_table(data.slice(half))
            sink.flush()
            self.check_written(sink, self.expected_read_back(data))
        finally:
            sink.close()

    def test_close_is_idempotent(self) -> None:
        sink = self.make_sink()
        sink.write(self._batches(self.make_data())[0])
        sink.close()
        sink.close()
        assert sink.closed

    def test_write_after_close_raises(self) -> None:
        data = self.make_data()
        sink = self.make_sink()
        sink.close()
        with pytest.raises(ArrowflowError):
            sink.write(self._batches(data)[0])

    def test_bad_input_follows_error_policy(self) -> None:
        from ..connectors.memory import MemorySink

        data = self.make_data()
        good = self._batches(data)
        if not self.has_error_policy:
            awkward = self.awkward_batch()
            sink = self.make_sink()
            sink.write(awkward)
            sink.close()
            assert sink.closed
            self.check_written(sink, self.expected_read_back(pa.Table.from_batches([awkward])))
            return

        bad = self.bad_batch()
        assert bad.num_rows > 0, "bad_batch() must have rows"
        expected = self.expected_read_back(pa.Table.from_batches(good))

        # fail: the error surfaces from write or flush as an ArrowflowError.
        sink = self.make_sink(error_policy="fail")
        with pytest.raises(ArrowflowError):
            sink.write(bad)
            sink.flush()
        try:
            sink.close()
        except ArrowflowError:
            pass  # an asynchronous sink may report the failure again on close

        # skip: good rows around the bad batch still arrive; the bad rows are counted.
        sink = self.make_sink(error_policy="skip")
        half = len(good) // 2
        for batch in good[:half]:
            sink.write(batch)
        sink.write(bad)
        for batch in good[half:]:
            sink.write(batch)
        sink.flush()
        self.check_written(sink, expected)
        assert self.error_policy_of(sink).skipped == bad.num_rows
        sink.close()

        # dead letter: the bad rows arrive in the dead-letter sink with an error column.
        dead = MemorySink()
        sink = self.make_sink(error_policy=dead)
        sink.write(good[0])
        sink.write(bad)
        sink.close()
        self.check_written(sink, self.expected_read_back(pa.Table.from_batches([good[0]])))
        letters = dead.table()
        assert letters.num_rows == bad.num_rows
        assert "error" in letters.schema.names
        assert all(isinstance(e, str) and e for e in letters.column("error").to_pylist())


# -- loopback TCP servers for socket-style connectors -----------------------------------------------


class TcpServer:
    """A loopback TCP server running ``handler(conn)`` in a thread per connection.

    ``port=0`` picks a free port; pass the old ``port`` to restart a server in the same place.
    :meth:`stop` closes the listener and every open connection and joins the threads. Exceptions a
    handler raises (other than the ``OSError`` of a connection being closed) are kept in ``errors``.
    """

    def __init__(self, handler: Callable[[socket.socket], None], *, port: int = 0) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self.errors: list[BaseException] = []
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._accepter = threading.Thread(
            target=self._accept_loop, name=f"tcp-server-{self.port}", daemon=True
        )
        self._accepter.start()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                if self._stop.is_set():
                    conn.close()
                    return
                self.connections += 1
                self._conns.append(conn)
                t = threading.Thread(target=self._run, args=(conn,), daemon=True)
                self._threads.append(t)
            t.start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self._handler(conn)
        except OSError:
            pass  # the peer or stop() closed the connection
        except Exception as exc:
            self.errors.append(exc)

    def stop(self) -> None:
        """Close the listener and all connections; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._accepter.join(5)
        self._listener.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for t in threads:
            t.join(5)


def serve_bytes(payload: bytes, *, close: bool = True, port: int = 0) -> TcpServer:
    """A server that sends ``payload`` to every connection, then closes it (or, with ``close=False``,
    keeps it open until the peer closes or the server stops)."""

    def handler(conn: socket.socket) -> None:
        try:
            conn.sendall(payload)
            if not close:
                while conn.recv(65536):
                    pass
        finally:
            conn.close()

    return TcpServer(handler, port=port)


class CollectingServer(TcpServer):
    """A server that keeps every byte each connection sends; :meth:`received` joins them."""

    def __init__(self, *, port: int = 0) -> None:
        self._chunks: dict[int, list[bytes]] = {}
        self._next_id = 0
        self._data_lock = threading.Lock()
        super().__init__(self._collect, port=port)

    def _collect(self, conn: socket.socket) -> None:
        with self._data_lock:
            cid = self._next_id
            self._next_id += 1
            self._chunks[cid] = []
        try:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    return
                with self._data_lock:
                    self._chunks[cid].append(data)
        finally:
            conn.close()

    def per_connection(self) -> list[bytes]:
        """The bytes of each connection, in the order the connections were accepted."""
        with self._data_lock:
            return [b"".join(self._chunks[i]) for i in sorted(self._chunks)]

    def received(self) -> bytes:
        return b"".join(self.per_connection())
