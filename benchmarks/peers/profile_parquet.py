"""Where arrowflow's time and memory go on workload (1), Kafka JSON -> filter -> Parquet, stage by stage.

``python -m benchmarks.peers.profile_parquet [--messages N] [--pyspy DIR]`` runs each stage below in a
process of its own (so each has its own peak RSS), against the input topic the peer benchmark made
(``peers-input-<N>-p<P>-v1``: run ``python -m benchmarks.peers --workloads parquet`` first), and prints
seconds, messages/s, process CPU and peak RSS per stage. With ``--pyspy DIR`` it also records the full
pipeline under py-spy (``.peers/venvs/tools``, made on demand) and prints the functions the samples
land in, by own time and by inclusive time.

Stages (each reads all N messages once):

* ``raw-consume``: one tuned confluent-kafka consumer over every partition, ``consume(10000)``, values
  dropped (the plain loop's fetch path: the floor of any consumer in Python);
* ``raw-consume-array``: the same, building one ``pa.array`` of the values per consume call (what
  arrowflow's reader does before decoding);
* ``af-consume``: arrowflow's ``KafkaSource`` (``fetch="columnar"``, as the benchmark job) with the
  ``Raw`` format, its split readers read round robin (``read_batch(65536)``), no pipeline: arrowflow's
  consume path;
* ``af-consume-decode``: the same with ``Json(schema)``: consume + decode;
* ``af-pipeline-null``: ``Pipeline(KafkaSource(Json)).filter(price < 5000).to(NullSink)``: + the
  runner's threads, queues and checkpoints;
* ``af-full``: the workload as the benchmark runs it (``FileSink`` Parquet, checkpoint every 2 s);
* ``decode-only``: ``Json.decode`` of the N payloads already in memory, 64k at a time (no Kafka);
* ``parquet-only``: the filtered rows already in memory through ``FileSink`` in 64k batches + commit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

STAGES = (
    "raw-consume",
    "raw-consume-array",
    "af-consume",
    "af-consume-decode",
    "af-pipeline-null",
    "af-full",
    "decode-only",
    "parquet-only",
)


def _peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def _raw_values(bootstrap: str, topic: str, partitions: int, keep: str) -> Any:
    import pyarrow as pa
    from confluent_kafka import Consumer, TopicPartition

    sys.path.insert(0, str(Path(__file__).resolve().parent / "jobs"))  # plain_job imports _common
    from plain_job import CONSUMER_TUNING

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"profile-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **CONSUMER_TUNING,
        }
    )
    ends = {}
    assign = []
    for p in range(partitions):
        low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        ends[p] = high
        assign.append(TopicPartition(topic, p, low))
    c.assign(assign)
    n = 0
    kept = []
    while ends:
        msgs = c.consume(num_messages=10_000, timeout=1.0)
        for m in msgs:
            p = int(m.partition() or 0)
            if p in ends and (m.offset() or 0) + 1 >= ends[p]:
                del ends[p]
        n += len(msgs)
        if keep == "array":
            kept.append(pa.array([m.value() for m in msgs], pa.binary()))
        elif keep == "list":
            kept.extend(m.value() for m in msgs)
    c.close()
    return n, kept


def _source(bootstrap: str, topic: str, fmt: Any) -> Any:
    from arrowflow.connectors.kafka import KafkaSource

    return KafkaSource(bootstrap, topics=[topic], format=fmt, stopping_offsets="latest", fetch="columnar")


def _read_all(source: Any) -> int:
    readers = [source.open(s) for s in source.plan()]
    n = 0
    try:
        while any(not r.finished for r in readers):
            for r in readers:
                if not r.finished:
                    b = r.read_batch(65_536, 0.05)
                    if b is not None:
                        n += b.num_rows
    finally:
        for r in readers:
            r.close()
    return n


def run_stage(stage: str, bootstrap: str, topic: str, partitions: int, messages: int) -> dict[str, Any]:
    """Run one stage in this process; returns its measurements."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from arrowflow import Pipeline
    from arrowflow.connectors.filesystem import FileSink
    from arrowflow.connectors.null import NullSink
    from arrowflow.formats import Json, Raw

    from ..data import make_table
    from .jobs._common import PRICE_LIMIT
    from .jobs._vector import SCHEMA

    setup: Any = None
    if stage == "decode-only":
        _, chunks = _raw_values(bootstrap, topic, partitions, "array")
        setup = pa.chunked_array(chunks, pa.binary()).combine_chunks()
    elif stage == "parquet-only":
        t = make_table(messages)
        setup = t.filter(pc.less(t.column("price"), PRICE_LIMIT)).cast(SCHEMA)
    out_dir = tempfile.mkdtemp(prefix="profile_parquet_")
    t0, c0 = time.perf_counter(), time.process_time()
    if stage == "raw-consume":
        n, _ = _raw_values(bootstrap, topic, partitions, "none")
    elif stage == "raw-consume-array":
        n, _ = _raw_values(bootstrap, topic, partitions, "array")
    elif stage == "af-consume":
        n = _read_all(_source(bootstrap, topic, Raw(column="value")))
    elif stage == "af-consume-decode":
        n = _read_all(_source(bootstrap, topic, Json(schema=SCHEMA)))
    elif stage in ("af-pipeline-null", "af-full"):
        sink: Any = NullSink() if stage == "af-pipeline-null" else FileSink(out_dir, format="parquet")
        result = (
            Pipeline(_source(bootstrap, topic, Json(schema=SCHEMA)))
            .filter(pc.field("price") < PRICE_LIMIT)
            .to(sink)
            .run(
                checkpoint_dir=os.path.join(out_dir, "_checkpoints"), checkpoint_interval=2.0, progress=False
            )
        )
        n = result.rows
    elif stage == "decode-only":
        fmt = Json(schema=SCHEMA)
        n = 0
        for start in range(0, len(setup), 65_536):
            n += fmt.decode(setup.slice(start, 65_536)).batch.num_rows
    elif stage == "parquet-only":
        sink = FileSink(out_dir, format="parquet")
        for b in setup.to_batches(max_chunksize=65_536):
            sink.write(b)
        sink.close()
        n = messages
    else:
        raise ValueError(stage)
    return stage_result(stage, n, messages, t0, c0)


