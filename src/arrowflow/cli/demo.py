"""``arrowflow demo``: generate rows, write them to an embedded Kafka, read them back, print throughput.

Needs no server: Kafka is librdkafka's in-process mock cluster (:class:`MockKafkaCluster`), which lives
as long as the holder object. Everything else is arrowflow itself, as a user would write it:

1. **write**: ``Pipeline(DataGenSource(count=rows, seed=...)).via(FollowReader(...)).to(KafkaSink(...))``
   -- seeded generated rows (:func:`demo_fields`), one JSON document per row
   (:class:`~arrowflow.formats.Json`, the compiled kernel), keyed by ``user`` and partitioned by
   Kafka's default murmur2 partitioner; it runs in the calling thread and shows its progress line.
2. **read back**: ``Pipeline(KafkaSource(..., format=Json(schema), metadata_columns=("_partition",
   "_offset"))).to(MemorySink()).run(max_rows=rows)`` in a second thread, from the earliest offsets.
3. **summary**: a polars group-by over the rows read back (:func:`summarize`).

Why the read-back overlaps the write: the mock cluster keeps at most 5 MiB (and 100,000 message sets)
per partition and deletes the oldest message sets past that. The limit is a constant in librdkafka's
``rd_kafka_mock_partition_init`` (``mpart->max_size = 1024 * 1024 * 5``) with no configuration
property, ``test.mock.*`` included, to raise it; a demo that wrote everything first would read back
only the tail. So the reader runs concurrently and the :class:`FollowReader` operator in the write
pipeline holds a batch back while the writer is more than ``max_lag`` rows ahead of the rows the
reader has delivered (about 2.5 MB a partition at the default).

Verification: the rows read back must be exactly the ids ``0 .. rows - 1``, each once, and every
partition's offsets must be contiguous from 0 (nothing deleted before it was read).

Failure: a missing client library raises :class:`click.ClickException` naming the pip extra; a reader
that makes no progress for ``stall_timeout`` seconds (data deleted before it was read, a broken
consumer) raises :class:`DemoError`, as does an error in either pipeline (re-raised with its cause).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click
import numpy as np
import pyarrow as pa

from arrowflow.errors import ArrowflowError
from arrowflow.ops.base import Operator

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import polars
    from rich.console import Console

    from arrowflow.connectors.datagen import FieldGenerator
    from arrowflow.pipeline import RunResult

__all__ = [
    "DemoError",
    "DemoReport",
    "FollowReader",
    "MockKafkaCluster",
    "StageRow",
    "demo_command",
    "demo_fields",
    "print_report",
    "run_demo",
    "summarize",
]

COUNTRIES = ("DE", "US", "FR", "GB", "JP", "BR", "IN", "ES", "IT", "NL", "SE", "PL")
# Skewed like real traffic: a few countries dominate.
COUNTRY_WEIGHTS = (20, 25, 10, 10, 8, 6, 6, 4, 4, 3, 2, 2)


class DemoError(ArrowflowError):
    """The demo could not complete: a pipeline failed, or the reader made no progress."""


def _require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or fail with the pip extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise click.ClickException(
            f"the demo needs {module!r} ({exc}); install it with: pip install 'arrowflow[{extra}]'"
        ) from exc


def demo_fields() -> list[tuple[str, FieldGenerator]]:
    """The generated columns: ``id`` 0.. (the checksum relies on it), ``ts``, ``user`` (4 letters of a
    16-letter alphabet: 65,536 users, the message key), ``amount``, ``country`` (weighted),
    ``quantity``, ``flag``."""
    from arrowflow.connectors.datagen import Bool, Choice, RandomString, Sequence, Timestamps, Uniform

    return [
        ("id", Sequence()),
        ("ts", Timestamps(start=datetime(2026, 1, 1), step=timedelta(milliseconds=1))),
        ("user", RandomString(length=4, alphabet="abcdefghijklmnop")),
        ("amount", Uniform(low=1.0, high=500.0)),
        ("country", Choice(COUNTRIES, weights=COUNTRY_WEIGHTS)),
        ("quantity", Uniform(low=1, high=9, type="int32")),
        ("flag", Bool(p=0.1)),
    ]


# ------------------------------------------------------------------------------------ embedded Kafka


class MockKafkaCluster:
    """librdkafka's in-process mock cluster; alive as long as this object (or until :meth:`close`).

    ``bootstrap`` is a ``host:port`` list any client (in this or another process) can connect to.
    Topics auto-create with 4 partitions; each partition keeps only about the last 5 MiB.
    """

    def __init__(self, num_brokers: int = 1, *, timeout: float = 10.0) -> None:
        ck = _require("confluent_kafka", "kafka")
        # The holder producer owns the mock brokers; they stop when it is garbage-collected.
        self._holder: Any = ck.Producer({"test.mock.num.brokers": num_brokers, "log_level": 3})
        md = self._holder.list_topics(timeout=timeout)
        self.bootstrap: str = ",".join(f"{b.host}:{b.port}" for b in md.brokers.values())

    def partitions(self, topic: str, *, timeout: float = 10.0) -> int:
        """Create ``topic`` if needed (a metadata request auto-creates it) and return its partition count."""
        md = self._holder.list_topics(topic, timeout=timeout)
        meta = md.topics[topic]
        if meta.error is not None:
            raise DemoError(f"topic {topic!r} unavailable in the mock cluster: {meta.error}")
        return len(meta.partitions)

    def close(self) -> None:
        self._holder = None

    def __enter__(self) -> MockKafkaCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------ backpressure


class FollowReader(Operator):
    """Passes batches through unchanged, but blocks while the writer is too far ahead of the reader.

    ``process`` waits until ``passed + len(batch) - delivered() <= max(max_lag, len(batch))``, where
    ``passed`` counts the rows this operator let through and ``delivered()`` the rows the reader has
    delivered. It raises :class:`DemoError` when ``failed()`` returns an error (the reader died) or
    when ``delivered()`` has not grown for ``stall_timeout`` seconds while it waits.
    """

    name = "follow_reader"

    def __init__(
        self,
        delivered: Callable[[], int],
        failed: Callable[[], BaseException | None],
        *,
        max_lag: int,
        stall_timeout: float,
    ) -> None:
        self._delivered = delivered
        self._failed = failed
        self._max_lag = max_lag
        self._stall_timeout = stall_timeout
        self.passed = 0
        self.waited = 0.0

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        n = batch.num_rows
        limit = max(self._max_lag, n)
        t0 = last_change = time.monotonic()
        last = self._delivered()
        while self.passed + n - last > limit:
            err = self._failed()
            if err is not None:
                raise DemoError(f"the read-back pipeline failed: {err}") from err
            now = time.monotonic()
            if now - last_change > self._stall_timeout:
                raise DemoError(
                    f"the reader delivered nothing for {self._stall_timeout:.0f} s "
                    f"({last:,} rows read, {self.passed:,} written)"
                )
            time.sleep(0.005)
            got = self._delivered()
            if got != last:
                last, last_change = got, time.monotonic()
        self.waited += time.monotonic() - t0
        self.passed += n
        return [batch]


# ------------------------------------------------------------------------------------ summary


def summarize(table: pa.Table) -> polars.DataFrame:
    """Per country: rows, distinct users, total and mean amount, share of flagged rows (polars)."""
    pl = _require("polars", "polars")
    return (
        pl.from_arrow(table)
        .group_by("country")
        .agg(
            pl.len().alias("rows"),
            pl.col("user").n_unique().alias("users"),
            pl.col("amount").sum().round(2).alias("amount_sum"),
            pl.col("amount").mean().round(2).alias("amount_mean"),
            pl.col("flag").mean().round(3).alias("flag_share"),
        )
        .sort("rows", descending=True)
    )


def ids_exactly_once(ids: pa.ChunkedArray | pa.Array, rows: int) -> bool:
    """True when ``ids`` holds every integer ``0 .. rows - 1`` exactly once (vectorized)."""
    arr = np.asarray(ids.to_numpy(), dtype=np.int64)
    if len(arr) != rows:
        return False
    if rows == 0:
        return True
    if arr.min() < 0 or arr.max() >= rows:
        return False
    seen = np.zeros(rows, dtype=np.bool_)
    seen[arr] = True
    # rows values, all within range, covering every slot: each id occurs exactly once.
    return bool(seen.all())


def offsets_contiguous(partitions: pa.ChunkedArray, offsets: pa.ChunkedArray) -> bool:
    """True when every partition's offsets read back are exactly ``0 .. count - 1`` (no gap, no repeat)."""
    part = np.asarray(partitions.to_numpy(), dtype=np.int64)
    off = np.asarray(offsets.to_numpy(), dtype=np.int64)
    if len(part) == 0:
        return True
    order = np.lexsort((off, part))
    part, off = part[order], off[order]
    starts = np.flatnonzero(np.r_[True, part[1:] != part[:-1]])
    # Position within the partition's run must equal the offset.
    rank = np.arange(len(off)) - np.repeat(starts, np.diff(np.r_[starts, len(off)]))
    return bool(np.array_equal(rank, off))


