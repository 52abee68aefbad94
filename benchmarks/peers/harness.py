"""The peer benchmark's runner: prepares the data, runs every system on every workload in interleaved
rounds, measures each run from outside, verifies its output, and summarises.

One run of a system on a workload:

1. untimed set-up: a fresh output (an empty directory, an empty PostgreSQL table, a new topic with
   ``partitions`` partitions), a fresh consumer group, a spec file;
2. the job process is started (``<interpreter> jobs/<runtime>_job.py SPEC`` or ``java ... PeersJob
   SPEC``); the harness reads the broker's (and for workload 2 PostgreSQL's) CPU counters from
   ``/proc`` before and after, and collects the process's rusage with ``wait4`` (total CPU, peak RSS);
3. the job's own result line gives the job's time and CPU (see jobs/_common.py);
4. the output is read back and compared row by row with the expected rows (verify.py). Only a run
   whose output is exactly right counts; otherwise the system is reported as failed for that
   workload, with the reason, and no time.

Rounds are interleaved (round r runs every system once, the order rotated each round) so that a
machine whose load drifts affects every system alike; the median over the rounds is reported.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..data import make_table
from ..servers import OPENSEARCH_URL, POSTGRES_DSN, port
from . import envs, verify
from .jobs._common import PRICE_LIMIT
from .jobs._vector import SCHEMA, gen_batch
from .systems import DEFAULT_WORKLOADS, OPENSEARCH_SKIPPED, WORKLOADS, System

__all__ = ["Config", "RunRecord", "run_benchmark"]

JOBS = Path(__file__).resolve().parent / "jobs"
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"peers: {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Config:
    messages: int = 1_000_000
    partitions: int = 4
    rounds: int = 3
    workloads: tuple[str, ...] = DEFAULT_WORKLOADS
    systems: tuple[System, ...] = ()
    checkpoint_interval: float = 2.0
    #: Seconds one job may take before it is killed and reported as failed.
    timeout: float = 900.0
    work_dir: str | None = None
    flink_heap: str = "512m"
    bootstrap: str = field(default_factory=lambda: f"127.0.0.1:{port('KAFKA_PORT', 9092)}")
    pg_dsn: str = POSTGRES_DSN
    search_url: str = OPENSEARCH_URL
    quick: bool = False


@dataclass
class RunRecord:
    """One run of one system on one workload."""

    workload: str
    system: str
    round: int
    ok: bool
    error: str | None = None
    seconds: float | None = None  # the job's own clock (jobs/_common.py)
    cpu_seconds: float | None = None  # the job's process CPU over that interval
    process_seconds: float | None = None  # spawn to exit, measured by the harness
    process_cpu_seconds: float | None = None  # rusage of the whole process (user + system)
    peak_rss_mb: float | None = None  # the job's own VmHWM (jobs/_common.peak_rss_mb)
    broker_cpu_seconds: float | None = None
    db_cpu_seconds: float | None = None  # PostgreSQL (workload 2) or the OpenSearch node (workload 4)
    extra: dict[str, Any] = field(default_factory=dict)


# -- servers -----------------------------------------------------------------------------------------


def _services_dir() -> Path:
    return Path(os.environ.get("SERVICES_DIR") or Path(os.environ.get("TMPDIR", "/tmp")) / "arrow-services")


def _pid_from(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def broker_pid() -> int | None:
    """The Kafka broker tests/services/kafka.sh started (``None`` if it was started otherwise)."""
    return _pid_from(_services_dir() / "kafka" / "pid")


def postgres_pid() -> int | None:
    """The postmaster tests/services/postgres.sh started."""
    return _pid_from(_services_dir() / "postgres" / "data" / "postmaster.pid")


def opensearch_pid() -> int | None:
    """The OpenSearch node tests/services/opensearch.sh started."""
    return _pid_from(_services_dir() / "opensearch" / "pid")


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> tuple[float, float, int]:
    """(own CPU, reaped children's CPU) of ``pid`` in seconds, and its parent pid."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    own = (int(fields[11]) + int(fields[12])) / _TICK
    children = (int(fields[13]) + int(fields[14])) / _TICK
    return own, children, int(fields[1])


def server_cpu(pid: int | None) -> float | None:
    """CPU seconds a server has used so far: its own, its reaped children's, and its live children's
    (PostgreSQL runs one backend process per connection)."""
    if pid is None:
        return None
    try:
        own, reaped, _ = _proc_cpu(pid)
    except (OSError, ValueError):
        return None
    total = own + reaped
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == str(pid):
            continue
        try:
            c_own, c_reaped, ppid = _proc_cpu(int(entry.name))
        except (OSError, ValueError):
            continue
        if ppid == pid:
            total += c_own + c_reaped
    return total


# -- set-up ------------------------------------------------------------------------------------------


def _admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import NewTopic

    admin = _admin(bootstrap)  # kept alive until the futures resolve (a destroyed handle fails them)
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for f in futures.values():
        f.result(60)
    # Metadata reaches every client a moment later; wait until the partitions are listed.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions:
            return
        time.sleep(0.2)
    raise TimeoutError(f"topic {topic} not visible with {partitions} partitions")


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = _admin(bootstrap)
    for f in admin.delete_topics([topic]).values():
        try:
            f.result(60)
        except Exception as exc:  # a leftover topic costs disk, not correctness
            _stderr(f"deleting {topic}: {exc}")


def topic_count(bootstrap: str, topic: str, partitions: int) -> int | None:
    """Messages in ``topic`` (sum of high - low watermarks), ``None`` if it does not exist as asked."""
    from confluent_kafka import Consumer, TopicPartition

    md = _admin(bootstrap).list_topics(timeout=10).topics.get(topic)
    if md is None or md.error is not None or len(md.partitions) != partitions:
        return None
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "peers-count", "log_level": 3})
    try:
        total = 0
        for p in range(partitions):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += high - low
        return total
    finally:
        c.close()


