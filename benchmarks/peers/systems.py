"""The systems the peer benchmark runs, and the workloads.

A :class:`System` is one way to run the jobs: which runtime (the project's own interpreter for
arrowflow, a peer's virtual environment, or the Flink jobs on the JVM), with which delivery guarantee
and parallelism. Every system runs every workload it supports, on the same broker, the same data,
checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_WORKLOADS",
    "OPENSEARCH_SKIPPED",
    "PARALLELISM_READY",
    "SYSTEMS",
    "WORKLOADS",
    "System",
    "Workload",
    "select_systems",
]


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    #: True when the job reads the shared input topic (the 8-column table as JSON messages).
    reads_input: bool


WORKLOADS: dict[str, Workload] = {
    "parquet": Workload("parquet", "(1) Kafka JSON -> filter price < 5000 -> Parquet files", True),
    "postgres": Workload("postgres", "(2) Kafka JSON -> PostgreSQL", True),
    "produce": Workload("produce", "(3) DataGen -> Kafka JSON (produce side)", False),
    "opensearch": Workload("opensearch", "(4) Kafka JSON -> OpenSearch (bulk index, _id = id)", True),
}
#: The workloads run by default; (4) joins them when a real OpenSearch 2.x node answers.
DEFAULT_WORKLOADS = ("parquet", "postgres", "produce")
#: Why workload (4) is not run when no real node answers (printed under the table, stored in the JSON).
OPENSEARCH_SKIPPED = (
    "(4) Kafka -> OpenSearch: not run; no real OpenSearch 2.x node answers on OPENSEARCH_PORT "
    "(tests/services/opensearch.sh; osmem, the in-memory stand-in, does not count)"
)

#: arrowflow at parallelism 2 (``Pipeline.run(parallelism=2)``, passed through by jobs/arrowflow_job.py).
PARALLELISM_READY = True


@dataclass(frozen=True)
class System:
    """One row of the table."""

    name: str  # the --systems key and the JSON key
    runtime: str  # "arrowflow" (the project's interpreter), "flink", or a venv name under .peers/venvs
    guarantee: str = "at-least-once"
    parallelism: int = 1
    #: What the code is written like (shown in --list and stored in the JSON).
    idiom: str = ""
    #: Workloads it does not run, with the reason.
    skips: tuple[tuple[str, str], ...] = ()
    enabled: bool = True

    @property
    def label(self) -> str:
        g = "exactly-once" if self.guarantee == "exactly-once" else "at-least-once"
        return f"{self.name} ({g}, p{self.parallelism})"

    def skip_reason(self, workload: str) -> str | None:
        return dict(self.skips).get(workload)


_NO_FLINK_OPENSEARCH = (
    "opensearch",
    "no OpenSearch connector for Flink 2.x on Maven Central (flink-connector-opensearch2 is 2.0.0-1.19 only)",
)
_FLINK_IDIOM = (
    "DataStream API: KafkaSource (JsonDeserializationSchema into a POJO, bounded at the latest offsets) "
    "-> filter/map -> FileSink.forBulkFormat(AvroParquetWriters) | JdbcSink | DataGeneratorSource -> "
    "KafkaSink(JsonSerializationSchema); local MiniCluster, checkpointing every interval"
)
SYSTEMS: tuple[System, ...] = (
    System(
        "arrowflow",
        "arrowflow",
        idiom="Pipeline(KafkaSource).filter(...).to(FileSink | SqlSink); DataGen -> KafkaSink",
    ),
    System(
        "arrowflow-eos",
        "arrowflow",
        guarantee="exactly-once",
        idiom="the same, guarantee='exactly-once' (SqlSink upsert)",
    ),
    System(
        "arrowflow-p2",
        "arrowflow",
        parallelism=2,
        idiom="the same at parallelism 2",
        enabled=PARALLELISM_READY,
    ),
    System(
        "arrowflow-p2-eos",
        "arrowflow",
        guarantee="exactly-once",
        parallelism=2,
        idiom="the exactly-once job at parallelism 2",
        enabled=PARALLELISM_READY,
    ),
    System("flink-p1", "flink", idiom=_FLINK_IDIOM + " (AT_LEAST_ONCE)", skips=(_NO_FLINK_OPENSEARCH,)),
    System(
        "flink-p1-eos",
        "flink",
        guarantee="exactly-once",
        idiom=_FLINK_IDIOM + " (EXACTLY_ONCE)",
        skips=(_NO_FLINK_OPENSEARCH,),
    ),
    System(
        "flink-p2",
        "flink",
        parallelism=2,
        idiom=_FLINK_IDIOM + " (AT_LEAST_ONCE)",
        skips=(_NO_FLINK_OPENSEARCH,),
    ),
    System(
        "flink-p2-eos",
        "flink",
        guarantee="exactly-once",
        parallelism=2,
        idiom=_FLINK_IDIOM + " (EXACTLY_ONCE)",
        skips=(_NO_FLINK_OPENSEARCH,),
    ),
    System(
        "quix",
        "quix",
        idiom="Application + StreamingDataFrame (sdf[...] filter / sdf.apply) -> "
        "LocalFileSink(format='parquet') | PostgreSQLSink; producing with app.get_producer() + "
        "topic.serialize (its Quickstart); run(count=N)",
        skips=(
            (
                "opensearch",
                "Quix Streams ships no OpenSearch sink (its ElasticsearchSink is the ES 8 client)",
            ),
        ),
    ),
    System(
        "bytewax",
        "bytewax",
        idiom="Dataflow: kop.input(KafkaSource, tail=False) -> op.map(json.loads) -> op.filter -> op.output("
        "custom DynamicSink: pyarrow ParquetWriter | psycopg COPY); DynamicSource generator -> KafkaSink; "
        "run with recovery (snapshot every interval)",
    ),
    System(
        "plain",
        "plain",
        idiom="confluent-kafka consume(num_messages=10000) with raised fetch sizes + orjson + pyarrow "
        "ParquetWriter | psycopg COPY; produce() per row + flush",
    ),
)


def select_systems(names: list[str] | None) -> list[System]:
    """The enabled systems, or the named ones (a disabled one named explicitly is an error)."""
    by_name = {s.name: s for s in SYSTEMS}
    if not names:
        return [s for s in SYSTEMS if s.enabled]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    off = [n for n in names if not by_name[n].enabled]
    if off:
        raise ValueError(
            f"{', '.join(off)}: not runnable yet (see PARALLELISM_READY in benchmarks/peers/systems.py)"
        )
    return [by_name[n] for n in names]