# ------------------------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class StageRow:
    """One line of the throughput table: rows and Arrow bytes over ``seconds``."""

    name: str
    rows: int
    nbytes: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass
class DemoReport:
    """What the demo did: rows written and read back, checks, throughput rows and the polars summary."""

    rows_written: int
    rows_read: int
    id_checksum_ok: bool
    offsets_ok: bool
    stages: list[StageRow]
    summary: Any
    bootstrap: str
    topic: str
    partitions: int
    writer_waited: float


def _stage(result: RunResult, name: str) -> tuple[int, float]:
    try:
        s = result.stage(name)
    except KeyError:
        return 0, 0.0
    return s.rows_out or s.rows_in, s.busy_seconds


def run_demo(
    rows: int,
    *,
    batch_size: int = 65_536,
    write_chunk: int = 16_384,
    read_chunk: int = 8_192,
    max_lag: int = 75_000,
    seed: int = 42,
    topic: str = "arrowflow-demo",
    progress: bool = True,
    stall_timeout: float = 30.0,
) -> DemoReport:
    """Run write -> read back -> summarize against a fresh mock cluster; return the report.

    Blocks until every row is read back (or a failure). ``batch_size`` is the generator's block size,
    ``write_chunk``/``read_chunk`` the batch sizes of the two pipelines, ``max_lag`` how many rows the
    writer may run ahead of the reader (see the module docstring). Nothing is printed except the
    write pipeline's progress line (on stderr) when ``progress`` is true. Raises :class:`DemoError`
    (see the module docstring); a count or checksum mismatch is reported, not raised.
    """
    if rows < 1:
        raise ValueError("rows must be >= 1")
    from arrowflow.connectors.datagen import DataGenSource
    from arrowflow.connectors.kafka import KafkaSink, KafkaSource
    from arrowflow.connectors.memory import MemorySink
    from arrowflow.formats import Json
    from arrowflow.pipeline import Pipeline

    source = DataGenSource(demo_fields(), count=rows, seed=seed, batch_size=batch_size)
    schema = source.schema
    assert schema is not None

    with MockKafkaCluster() as cluster:
        num_partitions = cluster.partitions(topic)
        # Unbounded, started before anything is written: "latest" at planning time would be empty.
        # max_rows ends it once every row arrived.
        reader_source = KafkaSource(
            cluster.bootstrap,
            topics=[topic],
            format=Json(schema),
            metadata_columns=("_partition", "_offset"),
            starting_offsets="earliest",
            client_options={"fetch.wait.max.ms": 20, "log_level": 3},
        )
        memory = MemorySink()
        reader = Pipeline(reader_source).to(memory)
        read_state: dict[str, Any] = {"result": None, "error": None}

        def read_back() -> None:
            try:
                read_state["result"] = reader.run(
                    max_rows=rows,
                    progress=False,
                    guarantee="none",
                    max_batch_rows=read_chunk,
                    read_timeout=0.05,
                )
            except BaseException as exc:
                read_state["error"] = exc

        follow = FollowReader(
            lambda: memory.num_rows,
            lambda: read_state["error"],
            max_lag=max_lag,
            stall_timeout=stall_timeout,
        )
        sink = KafkaSink(
            cluster.bootstrap,
            topic=topic,
            key_columns="user",
            value_columns=schema.names,
            format=Json(),
            client_options={"linger.ms": 10, "log_level": 3},
        )
        writer = Pipeline(source).via(follow).to(sink)

        wall0 = time.perf_counter()
        thread = threading.Thread(target=read_back, name="arrowflow-demo-reader", daemon=True)
        thread.start()
        try:
            written = writer.run(progress=progress, max_batch_rows=write_chunk)
            if written.stopped:  # SIGINT/SIGTERM: the reader would wait for rows that never come
                raise DemoError(f"interrupted after writing {written.rows_written:,} of {rows:,} rows")
            _wait_for_reader(thread, memory, rows, read_state, stall_timeout)
        except BaseException:
            reader.stop()
            thread.join(timeout=10)
            raise
        finally:
            sink.close()
        wall = time.perf_counter() - wall0
        read = read_state["result"]
        if read_state["error"] is not None:
            err = read_state["error"]
            raise DemoError(f"the read-back pipeline failed: {err}") from err
        assert read is not None

        table = memory.table()
        t0 = time.perf_counter()
        summary = summarize(table)
        summary_seconds = time.perf_counter() - t0
        id_ok = ids_exactly_once(table.column("id"), rows)
        offsets_ok = offsets_contiguous(table.column("_partition"), table.column("_offset"))

    gen_rows, gen_s = _stage(written, "source")
    sink_rows, sink_s = _stage(written, "sink")
    src_rows, src_s = _stage(read, "source")
    per_row = written.bytes / written.rows if written.rows else 0.0
    stages = [
        StageRow(
            "generate + write (DataGenSource -> KafkaSink)", written.rows, written.bytes, written.duration
        ),
        StageRow("  datagen source (busy)", gen_rows, int(gen_rows * per_row), gen_s),
        StageRow("  kafka sink: json encode + produce (busy)", sink_rows, int(sink_rows * per_row), sink_s),
        StageRow("read back (KafkaSource -> MemorySink)", read.rows, read.bytes, read.duration),
        StageRow("  kafka source: consume + json decode (busy)", src_rows, read.bytes, src_s),
        StageRow("summary (polars group_by)", table.num_rows, table.nbytes, summary_seconds),
        StageRow("end-to-end (wall clock)", table.num_rows, read.bytes, wall),
    ]
    return DemoReport(
        rows_written=written.rows_written,
        rows_read=table.num_rows,
        id_checksum_ok=id_ok,
        offsets_ok=offsets_ok,
        stages=stages,
        summary=summary,
        bootstrap=cluster.bootstrap,
        topic=topic,
        partitions=num_partitions,
        writer_waited=follow.waited,
    )