def stage_result(stage: str, n: int, counted: int, t0: float, c0: float) -> dict[str, Any]:
    """One stage's row: ``n`` messages read, rate over ``counted``, since ``t0`` (perf_counter) and
    ``c0`` (process_time)."""
    seconds = time.perf_counter() - t0
    return {
        "stage": stage,
        "messages": n,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - c0,
        "messages_per_second": counted / seconds,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _tools_python() -> str:
    from . import envs

    return envs.python_for("tools")


#: Where the samples of the full pipeline go: (label, frame substrings that must all be on the stack).
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reader thread", ("arrowflow-reader",)),
    ("  Consumer.consume (librdkafka queue -> one Python Message per message)", ("Consumer_consume",)),
    ("    of which Message_new0 (the Message objects)", ("Consumer_consume", "Message_new0")),
    ("    of which the cyclic GC (set off by those allocations)", ("Consumer_consume", "gc_collect_main")),
    ("  _to_batch (values -> Arrow, metadata columns, decode)", ("_to_batch (arrowflow/connectors/kafka",)),
    ("    of which Json.decode", ("_to_batch (arrowflow/connectors/kafka", "decode (arrowflow/formats/json")),
    ("operator thread (filter)", ("arrowflow-ops",)),
    ("writer thread (FileSink, checkpoints)", ("arrowflow-writer",)),
    ("  Parquet files closed at checkpoints", ("prepare_commit (arrowflow/connectors/filesystem",)),
    ("cyclic GC anywhere", ("gc_collect_main",)),
    ("imports and start-up (main thread)", ("_find_and_load",)),
)


def summarize_pyspy(raw: Path, top: int = 25) -> str:
    """Sample shares per :data:`BUCKETS`, then own and inclusive counts per function, from py-spy's
    ``--format raw`` (collapsed stacks, ``--threads``: the thread is a frame)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
        for label, needles in BUCKETS:
            if all(any(needle in f for f in frames) for needle in needles):
                buckets[label] += n
    lines = [f"{total} samples (on CPU)", "by stage:"]
    lines += [f"  {100 * buckets[label] / total:5.1f}%  {label}" for label, _ in BUCKETS]
    lines.append("own time:")
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    lines.append("inclusive time:")
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ..servers import port

    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.profile_parquet", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--pyspy", type=Path, help="also record af-full under py-spy into this directory")
    parser.add_argument("--summarize", type=Path, help="only summarize an earlier py-spy raw file")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # run one stage in this process (internal)
    args = parser.parse_args(argv)
    bootstrap = f"127.0.0.1:{port('KAFKA_PORT', 9092)}"
    topic = f"peers-input-{args.messages}-p{args.partitions}-v1"
    if args.summarize:
        print(summarize_pyspy(args.summarize))
        return 0
    if args.stage:
        print(json.dumps(run_stage(args.stage, bootstrap, topic, args.partitions, args.messages)))
        return 0
    base = [sys.executable, "-m", "benchmarks.peers.profile_parquet", "--messages", str(args.messages)]
    base += ["--partitions", str(args.partitions)]
    for stage in args.stages.split(","):
        out = subprocess.run([*base, "--stage", stage], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"{stage}: failed: {out.stderr.strip()[-800:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{stage:18} {r['seconds']:7.2f} s  {r['messages_per_second']:>11,.0f} msg/s  "
            f"cpu {r['cpu_seconds']:6.2f} s  rss {r['peak_rss_mb']:6.0f} MB  ({r['messages']:,} rows)",
            flush=True,
        )
    if args.pyspy:
        args.pyspy.mkdir(parents=True, exist_ok=True)
        raw = args.pyspy / "af-full.pyspy.txt"
        pyspy = str(Path(_tools_python()).parent / "py-spy")
        record = [pyspy, "record", "-r", "200", "--threads", "--native", "-f", "raw", "-o", str(raw)]
        subprocess.run(
            [*record, "--", *base, "--stage", "af-full"],
            check=True,
            capture_output=True,
        )
        print(summarize_pyspy(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
