"""CassandraSink: prepared statements executed concurrently, on :class:`~arrowflow.writer.AsyncBatchWriter`.

Contract:

* The statement is a prepared ``INSERT INTO ks.table (cols...) VALUES (?, ...)`` built from the
  batch's columns (or ``columns``), or a user CQL statement with ``?`` bind markers (``statement``);
  a user statement's markers bind the batch columns of the same names (the names the server reports
  for the markers: the column each marker is compared with or assigned to), or the columns listed in
  ``columns``, in marker order. It is prepared once, on the first ``write()``.
* ``write(batch)`` buffers the rows (Arrow, no per-row work). Requests of up to ``batching.max_request_rows``
  rows run in up to ``batching.max_in_flight`` worker threads; each converts its rows to driver values
  column by column and runs them with ``execute_concurrent_with_args`` holding at most
  ``concurrency`` statements in flight, so at most ``batching.max_in_flight * concurrency``
  statements are in flight in all. With ``batch_by_partition``, the rows of a request are grouped by
  partition key and sent as UNLOGGED batches of at most ``max_batch_statements`` statements and
  ``max_batch_bytes`` bytes of values (one partition per batch: the cheap kind of batch for Cassandra;
  the byte bound keeps a batch under the server's maximum CQL message size, beyond which it refuses
  the whole batch: ``native_transport_max_message_size``, by default half a commit log segment, 16 MiB
  with Cassandra 5.0's default 32 MiB segments, 4 MiB on arrowflow's test node).
* Rows with a null partition key column go to the error policy at ``write()``, and so does a whole
  batch when the server refuses to prepare the statement (unknown table or column), with the server's
  message. A row whose values do not convert to the column's CQL type (a malformed uuid string, an
  integer out of range) goes to the error policy alone; the rest of its request is sent. A failed
  statement (or batch: all its rows) is retried with exponential backoff and jitter when the error
  is retryable (write/read timeouts, unavailable, overloaded, connection errors, no host available),
  up to ``batching.max_attempts``; other errors (invalid request, syntax, unauthorized) and exhausted retries
  go to the error policy (fail / skip with count / dead letter with the driver's message).
* ``ignore_null_fields``: nulls are sent as "unset" (protocol v4), so they leave existing cells alone
  and write no tombstones, instead of deleting the cell.
* ``flush()`` (called at every checkpoint) returns when every row written so far is acknowledged or
  handed to the error policy: at-least-once. A generated INSERT is an idempotent keyed upsert, so the
  sink declares ``idempotent`` and replays after a crash leave the table as if written once, which
  ``exactly-once`` pipelines accept; a user statement is idempotent only if declared with
  ``idempotent=True`` (counter updates and list appends are not).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import ConfigAttributes, resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ArrowflowError, ConfigurationError, ConnectorError, SerializationError
from ...writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult
from ._client import SessionHolder, quote_ident
from ._convert import column_to_driver
from .config import CASSANDRA_BATCHING, CassandraConnection, CassandraSinkConfig, split_table

__all__ = ["CASSANDRA_BATCHING", "CassandraSink", "CassandraSinkConfig", "is_retryable_cassandra_error"]


def is_retryable_cassandra_error(exc: BaseException) -> bool:
    """True for errors where trying again may succeed (timeouts, unavailable, overload, connection)."""
    from cassandra import (
        CoordinationFailure,
        OperationTimedOut,
        ReadTimeout,
        Unavailable,
        WriteTimeout,
    )
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionException
    from cassandra.protocol import IsBootstrappingErrorMessage, OverloadedErrorMessage, ServerError

    retryable = (
        WriteTimeout,
        ReadTimeout,
        Unavailable,
        CoordinationFailure,
        OperationTimedOut,
        NoHostAvailable,
        ConnectionException,
        OverloadedErrorMessage,
        IsBootstrappingErrorMessage,
        ServerError,
        ConnectionError,
        TimeoutError,
    )
    if isinstance(exc, NoHostAvailable):
        # Retryable unless every host answered with a fatal error.
        errors = list((exc.errors or {}).values())
        return not errors or any(
            not isinstance(e, BaseException) or is_retryable_cassandra_error(e) for e in errors
        )
    return isinstance(exc, retryable)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _Prepared:
    """A prepared statement with the batch columns its markers bind and its partition key columns."""

    def __init__(self, statement: Any, bind_columns: tuple[str, ...], partition_key: tuple[str, ...]) -> None:
        self.statement = statement
        self.bind_columns = bind_columns
        self.types = [c.type for c in statement.column_metadata]
        self.partition_key = partition_key


class CassandraSink(ConfigAttributes, AsyncBatchWriter):
    """Writes batches to Cassandra with a prepared statement (see the module docstring).

    ``connection``: a :class:`CassandraConnection` or a dict of its fields; ``session``: an existing
    driver ``Session`` (not shut down by the sink). The other options are
    :class:`CassandraSinkConfig`'s, as keywords or as ``config=`` (0.1.0 passed it first).
    """

    name = "cassandra"

    def __init__(
        self,
        config: CassandraSinkConfig | None = None,
        *,
        table: str | None = None,
        statement: str | None = None,
        columns: Sequence[str] | None = None,
        partition_key: Sequence[str] | None = None,
        ignore_null_fields: bool = False,
        batch_by_partition: bool = False,
        max_batch_statements: int = 50,
        max_batch_bytes: int = 1 << 20,
        concurrency: int = 64,
        idempotent: bool | None = None,
        batching: BatchingConfig = CASSANDRA_BATCHING,
        connection: CassandraConnection | Mapping[str, Any] | None = None,
        session: Any = None,
        error_policy: ErrorPolicyLike = "fail",
        name: str | None = None,
        **deprecated: Any,
    ) -> None:
        config = resolve_config(CassandraSinkConfig, config, locals(), **deprecated)
        super().__init__(config.batching, error_policy=error_policy, name=name)
        self.config = config
        self.connection = CassandraConnection.coerce(connection)
        if config.table is not None:
            self._target: tuple[str, str] | None = split_table(config.table, self.connection.keyspace)
        else:
            self._target = None
        self.idempotent = config.idempotent if config.idempotent is not None else config.table is not None
        self._holder = SessionHolder(self.connection, session)
        self._statements: dict[tuple[str, ...], _Prepared] = {}
        self._prep_lock = threading.Lock()

    @property
    def sink_config(self) -> CassandraSinkConfig:
        """0.1.0's name of :attr:`config`."""
        return self.config  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"CassandraSink(config={self.config!r}, connection={self.connection!r})"

    @property
    def session(self) -> Any:
        """The driver session (connected on first use)."""
        return self._holder.session

    # -- preparing ------------------------------------------------------------------------------

    def _statement_for(self, names: Sequence[str]) -> _Prepared:
        cfg = self.config
        key = tuple(names) if cfg.table is not None and cfg.columns is None else ()
        with self._prep_lock:
            prep = self._statements.get(key)
            if prep is not None:
                return prep
            session = self.session
            if self._target is not None:
                cols = cfg.columns or tuple(names)
                ks, tb = self._target
                cql = (
                    f"INSERT INTO {quote_ident(ks)}.{quote_ident(tb)} "
                    f"({', '.join(quote_ident(c) for c in cols)}) VALUES ({', '.join('?' * len(cols))})"
                )
                statement = session.prepare(cql)
                bind = cols
            else:
                statement = session.prepare(cfg.statement)
                markers = tuple(c.name for c in statement.column_metadata)
                bind = cfg.columns or markers
                if len(bind) != len(markers):
                    raise ConfigurationError(
                        f"columns {list(bind)} do not match the statement's {len(markers)} bind markers",
                        option="columns",
                    )
            statement.is_idempotent = self.idempotent
            if cfg.partition_key is not None:
                pk = cfg.partition_key
            else:
                idx = statement.routing_key_indexes or []
                pk = tuple(bind[i] for i in idx)
            if cfg.batch_by_partition and not pk:
                raise ConfigurationError(
                    "batch_by_partition needs the partition key: the statement does not bind it, or the "
                    "server did not say; give partition_key",
                    option="partition_key",
                )
            prep = _Prepared(statement, tuple(bind), pk)
            self._statements[key] = prep
            return prep

    # -- AsyncBatchWriter hooks -----------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> pa.StructArray | Encoded:
        try:
            prep = self._statement_for(batch.schema.names)
        except ArrowflowError:
            raise
        except Exception as exc:
            # The server refused to prepare the statement (no such table or column, a bad user
            # statement): no row of the batch can be written, so they go to the error policy with
            # the server's message. Not cached: the next write prepares again.
            if is_retryable_cassandra_error(exc):
                raise ConnectorError(
                    f"{self.name}: cannot prepare the statement: {exc}", retryable=True
                ) from exc
            raise SerializationError(
                f"{self.name}: the server refused the statement: {_describe(exc)}"
            ) from exc
        names = batch.schema.names
        missing = [c for c in prep.bind_columns if c not in names]
        if missing:
            raise ConfigurationError(
                f"columns {missing} are not columns of the batch {names}", option="columns"
            )
        cols = [batch.column(c) for c in prep.bind_columns]
        entries = pa.StructArray.from_arrays(cols, names=list(prep.bind_columns))
        bad = np.zeros(batch.num_rows, dtype=bool)
        for k in prep.partition_key:
            col = batch.column(k)
            if col.null_count:
                bad |= np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        if bad.any():
            failed = np.flatnonzero(bad)
            return Encoded(
                entries=entries.filter(pa.array(~bad)),
                failed=failed,
                errors=f"null value in partition key column(s) {list(prep.partition_key)}",
            )
        return entries

    def entry_sizes(self, entries: pa.StructArray) -> np.ndarray:
        n = len(entries)
        sizes = np.zeros(n, dtype=np.int64)
        for child in entries.flatten():
            t = child.type
            if any(f(t) for f in (pa.types.is_binary, pa.types.is_string, pa.types.is_large_binary)) or (
                pa.types.is_large_string(t)
            ):
                sizes += super().entry_sizes(child)
            else:
                try:
                    width = max(1, t.bit_width // 8)
                except ValueError:  # nested types: their average size
                    width = child.nbytes // max(n, 1)
                sizes += width
        return sizes

    def _rows(self, entries: pa.StructArray, prep: _Prepared) -> list[tuple[Any, ...]]:
        # The driver serializes Python values row by row, so each column becomes one Python list
        # (one Arrow/numpy conversion per column, see _convert.column_to_driver) and the rows are the
        # zip of those lists: no per-cell type dispatch in Python.
        unset: Any = None
        if self.config.ignore_null_fields:
            from cassandra.query import UNSET_VALUE

            unset = UNSET_VALUE
        columns = []
        for child, cqltype, name in zip(entries.flatten(), prep.types, prep.bind_columns, strict=True):
            null = None if name in prep.partition_key else unset
            try:
                columns.append(column_to_driver(child, cqltype, null=null))
            except (SerializationError, pa.ArrowInvalid, ValueError, TypeError) as exc:
                raise SerializationError(f"{self.name}: column {name!r}: {exc}") from exc
        return list(zip(*columns, strict=True))

    def _convert(
        self, entries: pa.StructArray, prep: _Prepared
    ) -> tuple[list[tuple[Any, ...] | None], dict[int, str]]:
        """Driver rows of ``entries``, column by column; ``None`` for a row that does not convert, with
        its error by index. Only when a column fails are its rows converted one by one, to find the
        bad ones: the others are still sent."""
        try:
            return list(self._rows(entries, prep)), {}
        except SerializationError:
            pass
        rows: list[tuple[Any, ...] | None] = []
        bad: dict[int, str] = {}
        for i in range(len(entries)):
            try:
                rows.append(self._rows(entries.slice(i, 1), prep)[0])
            except SerializationError as exc:
                rows.append(None)
                bad[i] = _describe(exc)
        return rows, bad

    def submit(self, entries: pa.StructArray) -> SubmitResult | None:
        from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args

        prep = self._statement_for(entries.type.names if self.config.columns is None else ())
        rows, bad = self._convert(entries, prep)
        cfg = self.config
        session = self.session
        failed: list[int] = list(bad)
        errors: list[str] = list(bad.values())
        flags: list[bool] = [False] * len(bad)
        if not cfg.batch_by_partition:
            keep = [i for i, r in enumerate(rows) if r is not None] if bad else range(len(rows))
            results = execute_concurrent_with_args(
                session,
                prep.statement,
                [rows[i] for i in keep] if bad else rows,
                concurrency=cfg.concurrency,
                raise_on_first_error=False,
            )
            for i, (ok, res) in zip(keep, results, strict=True):
                if not ok:
                    failed.append(i)
                    errors.append(_describe(res))
                    flags.append(is_retryable_cassandra_error(res))
        else:
            groups = self._groups(entries, prep, set(bad))
            batches = [(self._batch(prep, [rows[i] for i in idx.tolist()]), None) for idx in groups]
            results = execute_concurrent(
                session, batches, concurrency=cfg.concurrency, raise_on_first_error=False
            )
            for idx, (ok, res) in zip(groups, results, strict=True):
                if not ok:
                    failed.extend(idx.tolist())
                    errors.extend([_describe(res)] * len(idx))
                    flags.extend([is_retryable_cassandra_error(res)] * len(idx))
        if not failed:
            return SubmitResult.ok()
        return SubmitResult(
            failed=np.asarray(failed, dtype=np.int64),
            errors=errors,
            retryable=np.asarray(flags, dtype=bool),
        )

    def _batch(self, prep: _Prepared, rows: list[tuple[Any, ...]]) -> Any:
        from cassandra.query import BatchStatement, BatchType

        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.add_all([prep.statement] * len(rows), rows)
        batch.is_idempotent = self.idempotent
        return batch

    def _groups(self, entries: pa.StructArray, prep: _Prepared, skip: set[int]) -> list[np.ndarray]:
        """Row indices grouped by partition key (Arrow group_by), without ``skip``, cut to at most
        ``max_batch_statements`` rows and ``max_batch_bytes`` bytes (a larger row goes alone)."""
        keys = {f"k{i}": entries.field(c) for i, c in enumerate(prep.partition_key)}
        table = pa.table({**keys, "_row": pa.array(np.arange(len(entries), dtype=np.int64))})
        grouped = table.group_by(list(keys), use_threads=False).aggregate([("_row", "list")])
        lists = grouped.column("_row_list").combine_chunks()
        offsets = lists.offsets.to_numpy()
        flat = lists.values.to_numpy()
        if skip:
            # Drop the skipped rows from every group, then recount the group bounds.
            drop = np.isin(flat, np.fromiter(skip, np.int64, len(skip)))
            kept = np.concatenate(([0], np.cumsum(~drop)))
            flat, offsets = flat[~drop], kept[offsets]
        sizes = np.asarray(self.entry_sizes(entries), dtype=np.int64)[flat]
        step = self.config.max_batch_statements
        limit = self.config.max_batch_bytes
        out = []
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            s = a
            while s < b:
                # The longest run from s within both limits, and at least one row.
                cum = np.cumsum(sizes[s : min(b, s + step)])
                n = max(1, int(np.searchsorted(cum, limit, side="right")))
                out.append(flat[s : s + n])
                s += n
        return out

    def classify(self, exc: BaseException) -> bool:
        return is_retryable_cassandra_error(exc)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._holder.close()