def _wait_for_reader(
    thread: threading.Thread, memory: Any, rows: int, state: dict[str, Any], stall_timeout: float
) -> None:
    """Join the reader thread; stop waiting (DemoError) if it delivers nothing for ``stall_timeout``."""
    last, last_change = memory.num_rows, time.monotonic()
    while thread.is_alive():
        thread.join(timeout=0.1)
        got = memory.num_rows
        if got != last:
            last, last_change = got, time.monotonic()
        elif time.monotonic() - last_change > stall_timeout:
            raise DemoError(
                f"the reader delivered nothing for {stall_timeout:.0f} s after {got:,} of {rows:,} rows "
                "(were rows deleted by the mock cluster before they were read?)"
            )


def print_report(report: DemoReport, console: Console) -> None:
    """Print the throughput table, the polars summary and the checks (stable lines tests parse)."""
    from rich.table import Table

    table = Table(title="arrowflow demo: throughput per stage (MB = Arrow bytes)")
    for col, justify in (
        ("stage", "left"),
        ("rows", "right"),
        ("MB", "right"),
        ("seconds", "right"),
        ("rows/s", "right"),
        ("MB/s", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in report.stages:
        table.add_row(
            s.name,
            f"{s.rows:,}",
            f"{s.nbytes / 1e6:,.1f}",
            f"{s.seconds:.2f}",
            f"{s.rows_per_s:,.0f}",
            f"{s.mb_per_s:,.1f}",
        )
    console.print(table)
    console.print(
        f"writer waited {report.writer_waited:.2f} s for the reader (mock cluster retention)",
        markup=False,
        highlight=False,
    )

    summary = report.summary
    st = Table(
        title=f"rows read back, by country (polars; topic {report.topic!r}, {report.partitions} partitions)"
    )
    for name in summary.columns:
        st.add_column(name, justify="left" if name == "country" else "right")
    for row in summary.iter_rows():
        st.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
    console.print(st)
    console.print(f"rows written: {report.rows_written}", markup=False, highlight=False)
    console.print(f"rows read back: {report.rows_read}", markup=False, highlight=False)
    console.print(
        f"id checksum: {'ok' if report.id_checksum_ok else 'MISMATCH'}", markup=False, highlight=False
    )
    console.print(f"offsets: {'ok' if report.offsets_ok else 'GAPS'}", markup=False, highlight=False)


@click.command("demo")
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=10_000_000,
    show_default=True,
    help="Rows to generate, write to the embedded Kafka and read back.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=65_536,
    show_default=True,
    help="Rows per generated block (DataGenSource batch_size).",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed of the generator.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show the progress line.")
def demo_command(rows: int, batch_size: int, seed: int, progress: bool) -> None:
    """Generate rows, write them to an in-process Kafka, read them back, print throughput (no server)."""
    _require("confluent_kafka", "kafka")
    _require("polars", "polars")
    from rich.console import Console

    console = Console()
    console.print(
        f"arrowflow demo: {rows:,} rows through librdkafka's in-process mock Kafka cluster", highlight=False
    )
    try:
        report = run_demo(rows, batch_size=batch_size, seed=seed, progress=progress)
    except ImportError as exc:  # a compiled kernel missing: the message says how to build it
        raise click.ClickException(str(exc)) from exc
    except ArrowflowError as exc:
        raise click.ClickException(f"demo failed: {exc}") from exc
    print_report(report, console)
    if (
        report.rows_read != report.rows_written
        or report.rows_written != rows
        or not report.id_checksum_ok
        or not report.offsets_ok
    ):
        raise click.ClickException("the rows read back differ from the rows written")