def prepare_input(cfg: Config, table: pa.Table, log: Log) -> str:
    """The input topic of workloads 1 and 2: the table as JSON messages, produced once and reused while
    it holds exactly the table's row count (names carry the size, partitions and data seed)."""
    from arrowflow.connectors.kafka import KafkaSink
    from arrowflow.formats import Json

    topic = f"peers-input-{cfg.messages}-p{cfg.partitions}-v1"
    have = topic_count(cfg.bootstrap, topic, cfg.partitions)
    if have == cfg.messages:
        log(f"input topic {topic} already holds {have:,} messages")
        return topic
    if have is not None:
        delete_topic(cfg.bootstrap, topic)
        time.sleep(1.0)
    create_topic(cfg.bootstrap, topic, cfg.partitions)
    log(f"producing {cfg.messages:,} JSON messages into {topic} ({cfg.partitions} partitions)")
    sink = KafkaSink(cfg.bootstrap, topic=topic, format=Json(), partitioner="round-robin")
    for batch in table.to_batches(max_chunksize=65_536):
        sink.write(batch)
    sink.flush()
    sink.close()
    have = topic_count(cfg.bootstrap, topic, cfg.partitions)
    if have != cfg.messages:
        raise RuntimeError(f"input topic {topic} holds {have} messages after producing {cfg.messages}")
    return topic


def expected_rows(workload: str, table: pa.Table, messages: int) -> pa.Table:
    if workload == "parquet":
        return table.filter(pc.less(table.column("price"), PRICE_LIMIT))
    if workload in ("postgres", "opensearch"):
        return table
    return pa.Table.from_batches([gen_batch(np.arange(messages, dtype=np.int64))], schema=SCHEMA)


