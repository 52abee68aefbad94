"""``SqlSink``: batches into a SQL table over ADBC (PostgreSQL only: ``driver`` must be
``adbc_driver_postgresql``), append by COPY or keyed upsert, or over a DB-API 2.0 driver (MySQL/MariaDB,
SQLite, PostgreSQL dialects) when given ``connect=``.

Contract:

* ``write(batch)`` buffers; when ``flush_rows`` rows are buffered, or the first buffered row is older
  than ``flush_interval`` seconds at the time of a write, it starts a flush (there is no timer
  thread, so an idle sink flushes at the next ``write``/``flush``/``close``; a pipeline flushes at
  every checkpoint).
* **What blocks.** Over ADBC a flush started by ``write`` runs in the background, on the sink's
  flusher thread, and ``write`` returns: the caller buffers (and its pipeline reads and decodes) the
  next rows while PostgreSQL ingests the previous ones. At most one flush is in flight: a ``write``
  that starts the next flush first waits for the one in flight (backpressure; ``metrics()`` counts
  these waits as ``flush_waits``), so the sink holds at most two flushes' worth of rows.
  ``flush()`` and ``close()`` block until everything buffered and in flight is committed (or handed
  to the error policy). The DB-API fallback flushes synchronously, on the caller's thread.
* A failed background flush (rows rejected under ``error_policy="fail"``, retries exhausted, a
  missing table...) is raised once, by the next ``write()``, ``flush()`` or ``close()``: at once if
  the flush has finished by then, otherwise by the first of them that waits for it (``flush()``,
  ``close()``, or a ``write()`` starting the next flush). A ``write()`` that raises keeps none of
  its batch. The rows of the failed flush are not written (nor counted in ``rows_written``, which
  counts committed rows only), as when a synchronous flush fails; a pipeline replays them from its
  last checkpoint. ``reset()`` (before an in-process restart) waits for the flush in flight, forgets
  its failure and drops the buffer.
* One flush is one database transaction (autocommit off, ``COMMIT`` at the end):

  - ``mode="append"``: ``cursor.adbc_ingest(table, rows, mode="append")`` (the PostgreSQL driver uses
    ``COPY ... FROM STDIN (FORMAT binary)``). The table must exist unless ``create=True`` (then it is
    created from the Arrow schema before the first flush, ``CREATE TABLE`` by the driver).
  - ``mode="upsert"``: rows are deduplicated on ``keys`` (the last row of a key in the flush wins,
    vectorized with ``group_by``), loaded by COPY into a temporary staging table, then merged by one
    ``INSERT INTO t SELECT ... FROM staging ON CONFLICT (keys) DO UPDATE SET ...``; rows whose
    ``delete_column`` is true are removed by ``DELETE FROM t USING staging ...`` instead (that column
    is not written). The staging table is dropped in the same transaction. ``create=True`` also adds
    ``PRIMARY KEY (keys)`` to a table it creates (``ON CONFLICT`` needs a unique index on the keys).

* **DB-API fallback** (``connect=`` a zero-argument factory returning a DB-API 2.0 connection, e.g.
  ``lambda: pymysql.connect(...)``, or the path of a SQLite file; ``uri`` is then omitted): one flush is
  still one transaction (``commit()`` at the end). Append is ``cursor.executemany("INSERT INTO t (cols)
  VALUES (...)", rows)``; upsert appends the dialect's conflict clause (MySQL/MariaDB ``ON DUPLICATE
  KEY UPDATE c = VALUES(c)``, SQLite/PostgreSQL ``ON CONFLICT (keys) DO UPDATE SET c = excluded.c``;
  the keys need a primary key or unique index), after the rows whose ``delete_column`` is true were
  removed by ``executemany("DELETE FROM t WHERE k = ?")``. ``create=True`` runs ``CREATE TABLE IF NOT
  EXISTS`` with column types mapped from Arrow by the dialect (``PRIMARY KEY (keys)`` in upsert
  mode; string keys are ``VARCHAR(255)`` in MySQL). The dialect comes from the driver module
  (``sqlite3``, ``pymysql``/``MySQLdb``/``mariadb``, ``psycopg``/``psycopg2``) unless ``dialect=`` is
  given; placeholders follow the module's ``paramstyle``. DB-API drivers take Python tuples, so this
  path builds one tuple per row (``to_pylist`` per column): it is far slower than ADBC and meant for
  databases without an ADBC driver. Nested types (list, struct, map) are not supported there.
* Connection loss (terminated backend, server restart, socket error) fails the transaction; the sink
  reconnects and retries the *whole* flush as ``retry`` says (a :class:`~arrowflow.retry.Retry`,
  default :data:`~arrowflow.connectors.sql.config.SQL_RETRY`: six attempts, full-jitter exponential
  backoff from 0.2 s up to 5 s; its ``classify`` sees the failure as a
  :class:`~arrowflow.errors.ConnectorError` that is ``retryable`` for connection loss and timeouts;
  0.1.0's ``max_retries``/``retry_backoff`` still work, deprecated). So does an attempt (connect,
  write, commit) that takes longer than ``timeout`` seconds: a server that stops answering without
  closing the connection (a hung server, a black-holed network) would otherwise block the flush
  forever, since neither libpq nor the DB-API drivers time out a read. Every database call runs on
  the sink's database thread; when an attempt overruns, that thread is abandoned with its
  connection (closed once its call returns, if ever) and the retry runs on a new thread and
  connection. An abandoned append that does commit later
  adds to the at-least-once duplicates below; an abandoned upsert is harmless. ``metrics()``
  counts ``retries``, ``reconnects`` and ``timeouts``. In upsert mode the retry is idempotent, so
  with a checkpointing pipeline the result is exactly-once in effect (``idempotent`` is true). In
  append mode a retry after a COMMIT whose acknowledgement was lost can write the flush twice:
  append is **at-least-once**.
* Rows the database rejects (constraint violations, bad values: SQLSTATE classes 22/23) fail the
  whole flush. With ``error_policy="fail"`` that raises :class:`~arrowflow.errors.ConnectorError`.
  With ``"skip"`` or a dead-letter sink the flush is bisected: each half is tried in its own
  transaction, recursively, until the rejected rows are single rows, which go to the policy with the
  database's message; every other row is committed. (k bad rows cost about ``2 k log2(n)``
  transactions.) The bisection of a background flush runs on the flusher thread, but the rejected
  rows go to the policy on the caller's thread (when that flush is collected by a later
  ``write``/``flush``/``close``, before ``flush()`` flushes the dead-letter sink): a dead-letter sink
  is only ever called from the thread that writes to this sink, as before.
* Other errors (missing table, wrong column names, SQL errors) raise at once.
* A password inside ``uri`` never shows: the URI is held as a :class:`~arrowflow.config.Secret`,
  ``repr`` and error messages use the masked form.

Not thread-safe: one thread writes and flushes (the pipeline's writer thread); the sink's own
flusher and database threads never run two database calls at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..._arrays import dedupe_last
from ...config import NO_OPTIONS, REQUIRED, Secret, resolve_config
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...errors import ConfigurationError, ConnectorError
from ...retry import Retry
from ...sink import Sink
from ._conn import CONNECTION_ERROR, ROW_ERROR, classify, close_quietly, connect
from ._dbapi import (
    DIALECTS,
    Dialect,
    classify_dbapi,
    connection_factory,
    describe_factory,
    detect_dialect,
    open_connection,
    placeholders,
    rows_for_driver,
)
from .config import SQL_RETRY, SqlSinkConfig, mask_uri, quote_ident, quote_table, scrub, split_table

__all__ = ["SqlSink", "dedupe_last"]


class _AttemptTimeout(TimeoutError):
    """Internal: an attempt overran ``timeout`` (an ``OSError``: classified as connection loss)."""


class _RowsRejected(Exception):
    """Internal: the database rejected the data of one attempt (the transaction was rolled back)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


