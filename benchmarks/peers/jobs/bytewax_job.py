"""Bytewax, written the way its documentation shows: a ``Dataflow`` of operators, its Kafka connector,
custom sinks as ``DynamicSink`` / ``StatelessSinkPartition`` classes (Bytewax ships no Parquet or
PostgreSQL sink), run by ``bytewax.run.cli_main`` with recovery on (``RecoveryConfig``, a snapshot every
checkpoint interval: its at-least-once mode).

* parquet: ``kop.input(brokers, topics, tail=False, batch_size=10000)`` -> ``op.map(orjson.loads)``
  -> ``op.filter(price < 5000)`` -> ``op.output(ParquetSink)``: each worker's partition gathers rows into
  64k-row groups (``Table.from_pylist``, ``ts`` cast from its ISO text) for one ``ParquetWriter``;
* postgres: the same input -> ``op.output(PostgresSink)``: psycopg 3 ``COPY ... FROM STDIN`` with
  ``write_row`` per row, one transaction per ``write_batch``;
* opensearch: the same input -> ``op.output(SearchSink)``: opensearch-py ``helpers.bulk`` of
  ``{"_index", "_id": id, "_source": row}`` actions per ``write_batch``;
* produce: a ``FixedPartitionedSource`` (one partition per worker, its snapshot the next row, so it
  resumes under recovery) whose partitions generate their share of the rows (``gen_row`` per row,
  10,000 per ``next_batch``; a ``DynamicSource`` is what the docs show for sources without state, but
  Bytewax 0.21.1 with recovery on ends the dataflow after its second batch: rows silently missing)
  -> ``op.map`` to ``KafkaSinkMessage(None, orjson.dumps(row))`` -> ``kop.output`` (the connector's
  sink: ``produce`` per message, ``flush()`` per batch).

``parallelism`` is the number of workers (``workers_per_process``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import bytewax.operators as op
import orjson
import psycopg
import pyarrow.parquet as pq
from _arrow import SCHEMA, rows_to_table
from _common import COLUMNS, PRICE_LIMIT, Clock, Spec, emit, gen_row
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from opensearchpy import OpenSearch, helpers

ROW_GROUP = 65_536


class _ParquetPartition(StatelessSinkPartition[dict[str, Any]]):
    def __init__(self, path: str) -> None:
        self._path = path
        self._tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        self._writer: Any = None
        self._rows: list[dict[str, Any]] = []

    def _flush(self) -> None:
        if not self._rows:
            return
        table = rows_to_table(self._rows)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, SCHEMA)
        self._writer.write_table(table)
        self._rows = []

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        self._rows.extend(items)
        if len(self._rows) >= ROW_GROUP:
            self._flush()

    def close(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            os.replace(self._tmp, self._path)


class ParquetSink(DynamicSink[dict[str, Any]]):
    def __init__(self, directory: str) -> None:
        self._dir = directory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ParquetPartition:
        return _ParquetPartition(os.path.join(self._dir, f"part-{worker_index}.parquet"))


class _PostgresPartition(StatelessSinkPartition[dict[str, Any]]):
    def __init__(self, dsn: str, table: str) -> None:
        self._conn = psycopg.connect(dsn)
        self._sql = f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN"

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        with self._conn.cursor() as cur, cur.copy(self._sql) as copy:
            for r in items:
                copy.write_row(
                    (r["id"], r["price"], r["name"], r["active"], r["ts"], r["qty"], r["code"], r["score"])
                )
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


class PostgresSink(DynamicSink[dict[str, Any]]):
    def __init__(self, dsn: str, table: str) -> None:
        self._dsn, self._table = dsn, table

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresPartition:
        return _PostgresPartition(self._dsn, self._table)


class _SearchPartition(StatelessSinkPartition[dict[str, Any]]):
    def __init__(self, url: str, index: str) -> None:
        self._client = OpenSearch(url, timeout=120)
        self._index = index

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        actions = ({"_index": self._index, "_id": r["id"], "_source": r} for r in items)
        # The same request size as arrowflow's OpenSearchSink default (10,000 actions).
        helpers.bulk(self._client, actions, chunk_size=10_000)

    def close(self) -> None:
        self._client.close()


class SearchSink(DynamicSink[dict[str, Any]]):
    def __init__(self, url: str, index: str) -> None:
        self._url, self._index = url, index

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SearchPartition:
        return _SearchPartition(self._url, self._index)


class _GenPartition(StatefulSourcePartition[dict[str, Any], int]):
    """Rows ``start .. stop - 1``; the snapshot is the next row (resumable, as recovery wants)."""

    def __init__(self, start: int, stop: int) -> None:
        self._next, self._stop = start, stop

    def next_batch(self) -> list[dict[str, Any]]:
        if self._next >= self._stop:
            raise StopIteration()
        end = min(self._next + 10_000, self._stop)
        batch = [gen_row(i) for i in range(self._next, end)]
        self._next = end
        return batch

    def snapshot(self) -> int:
        return self._next


class GenSource(FixedPartitionedSource[dict[str, Any], int]):
    """One partition per worker (``parallelism``), each generating a contiguous share of the rows."""

    def __init__(self, rows: int, parts: int) -> None:
        self._rows, self._parts = rows, parts

    def list_parts(self) -> list[str]:
        return [str(k) for k in range(self._parts)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _GenPartition:
        share = -(-self._rows // self._parts)
        k = int(for_part)
        start = k * share if resume_state is None else resume_state
        return _GenPartition(start, min((k + 1) * share, self._rows))


def build_flow(spec: Spec) -> Dataflow:
    flow = Dataflow("peers")
    brokers = [spec.bootstrap]
    if spec.workload == "produce":
        rows = op.input("gen", flow, GenSource(spec.messages, spec.parallelism))
        msgs = op.map("encode", rows, lambda r: KafkaSinkMessage(None, orjson.dumps(r)))
        kop.output(
            "kafka-out",
            msgs,
            brokers=brokers,
            topic=spec.topic,
            add_config={"linger.ms": "5", "enable.idempotence": "true"},
        )
        return flow
    kinp = kop.input(
        "kafka-in",
        flow,
        brokers=brokers,
        topics=[spec.topic],
        tail=False,
        batch_size=10_000,
        add_config={"group.id": spec.group_id},
    )
    op.inspect("errors", kinp.errs).then(op.raises, "crash-on-err")
    rows = op.map("decode", kinp.oks, lambda msg: orjson.loads(msg.value))
    if spec.workload == "parquet":
        kept = op.filter("filter", rows, lambda r: r["price"] < PRICE_LIMIT)
        op.output("parquet-out", kept, ParquetSink(spec.out_dir))
    elif spec.workload == "opensearch":
        op.output("search-out", rows, SearchSink(spec.search_url, spec.index))
    else:
        op.output("pg-out", rows, PostgresSink(spec.pg_dsn, spec.pg_table))
    return flow


def main() -> None:
    spec = Spec.load()
    clock = Clock().start()
    flow = build_flow(spec)
    db_dir = os.path.join(spec.scratch_dir, "recovery")
    os.makedirs(db_dir, exist_ok=True)
    init_db_dir(db_dir, 1)
    cli_main(
        flow,
        workers_per_process=spec.parallelism,
        epoch_interval=timedelta(seconds=spec.checkpoint_interval),
        recovery_config=RecoveryConfig(db_dir),
    )
    emit(clock.result(rows_out=spec.expected_out))


if __name__ == "__main__":
    main()