def opensearch_node(url: str) -> str | None:
    """``"OpenSearch <version>"`` when a real OpenSearch 2.x node answers at ``url``, else ``None``
    (osmem, the in-memory stand-in of tests/services, reports 3.8.0 and does not count)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            info = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    version = info.get("version", {}) if isinstance(info, dict) else {}
    if version.get("distribution") != "opensearch" or not str(version.get("number", "")).startswith("2."):
        return None
    return f"OpenSearch {version['number']}"


def _search_client(url: str) -> Any:
    from opensearchpy import OpenSearch

    return OpenSearch(url, timeout=120)


def create_index(url: str, name: str) -> None:
    """The run's index: one shard, no replica (a single node), dynamic mapping."""
    _search_client(url).indices.create(
        index=name, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0}}
    )


def delete_index(url: str, name: str) -> None:
    _search_client(url).indices.delete(index=name, ignore_unavailable=True)


def reset_pg_table(dsn: str, name: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        # The same table for every system: the upserting exactly-once runs need the key.
        cur.execute(
            f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, price DOUBLE PRECISION, name TEXT, active BOOLEAN, "
            "ts TIMESTAMP, qty INTEGER, code TEXT, score DOUBLE PRECISION)"
        )
        conn.commit()


def drop_pg_table(dsn: str, name: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        conn.commit()


# -- one run -----------------------------------------------------------------------------------------


def _command(system: System, spec_path: Path, cfg: Config) -> list[str]:
    if system.runtime == "flink":
        return [*envs.flink_command(cfg.flink_heap), "arrowflow.peers.PeersJob", str(spec_path)]
    return [envs.python_for(system.runtime), str(JOBS / f"{system.runtime}_job.py"), str(spec_path)]


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any, bool]:
    """``wait4`` the process (its rusage), killing its process group after ``timeout``."""
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage, killed.is_set()


def _result_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("PEERS_RESULT "):
            parsed: dict[str, Any] = json.loads(line[len("PEERS_RESULT ") :])
            return parsed
    return None


def run_one(
    system: System,
    workload: str,
    rnd: int,
    cfg: Config,
    input_topic: str | None,
    expected: pa.Table,
    work: Path,
    log: Log,
) -> RunRecord:
    rec = RunRecord(workload=workload, system=system.name, round=rnd, ok=False)
    # Only [a-zA-Z0-9_] in directory names: Quix's LocalFileSink refuses anything else in its path.
    run_id = f"{system.name.replace('-', '_')}_{workload}_r{rnd}_{uuid.uuid4().hex[:6]}"
    run_dir = work / run_id
    out_dir, scratch = run_dir / "out", run_dir / "scratch"
    out_dir.mkdir(parents=True)
    scratch.mkdir()
    # One table per run: two harness runs (or a run and the test) may share the server.
    table_name = f"peers_{run_id}"
    topic = input_topic or f"peers-out-{run_id.replace('_', '-')}"
    try:
        cmd = _command(system, run_dir / "spec.json", cfg)
    except Exception as exc:  # a venv or the Flink build failed: this system cannot run at all
        rec.error = f"set-up: {exc}"
        return rec
    if workload == "postgres":
        reset_pg_table(cfg.pg_dsn, table_name)
    if workload == "produce":
        create_topic(cfg.bootstrap, topic, cfg.partitions)
    index = f"peers-{run_id.replace('_', '-')}"
    if workload == "opensearch":
        create_index(cfg.search_url, index)
    spec = {
        "workload": workload,
        "bootstrap": cfg.bootstrap,
        "topic": topic,
        "partitions": cfg.partitions,
        "messages": cfg.messages,
        "expected_out": expected.num_rows,
        "guarantee": system.guarantee,
        "parallelism": system.parallelism,
        "checkpoint_interval": cfg.checkpoint_interval,
        "group_id": f"peers-{run_id.replace('_', '-')}",
        "out_dir": str(out_dir),
        "scratch_dir": str(scratch),
        "pg_dsn": cfg.pg_dsn,
        "pg_table": table_name,
        "search_url": cfg.search_url,
        "index": index,
    }
    (run_dir / "spec.json").write_text(json.dumps(spec, indent=2))
    b_pid = broker_pid()
    db_pid = {"postgres": postgres_pid, "opensearch": opensearch_pid}.get(workload, lambda: None)()
    b0, d0 = server_cpu(b_pid), server_cpu(db_pid)
    t0 = time.perf_counter()
    with (run_dir / "stdout.log").open("wb") as out, (run_dir / "stderr.log").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        code, usage, killed = _wait(proc, cfg.timeout)
    rec.process_seconds = time.perf_counter() - t0
    time.sleep(0.2)  # let the postmaster reap the job's backend, so its CPU is counted
    b1, d1 = server_cpu(b_pid), server_cpu(db_pid)
    rec.process_cpu_seconds = usage.ru_utime + usage.ru_stime
    rec.broker_cpu_seconds = None if b0 is None or b1 is None else b1 - b0
    rec.db_cpu_seconds = None if d0 is None or d1 is None else d1 - d0
    stdout = (run_dir / "stdout.log").read_text(errors="replace")
    result = _result_line(stdout)
    if killed or code != 0 or result is None:
        tail = (run_dir / "stderr.log").read_text(errors="replace").strip().splitlines()[-12:]
        why = f"killed after {cfg.timeout:.0f} s" if killed else f"exit {code}"
        rec.error = f"{why}: " + " | ".join(tail)[-1500:]
        log(f"  {system.name:14} {workload:9} round {rnd}: FAILED ({why}; logs in {run_dir})")
        return rec
    rec.seconds = float(result.pop("seconds"))
    rec.cpu_seconds = float(result.pop("cpu_seconds"))
    rss = result.pop("peak_rss_mb", None)
    rec.peak_rss_mb = float(rss) if rss is not None else None
    rec.extra = result
    if workload == "parquet":
        problem = verify.verify_parquet(out_dir, expected)
    elif workload == "postgres":
        problem = verify.verify_postgres(cfg.pg_dsn, table_name, expected)
    elif workload == "opensearch":
        problem = verify.verify_index(cfg.search_url, index, expected)
    else:
        problem = verify.verify_topic(cfg.bootstrap, topic, cfg.partitions, expected)
    if problem is not None:
        rec.error = f"output differs: {problem}"
        log(f"  {system.name:14} {workload:9} round {rnd}: WRONG OUTPUT ({problem}; logs in {run_dir})")
        return rec
    rec.ok = True
    log(
        f"  {system.name:14} {workload:9} round {rnd}: {rec.seconds:7.2f} s "
        f"({cfg.messages / rec.seconds:,.0f} msg/s), cpu {rec.cpu_seconds:.1f} s, "
        f"rss {rec.peak_rss_mb or 0:.0f} MB, verified"
    )
    # Outputs of a verified run are not needed any more (a 1M-row run leaves ~60 MB behind).
    if workload == "produce":
        delete_topic(cfg.bootstrap, topic)
    if workload == "postgres":
        drop_pg_table(cfg.pg_dsn, table_name)
    if workload == "opensearch":
        delete_index(cfg.search_url, index)
    shutil.rmtree(run_dir / "out", ignore_errors=True)
    shutil.rmtree(run_dir / "scratch", ignore_errors=True)
    return rec


# -- the whole benchmark ------------------------------------------------------------------------------


def summarise(records: list[RunRecord], cfg: Config) -> list[dict[str, Any]]:
    """One row per (workload, system): medians over the verified rounds and the ratio to arrowflow
    (arrowflow's msg/s divided by the system's: how many times faster arrowflow at-least-once is)."""
    rows: list[dict[str, Any]] = []
    for workload in cfg.workloads:
        by_system: dict[str, dict[str, Any]] = {}
        for system in cfg.systems:
            recs = [r for r in records if r.workload == workload and r.system == system.name]
            skip = system.skip_reason(workload)
            good = [r for r in recs if r.ok]
            row: dict[str, Any] = {
                "workload": workload,
                "system": system.name,
                "label": system.label,
                "guarantee": system.guarantee,
                "parallelism": system.parallelism,
                "idiom": system.idiom,
                "runs": len(recs),
                "verified_runs": len(good),
                "status": "skipped" if skip else ("ok" if recs and len(good) == len(recs) else "failed"),
                "error": skip or next((r.error for r in recs if not r.ok), None),
            }
            if good and row["status"] == "ok":

                def med(attr: str, good: list[RunRecord] = good) -> float | None:
                    vals = [getattr(r, attr) for r in good if getattr(r, attr) is not None]
                    return statistics.median(vals) if vals else None

                secs = med("seconds")
                row.update(
                    seconds=secs,
                    seconds_all=[r.seconds for r in good],
                    messages_per_second=cfg.messages / secs if secs else None,
                    cpu_seconds=med("cpu_seconds"),
                    process_seconds=med("process_seconds"),
                    process_cpu_seconds=med("process_cpu_seconds"),
                    peak_rss_mb=max((r.peak_rss_mb for r in good if r.peak_rss_mb is not None), default=None),
                    broker_cpu_seconds=med("broker_cpu_seconds"),
                    db_cpu_seconds=med("db_cpu_seconds"),
                )
            by_system[system.name] = row
            rows.append(row)
        ref = by_system.get("arrowflow")
        ref_rate = ref.get("messages_per_second") if ref else None
        for row in by_system.values():
            rate = row.get("messages_per_second")
            row["arrowflow_speedup"] = ref_rate / rate if ref_rate and rate else None
    return rows


def _environment(cfg: Config) -> dict[str, Any]:
    import platform

    from ..core import _environment as base_env

    env = base_env()
    env.update(
        host=platform.node(),
        broker="Apache Kafka (tests/services/kafka.sh)",
        broker_pid_found=broker_pid() is not None,
        postgres_pid_found=postgres_pid() is not None,
        opensearch=opensearch_node(cfg.search_url) if "opensearch" in cfg.workloads else None,
    )
    return env


def run_benchmark(cfg: Config, log: Log = _stderr) -> dict[str, Any]:
    """Run everything; returns the report (the JSON document)."""
    started = time.time()
    own_work = cfg.work_dir is None
    work = Path(cfg.work_dir or tempfile.mkdtemp(prefix="arrowflow_peers_"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work dir {work}; broker {cfg.bootstrap}; {cfg.messages:,} messages, {cfg.partitions} partitions")
    # Build every runtime first, so a first-time pip install or Maven download is never timed.
    for runtime in sorted({s.runtime for s in cfg.systems}):
        try:
            if runtime == "flink":
                envs.flink_command(cfg.flink_heap)
            else:
                envs.python_for(runtime)
        except Exception as exc:
            log(f"{runtime}: set-up failed: {exc}")
    table = make_table(cfg.messages)
    input_topic = None
    if any(WORKLOADS[w].reads_input for w in cfg.workloads):
        input_topic = prepare_input(cfg, table, log)
    records: list[RunRecord] = []
    for workload in cfg.workloads:
        log(WORKLOADS[workload].title)
        expected = expected_rows(workload, table, cfg.messages)
        systems = [s for s in cfg.systems if not s.skip_reason(workload)]
        for rnd in range(cfg.rounds):
            shift = rnd % max(len(systems), 1)
            for system in systems[shift:] + systems[:shift]:
                records.append(
                    run_one(
                        system,
                        workload,
                        rnd,
                        cfg,
                        input_topic if WORKLOADS[workload].reads_input else None,
                        expected,
                        work,
                        log,
                    )
                )
    if own_work and all(r.ok for r in records):
        shutil.rmtree(work, ignore_errors=True)
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": time.time() - started,
        "config": {
            "messages": cfg.messages,
            "partitions": cfg.partitions,
            "rounds": cfg.rounds,
            "workloads": list(cfg.workloads),
            "systems": [s.name for s in cfg.systems],
            "checkpoint_interval": cfg.checkpoint_interval,
            "quick": cfg.quick,
            "bootstrap": cfg.bootstrap,
        },
        "environment": _environment(cfg),
        "skipped_workloads": {} if "opensearch" in cfg.workloads else {"opensearch": OPENSEARCH_SKIPPED},
        "work_dir": str(work),
        "summary": summarise(records, cfg),
        "runs": [asdict(r) for r in records],
    }