#: Rows the database rejected, one row each with its reason: what a flush hands back to the caller's
#: thread for the error policy.
_Rejected = list[tuple[pa.Table, str]]


class SqlSink(Sink):
    """Writes batches into ``table`` through ADBC, or DB-API with ``connect=``. See the module docstring.

    ``flush_interval=None`` flushes by rows (and at ``flush()``/``close()``) only. ``db_kwargs`` are
    passed to the ADBC database (driver options). Give either ``uri`` (ADBC, with ``driver``) or
    ``connect`` (a DB-API connection factory or a SQLite path, with an optional ``dialect``).
    """

    name = "sql"

    def __init__(
        self,
        uri: str | Secret | None = None,
        table: str = REQUIRED,
        *,
        driver: str = "adbc_driver_postgresql",
        connect: Callable[[], Any] | str | None = None,
        dialect: str | None = None,
        mode: str = "append",
        keys: str | tuple[str, ...] | list[str] | None = None,
        create: bool = False,
        delete_column: str | None = None,
        flush_rows: int = 100_000,
        flush_interval: float | None = 5.0,
        retry: Retry = SQL_RETRY,
        db_kwargs: Mapping[str, str] | None = NO_OPTIONS,
        error_policy: ErrorPolicyLike = "fail",
        timeout: float | None = 60.0,
        config: SqlSinkConfig | None = None,
        **deprecated: Any,
    ) -> None:
        self.config = c = resolve_config(SqlSinkConfig, config, locals(), **deprecated)
        self.error_policy = ErrorPolicy.resolve(c.error_policy, name=f"sql:{c.table}")
        self.idempotent = c.mode == "upsert"
        self._backoff = c.retry.backoff()
        self._conn: Any = None
        self._factory = connection_factory(c.connect) if c.connect is not None else None
        self._dialect: Dialect | None = DIALECTS[c.dialect] if c.dialect is not None else None
        self._table_ready = not c.create
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_rows = 0
        self._buffered_since: float | None = None
        self.rows_written = 0
        self.flushes = 0
        self.retries = 0
        self.reconnects = 0
        self.timeouts = 0
        self.rows_rejected = 0
        self.flush_waits = 0
        # The database thread (see the module docstring); made on first use, replaced on a timeout.
        self._db: ThreadPoolExecutor | None = None
        # ADBC flushes run on the flusher thread (made on first use); ``_pending`` is the flush in
        # flight, collected (rejected rows to the policy, failure raised) on the caller's thread.
        self._flusher: ThreadPoolExecutor | None = None
        self._pending: Future[_Rejected] | None = None

    def __repr__(self) -> str:
        c = self.config
        where = f"SqlSink({self._where!r}, {c.table!r}"
        driver = c.driver if self._factory is None else "dbapi"
        return f"{where}, driver={driver!r}, mode={c.mode!r}, keys={c.keys!r})"

    @property
    def _where(self) -> str:
        c = self.config
        return mask_uri(c.uri) if c.uri is not None else describe_factory(c.connect)

    def _classify(self, exc: BaseException) -> str:
        return classify_dbapi(exc) if self._factory is not None else classify(exc)

    def _wrap(self, exc: BaseException, what: str) -> ConnectorError:
        """A :class:`ConnectorError` for ``exc``, the URI's password scrubbed from the message."""
        c = self.config
        text = scrub(str(exc), c.uri) if c.uri is not None else f"{type(exc).__name__}: {exc}"
        return ConnectorError(
            f"{what} ({self._where}): {text}", retryable=self._classify(exc) == CONNECTION_ERROR
        )

    # -- Sink ---------------------------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        """Buffer ``batch``; flush when ``flush_rows`` rows are buffered or ``flush_interval`` passed."""
        if self._closed:
            raise ConnectorError(f"{self!r} is closed")
        if isinstance(batch, pa.Table):
            self.write_table(batch)
            return
        if batch.num_rows == 0:
            return
        self._collect(block=False)
        now = time.monotonic()
        since = now if self._buffered_since is None else self._buffered_since
        interval = self.config.flush_interval
        due = self._buffered_rows + batch.num_rows >= self.config.flush_rows or (
            interval is not None and now - since >= interval
        )
        if due:
            # Backpressure: the next flush starts only once the one in flight is done, whose failure
            # is raised here, before this batch is taken.
            if self._pending is not None and not self._pending.done():
                self.flush_waits += 1
            self._collect(block=True)
        self._buffer.append(batch)
        self._buffered_rows += batch.num_rows
        self._buffered_since = since
        if due:
            self._start_flush()

    def flush(self) -> None:
        """Write everything buffered in one transaction (see the module docstring); blocks until it and
        the flush in flight are committed, and raises a failure of either."""
        self._collect(block=True)
        if self._buffer:
            self._start_flush()
            self._collect(block=True)
        self.error_policy.flush()

    def reset(self) -> None:
        """Before an in-process restart: wait for the flush in flight and forget its failure (the
        pipeline rewrites its rows), and drop what is buffered."""
        pending, self._pending = self._pending, None
        if pending is not None and pending.exception() is None:
            self._hand_over(pending.result())
        self._buffer = []
        self._buffered_rows = 0
        self._buffered_since = None

    def _start_flush(self) -> None:
        """Flush the buffer: in the background over ADBC (nothing may be in flight), else here."""
        batches, self._buffer = self._buffer, []
        self._buffered_rows = 0
        self._buffered_since = None
        table = pa.Table.from_batches(batches)
        if self._factory is not None:
            # DB-API: synchronous (sqlite3 binds a connection to its thread, and these drivers spend
            # the flush building Python rows under the GIL, which a background thread cannot overlap).
            self._hand_over(self._write_table(table))
            return
        assert self._pending is None
        if self._flusher is None:
            self._flusher = ThreadPoolExecutor(1, thread_name_prefix="arrowflow-sql-flush")
        try:
            self._pending = self._flusher.submit(self._write_table, table)
        except RuntimeError:
            # At interpreter exit (a close() from atexit) concurrent.futures takes no new work.
            self._hand_over(self._write_table(table))

    def _collect(self, *, block: bool) -> None:
        """Finish the flush in flight, if any (waiting for it when ``block``): its rejected rows go to
        the error policy here, on the caller's thread, and its failure is raised (once)."""
        pending = self._pending
        if pending is None or not (block or pending.done()):
            return
        failure = pending.exception()  # waits; an interrupt leaves the flush pending
        self._pending = None
        if failure is not None:
            raise failure
        self._hand_over(pending.result())

    def _hand_over(self, rejected: _Rejected) -> None:
        """Give the rows a flush's bisection isolated to the error policy, one row at a time."""
        for row, reason in rejected:
            self.rows_rejected += 1
            self.error_policy.handle(row, reason)

    def _close(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is None:
            self._release()
            return
        # After the flush in flight, if any (close() waited for it unless it was interrupted): the
        # connection and the database thread are that flush's until it ends.
        try:
            flusher.submit(self._release)
        except RuntimeError:  # at interpreter exit (see below)
            self._release()
        flusher.shutdown(wait=False)

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        db, self._db = self._db, None
        if db is None:
            close_quietly(conn)
            return
        # Closed on the thread that opened it (sqlite3 refuses any other), without waiting on a
        # thread a timed-out call may still hold.
        try:
            db.submit(close_quietly, conn)
        except RuntimeError:
            # At interpreter exit concurrent.futures takes no new work: close here (quietly; sqlite3
            # may refuse a close from another thread, and the process is ending anyway).
            close_quietly(conn)
        db.shutdown(wait=False)

    def metrics(self) -> dict[str, int]:
        return {
            "rows_written": self.rows_written,
            "flushes": self.flushes,
            "retries": self.retries,
            "reconnects": self.reconnects,
            "timeouts": self.timeouts,
            "rows_rejected": self.rows_rejected,
            "flush_waits": self.flush_waits,
        }

    # -- internals ----------------------------------------------------------------------------------

    @property
    def _columns(self) -> Callable[[pa.Schema], list[str]]:
        delete = self.config.delete_column
        return lambda schema: [n for n in schema.names if n != delete]

    def _write_table(self, table: pa.Table) -> _Rejected:
        """One flush (on the flusher thread over ADBC); returns the rows the database rejected, for
        the caller's thread to give to the error policy."""
        c = self.config
        if c.mode == "upsert":
            assert c.keys is not None
            table = dedupe_last(table, c.keys)
        if not self._table_ready:
            self._run_in_transaction(lambda conn: self._ensure_table(conn, table.schema))
            self._table_ready = True
        try:
            self._run_in_transaction(lambda conn: self._apply(conn, table))
        except _RowsRejected as rejected:
            if self.error_policy.mode == "fail":
                raise self._wrap(rejected.cause, f"{c.table}: the database rejected the flush") from None
            return self._isolate(table)
        self.flushes += 1
        self.rows_written += table.num_rows
        return []

    def _isolate(self, table: pa.Table) -> _Rejected:
        """Bisect ``table`` until the rejected rows are single rows; return those with their reasons."""
        rejected_rows: _Rejected = []
        pending = [table]
        while pending:
            part = pending.pop()
            try:
                self._run_in_transaction(lambda conn, part=part: self._apply(conn, part))  # type: ignore[misc]
            except _RowsRejected as rejected:
                if part.num_rows == 1:
                    rejected_rows.append((part, self._reason(rejected.cause)))
                else:
                    mid = part.num_rows // 2
                    # Pushed in reverse so the first half is tried first (keeps append order).
                    pending.append(part.slice(mid))
                    pending.append(part.slice(0, mid))
                continue
            self.flushes += 1
            self.rows_written += part.num_rows
        return rejected_rows

    def _reason(self, exc: BaseException) -> str:
        c = self.config
        return scrub(str(exc), c.uri) if c.uri is not None else str(exc)

    def _connection(self) -> Any:
        if self._conn is None:
            c = self.config
            if self._factory is not None:
                self._conn = open_connection(self._factory, self._where)
                if self._dialect is None:
                    self._dialect = detect_dialect(self._conn)
            else:
                assert c.uri is not None
                self._conn = connect(c.driver, c.uri, c.db_kwargs, autocommit=False)
        return self._conn

    def _attempt(self, fn: Callable[[Any], None]) -> None:
        """One try of ``fn(conn)`` + commit, on the database thread; on failure the connection is
        rolled back or (connection loss) closed there, then the error is raised."""
        try:
            conn = self._connection()
            fn(conn)
            conn.commit()
        except ConfigurationError:
            close_quietly(self._conn)
            self._conn = None
            raise
        except Exception as exc:
            if self._classify(exc) == CONNECTION_ERROR:
                close_quietly(self._conn)
                self._conn = None
            elif self._conn is not None:
                try:
                    self._conn.rollback()
                except Exception:
                    close_quietly(self._conn)
                    self._conn = None
            raise

    def _on_db_thread(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the database thread within ``timeout``; past it, abandon that thread and
        its connection (closed when the stuck call returns) and raise :class:`_AttemptTimeout`."""
        timeout = self.config.timeout
        if timeout is None:
            fn()
            return
        if self._db is None:
            self._db = ThreadPoolExecutor(1, thread_name_prefix="arrowflow-sql")
        try:
            future = self._db.submit(fn)
        except RuntimeError:
            # At interpreter exit concurrent.futures takes no new work: run here, without a timeout.
            fn()
            return
        try:
            future.result(timeout)
        except FutureTimeout:
            db, conn = self._db, self._conn
            self._db, self._conn = None, None
            future.add_done_callback(lambda _: close_quietly(conn))  # runs on the stuck thread
            db.shutdown(wait=False)
            self.timeouts += 1
            raise _AttemptTimeout(
                f"no answer within timeout={timeout} s (a silent server or network): connection dropped"
            ) from None

    def _run_in_transaction(self, fn: Callable[[Any], None]) -> None:
        """Run ``fn(conn)`` and commit; reconnect and rerun on connection loss or a timeout.

        Raises :class:`_RowsRejected` when the data was rejected (rolled back), a
        :class:`ConnectorError` otherwise.
        """
        c = self.config
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            try:
                self._on_db_thread(lambda: self._attempt(fn))
                return
            except ConfigurationError:
                raise
            except Exception as exc:
                if self._classify(exc) == ROW_ERROR:
                    raise _RowsRejected(exc) from exc
                # retryable: connection loss or a timeout (see _wrap), what c.retry.classify reads.
                error = (
                    exc if isinstance(exc, ConnectorError) else self._wrap(exc, f"{c.table}: flush failed")
                )
                delay = self._backoff.delay(attempt)
                if not c.retry.classify(error) or c.retry.exhausted(
                    attempt, time.monotonic() - started, delay
                ):
                    if error is exc:
                        raise
                    raise error from None
                self.retries += 1
                self.reconnects += 1
                time.sleep(delay)

    def _ensure_table(self, conn: Any, schema: pa.Schema) -> None:
        """Create the target from ``schema`` (minus ``delete_column``) when it does not exist."""
        c = self.config
        if self._factory is not None:
            assert self._dialect is not None
            columns = self._columns(schema)
            pk = c.keys if c.mode == "upsert" else None
            cur = conn.cursor()
            try:
                target = pa.schema([schema.field(n) for n in columns])
                cur.execute(self._dialect.create_table(c.table, target, pk))
            finally:
                cur.close()
            return
        db_schema, name = split_table(c.table)
        cur = conn.cursor()
        missing = f"SELECT to_regclass('{quote_table(c.table).replace(chr(39), chr(39) * 2)}') IS NULL"
        try:
            cur.execute(missing)
            row = cur.fetchone()
            if not (row and row[0]):
                return
            columns = self._columns(schema)
            empty = schema.empty_table().select(columns)
            # Another session can create the table between the check and the CREATE: an earlier
            # attempt of this flush that a timeout cut off on our side while its transaction went on
            # to commit (the CREATE then waits for it and fails on the catalog's unique index).
            cur.execute("SAVEPOINT arrowflow_create")
            try:
                cur.adbc_ingest(name, empty, mode="create", db_schema_name=db_schema)
            except Exception:
                cur.execute("ROLLBACK TO SAVEPOINT arrowflow_create")
                cur.execute(missing)
                row = cur.fetchone()
                if row and row[0]:
                    raise
                return  # created by the other session, primary key included
            if c.mode == "upsert":
                assert c.keys is not None
                keys = ", ".join(quote_ident(k) for k in c.keys)
                cur.execute(f"ALTER TABLE {quote_table(c.table)} ADD PRIMARY KEY ({keys})")
        finally:
            cur.close()

    def _apply(self, conn: Any, table: pa.Table) -> None:
        """The statements of one flush (the caller commits)."""
        c = self.config
        if self._factory is not None:
            self._apply_dbapi(conn, table)
            return
        db_schema, name = split_table(c.table)
        cur = conn.cursor()
        try:
            if c.mode == "append":
                cur.adbc_ingest(name, table, mode="append", db_schema_name=db_schema)
                return
            assert c.keys is not None
            stage = f"_arrowflow_stage_{uuid.uuid4().hex[:12]}"
            cur.adbc_ingest(stage, table, mode="create", temporary=True)
            target = quote_table(c.table)
            columns = self._columns(table.schema)
            cols = ", ".join(quote_ident(n) for n in columns)
            keys = ", ".join(quote_ident(k) for k in c.keys)
            where = ""
            if c.delete_column is not None:
                flag = f"s.{quote_ident(c.delete_column)}"
                match = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in c.keys)
                cur.execute(
                    f"DELETE FROM {target} AS t USING {quote_ident(stage)} AS s WHERE {match} AND {flag}"
                )
                where = f" WHERE NOT COALESCE({flag}, FALSE)"
            updates = [n for n in columns if n not in c.keys]
            action = (
                "DO UPDATE SET " + ", ".join(f"{quote_ident(n)} = EXCLUDED.{quote_ident(n)}" for n in updates)
                if updates
                else "DO NOTHING"
            )
            select_cols = ", ".join(f"s.{quote_ident(n)}" for n in columns)
            cur.execute(
                f"INSERT INTO {target} ({cols}) SELECT {select_cols} FROM {quote_ident(stage)} AS s{where} "
                f"ON CONFLICT ({keys}) {action}"
            )
            cur.execute(f"DROP TABLE {quote_ident(stage)}")
        finally:
            cur.close()

    def _apply_dbapi(self, conn: Any, table: pa.Table) -> None:
        """One flush through DB-API: deletes (flagged rows), then one ``executemany`` INSERT/upsert."""
        c = self.config
        d = self._dialect
        assert d is not None
        target = d.quote_table(c.table)
        table = d.prepare(table)
        columns = self._columns(table.schema)
        cur = conn.cursor()
        try:
            data = table
            if c.mode == "upsert" and c.delete_column is not None:
                assert c.keys is not None
                flag = pc.fill_null(pc.cast(table.column(c.delete_column), pa.bool_()), False)
                deletes = table.filter(flag).select(list(c.keys))
                data = table.filter(pc.invert(flag))
                if deletes.num_rows:
                    marks = placeholders(conn, len(c.keys))
                    match = " AND ".join(f"{d.quote(k)} = {m}" for k, m in zip(c.keys, marks, strict=True))
                    cur.executemany(f"DELETE FROM {target} WHERE {match}", rows_for_driver(deletes))
            if data.num_rows == 0:
                return
            cols = ", ".join(d.quote(n) for n in columns)
            marks_row = ", ".join(placeholders(conn, len(columns)))
            sql = f"INSERT INTO {target} ({cols}) VALUES ({marks_row})"
            if c.mode == "upsert":
                assert c.keys is not None
                sql += d.upsert_suffix(columns, c.keys)
            cur.executemany(sql, rows_for_driver(data.select(columns)))
        finally:
            cur.close()
