"""Workloads ``kafka-produce`` and ``kafka-decode`` against the librdkafka mock cluster (in process).

``kafka-produce``: the 8-column table with a 16-byte key per row, JSON values. Every sink row says
which guarantee it ran with; every baseline produces with the exact librdkafka configuration of the
at-least-once sink (read from the sink: ``linger.ms=5``, ``delivery.report.only.error=true``,
``enable.idempotence=true`` (so ``acks=all``), ``queue.buffering.max.messages``), plus
``partitioner=murmur2_random`` so that its keys land in the partitions the sink's murmur2 (the Java
client's) picks.

* ``arrowflow KafkaSink at-least-once (default)``: ``KafkaSink.write`` per 64k-row batch (JSON kernel
  + murmur2 kernel + the compiled produce loop ``arrowflow._ext.kafka_produce``, which cuts value/key
  ``bytes`` straight from the Arrow buffers), then ``flush()`` (waits for every delivery). The
  reference.
* ``arrowflow KafkaSink guarantee=none (acks=1)``: the same with ``guarantee="none"`` (no idempotence,
  ``acks=1``), waiting for every delivery at the end of the call.
* ``arrowflow KafkaSink exactly-once``: the transactional sink (acks=all, idempotent), one transaction
  per round with its commit marker and its journal (every row also written to local disk, fsynced):
  what exactly-once costs next to the at-least-once path.
* ``to_pylist + orjson + produce per row``: the idiomatic baseline: ``to_pylist`` per 10k rows,
  ``orjson.dumps`` per row, ``produce`` per message (librdkafka batches), ``flush``; on a subset.
* ``bare produce() over pre-serialized bytes``: the client's ceiling: values and keys serialized
  beforehand (untimed), one ``produce(topic, value, key)`` per message, then ``flush()``.

Output check (after each method's warm-up call): per partition, the number of messages the call
added (high watermarks) equals the count murmur2 assigns to the rows' keys, and the last message of
every partition has the expected key and the expected row as its JSON value. The exactly-once row is
not checked this way (its commit markers take offsets too).

``kafka-decode``: what the source does with a batch of consumed JSON values.

* ``arrowflow Json.decode``: one ``pa.array(list of bytes)`` (what the source builds from the
  consumed messages) + :meth:`arrowflow.formats.Json.decode` (its flat fast path: the compiled scan
  ``arrowflow._ext.json_decode`` + Arrow casts).
* ``pyarrow.json.read_json (joined)``: the payloads joined by newlines into one NDJSON buffer and
  read by Arrow's own (multi-threaded) JSON reader with the explicit schema. An idiomatic baseline.
* ``orjson.loads + RecordBatch.from_pylist``: one dict per message by orjson, on a subset. An
  idiomatic baseline.
* ``json.loads + RecordBatch.from_pylist``: the same with the standard library, on a subset.

Every method's batch is compared with the table the payloads were encoded from.

The mock cluster keeps only the last few MB per partition, which does not matter for producing.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .checks import json_table, same_rows, text_schema
from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_keys, make_table

#: Options every producer here gets on top of the sink's defaults: room for a whole round in the queue.
_QUEUE = {"log_level": 3, "queue.buffering.max.messages": 1_000_000}
_AT_LEAST_ONCE = "arrowflow KafkaSink at-least-once (default)"


def _delete_bench_topics(bootstrap: str) -> None:
    import time

    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    old = [t for t in admin.list_topics(timeout=10).topics if t.startswith("bench-")]
    for fut in admin.delete_topics(old).values() if old else ():
        fut.result(60)
    deadline = time.monotonic() + 60
    while old and set(old) & set(admin.list_topics(timeout=10).topics):
        if time.monotonic() > deadline:
            raise RuntimeError(f"kafka: the old benchmark topics {old} were not deleted")
        time.sleep(0.2)


def _mock_cluster() -> tuple[Any, str]:
    """``(holder, bootstrap)`` of the cluster to produce into: librdkafka's in-process mock cluster
    (alive while ``holder`` is), or, when ``ARROWFLOW_BENCH_KAFKA_BOOTSTRAP`` is set (e.g. to
    ``127.0.0.1:9092``, the Apache Kafka broker of ``tests/services/kafka.sh``), that real broker, on
    which the ``bench-*`` topics of an earlier run are deleted first (the output checks count the
    messages in a topic: each run needs empty ones, as the mock cluster gives)."""
    import os

    from confluent_kafka import Producer

    real = os.environ.get("ARROWFLOW_BENCH_KAFKA_BOOTSTRAP")
    if real:
        _delete_bench_topics(real)
        return None, real
    holder = Producer({"test.mock.num.brokers": 1, "log_level": 3})
    md = holder.list_topics(timeout=10)
    return holder, ",".join(f"{b.host}:{b.port}" for b in md.brokers.values())


class _Landed:
    """Checks what one call produced into a topic: messages per partition and each partition's last
    message, read back with a plain confluent_kafka consumer."""

    def __init__(self, bootstrap: str, table: pa.Table, keys: pa.Array) -> None:
        from confluent_kafka import Consumer

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "bench-check",
                "log_level": 3,
                "enable.auto.commit": False,
            }
        )
        self.table, self.keys = table, keys

    def close(self) -> None:
        self.consumer.close()

    def check(self, topic: str, rows: int) -> Callable[[], str]:
        def check() -> str:
            from confluent_kafka import TopicPartition

            from arrowflow.connectors.kafka.partitioner import murmur2_partitions

            md = self.consumer.list_topics(topic, timeout=10).topics[topic]
            count = len(md.partitions)
            parts = murmur2_partitions(self.keys.slice(0, rows), count)
            expected = np.bincount(parts, minlength=count)
            got = [
                self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(count)
            ]
            if got != expected.tolist():
                raise AssertionError(f"{topic}: messages per partition {got}, expected {expected.tolist()}")
            values: list[bytes] = []
            last_rows: list[int] = []
            for p in range(count):
                if not got[p]:
                    continue
                row = int(np.flatnonzero(parts == p)[-1])
                self.consumer.assign([TopicPartition(topic, p, got[p] - 1)])
                msg = self.consumer.consume(1, timeout=10)
                if not msg or msg[0].error() is not None or msg[0].key() != self.keys[row].as_py():
                    raise AssertionError(f"{topic}[{p}]: last message is not the key of row {row}")
                values.append(msg[0].value() or b"")
                last_rows.append(row)
            same_rows(json_table(values, self.table.schema), self.table.take(last_rows), topic)
            return f"{rows:,} messages over {count} partitions, last of each compared"

        return check


def setup_produce(config: RunConfig) -> Prepared:
    import orjson
    from confluent_kafka import Producer

    from arrowflow.connectors.kafka import KafkaSink, TransactionalKafkaSink

    holder, bootstrap = _mock_cluster()
    table = make_table(config.rows, config.seed)
    keys = make_keys(config.rows, config.seed, 16, 16)
    keyed = table.append_column("key", keys)
    batches = keyed.to_batches(max_chunksize=65_536)
    n = keyed.num_rows
    sink = KafkaSink(bootstrap, topic="bench-af", key_columns=["key"], client_options=_QUEUE)
    fast = KafkaSink(
        bootstrap, topic="bench-none", key_columns=["key"], guarantee="none", client_options=_QUEUE
    )
    # The baselines' configuration is the at-least-once sink's own (less its delivery callback).
    options = {k: v for k, v in sink._producer_config().items() if k != "on_delivery"}
    options["partitioner"] = "murmur2_random"
    failures = {"n": 0}

    def on_delivery(err: Any, msg: Any) -> None:  # with delivery.report.only.error: failures only
        if err is not None:
            failures["n"] += 1

    from arrowflow.formats import Json

    values = Json().encode(table.to_batches()[0] if table.num_columns else table).payloads
    pre_values = values.to_pylist()
    pre_keys = keys.to_pylist()
    bare = Producer({**options, "on_delivery": on_delivery})
    per_row = Producer({**options, "on_delivery": on_delivery})
    py_n = config.subset(20_000 if config.quick else 200_000)
    py_table = table.slice(0, py_n)
    py_keys = pre_keys[:py_n]

    def delivered(rows: int) -> int:
        if failures["n"]:
            raise RuntimeError(f"{failures['n']} messages not delivered")
        return rows

    def run_sink() -> int:
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_none() -> int:
        for b in batches:
            fast.write(b)
        fast._wait_delivered()  # flush() does not wait with guarantee="none"; the others all do
        return n

    def run_bare() -> int:
        produce, poll = bare.produce, bare.poll
        for v, k in zip(pre_values, pre_keys, strict=True):
            try:
                produce("bench-bare", v, k)
            except BufferError:
                poll(0.05)
                produce("bench-bare", v, k)
        bare.flush(60)
        return delivered(n)

    def run_per_row() -> int:
        produce, poll, dumps = per_row.produce, per_row.poll, orjson.dumps
        for start in range(0, py_n, 10_000):
            rows = py_table.slice(start, 10_000).to_pylist()
            for row, k in zip(rows, py_keys[start : start + 10_000], strict=True):
                v = dumps(row)
                try:
                    produce("bench-row", v, k)
                except BufferError:
                    poll(0.05)
                    produce("bench-row", v, k)
        per_row.flush(60)
        return delivered(py_n)

    # Exactly-once: one transaction per round, with the commit marker and the journal a checkpointed
    # pipeline gives it (Arrow IPC in a temporary directory, fsynced at prepare_commit).
    journal_dir = Path(tempfile.mkdtemp(prefix="arrowflow-bench-kafka-"))
    atexit.register(shutil.rmtree, journal_dir, True)
    eos = TransactionalKafkaSink(
        bootstrap,
        topic="bench-eos",
        key_columns=["key"],
        transactional_id_prefix="bench-eos",
        client_options=_QUEUE,
    )
    eos.attach_state_dir(journal_dir)
    eos.recover([])

    def run_eos() -> int:
        for b in batches:
            eos.write(b)
        eos.commit(eos.prepare_commit())
        return n

    landed = _Landed(bootstrap, table, keys)
    run_sink.holder = holder  # type: ignore[attr-defined]  # keeps the mock cluster alive
    methods = {
        _AT_LEAST_ONCE: Method(run=run_sink, check=landed.check("bench-af", n)),
        "arrowflow KafkaSink guarantee=none (acks=1)": Method(
            run=run_none, note="no idempotence; waits for every delivery", check=landed.check("bench-none", n)
        ),
        "arrowflow KafkaSink exactly-once": Method(
            run=run_eos, note="one transaction + journal fsync per round (acks=all)"
        ),
        "to_pylist + orjson + produce per row": Method(
            run=run_per_row,
            note=f"the sink's at-least-once producer options; on {py_n:,} rows, scaled",
            target=Target(min_speedup=2.5),
            check=landed.check("bench-row", py_n),
        ),
        "bare produce() over pre-serialized bytes": Method(
            run=run_bare,
            note="ceiling: values/keys serialized untimed; the sink's at-least-once options",
            target=Target(min_speedup=0.8),
            check=landed.check("bench-bare", n),
        ),
    }

    def teardown() -> None:
        # Clients first: once the mock cluster is gone they would reconnect (and log) until collected.
        landed.close()
        sink.close()
        fast.close()
        eos.close()
        bare.flush(10)
        per_row.flush(10)

    return Prepared(methods=methods, bytes_per_row=keyed.nbytes / n, teardown=teardown)


def setup_decode(config: RunConfig) -> Prepared:
    import io

    import orjson
    import pyarrow.json as pajson

    from arrowflow.formats import Json

    table = make_table(config.rows, config.seed)
    fmt = Json(table.schema)
    payloads = Json().encode(table.combine_chunks().to_batches()[0]).payloads.to_pylist()
    n = len(payloads)
    py_n = config.subset(20_000 if config.quick else 100_000)
    schema = table.schema
    out: dict[str, pa.Table] = {}

    def run_af() -> int:
        out["af"] = pa.Table.from_batches([fmt.decode(pa.array(payloads, pa.binary())).batch])
        return n

    def run_read_json() -> int:
        # The messages as NDJSON (their bytes joined by newlines) through Arrow's own JSON reader.
        ndjson = b"\n".join(payloads)
        out["read_json"] = pajson.read_json(
            io.BytesIO(ndjson), parse_options=pajson.ParseOptions(explicit_schema=schema)
        )
        return n

    def per_row(key: str, loads: Callable[[bytes], Any]) -> Callable[[], int]:
        def run() -> int:
            rows = [loads(p) for p in payloads[:py_n]]
            out[key] = pa.Table.from_batches([pa.RecordBatch.from_pylist(rows, schema=text_schema(schema))])
            return py_n

        return run

    def check(key: str, expected: pa.Table) -> Callable[[], str]:
        return lambda: same_rows(out.pop(key), expected, key)

    methods = {
        "arrowflow Json.decode": Method(run=run_af, target=Target(min_rate=1e6), check=check("af", table)),
        "pyarrow.json.read_json (joined)": Method(
            run=run_read_json,
            note="payloads joined with newlines, explicit schema (multi-threaded)",
            target=Target(min_speedup=1),
            check=check("read_json", table),
        ),
        "orjson.loads + RecordBatch.from_pylist": Method(
            run=per_row("orjson", orjson.loads),
            note=f"on {py_n:,} msgs, scaled",
            target=Target(min_speedup=3),
            check=check("orjson", table.slice(0, py_n)),
        ),
        "json.loads + RecordBatch.from_pylist": Method(
            run=per_row("json", json.loads),
            note=f"on {py_n:,} msgs, scaled",
            check=check("json", table.slice(0, py_n)),
        ),
    }
    return Prepared(methods=methods, bytes_per_row=float(np.mean([len(p) for p in payloads[:1000]])))


def _produce_target() -> str:
    import os

    real = os.environ.get("ARROWFLOW_BENCH_KAFKA_BOOTSTRAP")
    return f"the Apache Kafka broker at {real}" if real else "librdkafka's in-process mock cluster"


register(
    Workload(
        name="kafka-produce",
        description=f"8-column table + 16 B key -> JSON Kafka messages into {_produce_target()}",
        setup=setup_produce,
        reference=_AT_LEAST_ONCE,
        idiomatic=("to_pylist + orjson + produce per row",),
    )
)
register(
    Workload(
        name="kafka-decode",
        description="consumed JSON values -> Arrow batch (the Kafka source's decode path)",
        setup=setup_decode,
        reference="arrowflow Json.decode",
        idiomatic=("pyarrow.json.read_json (joined)", "orjson.loads + RecordBatch.from_pylist"),
    )
)


# -- consume-only: issue 18's fetch path -----------------------------------------------------------
# ``python -m benchmarks.kafka --consume-only [--messages N] [--partitions P] [--rounds R]`` against the
# real broker (``ARROWFLOW_BENCH_KAFKA_BOOTSTRAP``, else 127.0.0.1:$KAFKA_PORT): N JSON messages of the
# 8-column table over P partitions (topic ``consume-only-<N>-p<P>``, produced once and reused), read
# to the end by each stage in a process of its own (its own CPU seconds and peak RSS, ``VmHWM``),
# stages interleaved over rounds:
#
# * ``raw``: one tuned confluent-kafka consumer over every partition (the peers' plain loop's fetch
#   settings), ``consume(num_messages=10000)``, the values of each call made one ``pa.array`` (then
#   dropped): the fastest a Python consumer of confluent-kafka gets;
# * ``af-client``: ``KafkaSource(Raw)`` with ``fetch="client"`` (today's default), its split readers
#   read round robin, ``read_batch(65536, 0.05)``, batches dropped;
# * ``af-columnar``: the same with ``fetch="columnar"`` (the ``kafka_fetch`` kernel).
CONSUME_STAGES = ("raw", "af-client", "af-columnar")
#: The peers' plain loop's consumer settings (benchmarks/peers/jobs/plain_job.py, CONSUMER_TUNING).
_RAW_TUNING = {
    "fetch.max.bytes": 16 * 1024 * 1024,
    "max.partition.fetch.bytes": 4 * 1024 * 1024,
    "queued.max.messages.kbytes": 32 * 1024,
    "fetch.wait.max.ms": 100,
}


def _consume_bootstrap() -> str:
    import os

    from .servers import port

    return os.environ.get("ARROWFLOW_BENCH_KAFKA_BOOTSTRAP") or f"127.0.0.1:{port('KAFKA_PORT', 9092)}"


def _consume_topic(bootstrap: str, messages: int, partitions: int) -> str:
    """The input topic, made (and filled round robin) when it does not hold ``messages`` yet."""
    import time

    from confluent_kafka import Consumer, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from arrowflow.connectors.kafka import KafkaSink

    topic = f"consume-only-{messages}-p{partitions}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    if topic not in admin.list_topics(timeout=30).topics:
        for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            fut.result(60)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "consume-only-check", "log_level": 3})
    deadline = time.monotonic() + 60
    while True:  # a topic just created has no leaders for a moment
        try:
            held = sum(
                c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)
            )
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    c.close()
    if held == messages:
        return topic
    if held:
        raise RuntimeError(f"{topic} holds {held} messages, not {messages}: delete it and run again")
    table = make_table(messages)
    table = table.append_column("_p", pa.array(np.arange(messages, dtype=np.int32) % partitions))
    sink = KafkaSink(bootstrap, topic=topic, partition_column="_p", value_columns=table.schema.names[:-1])
    for batch in table.to_batches(max_chunksize=65_536):
        sink.write(batch)
    sink.flush()
    sink.close()
    return topic


def consume_stage(
    stage: str, bootstrap: str, topic: str, partitions: int, config: dict[str, str] | None = None
) -> dict[str, Any]:
    """Read the whole topic once as ``stage`` says, in this process (``config``: librdkafka options
    of arrowflow's readers); its measurements."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    from arrowflow.connectors.kafka import KafkaSource
    from arrowflow.formats import Raw

    from .peers.profile_parquet import _read_all, stage_result

    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    if stage == "raw":
        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"consume-only-{time.time_ns()}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "log_level": 3,
                **_RAW_TUNING,
            }
        )
        ends, assign = {}, []
        for p in range(partitions):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            ends[p] = high
            assign.append(TopicPartition(topic, p, low))
        c.assign(assign)
        while ends:
            msgs = c.consume(num_messages=10_000, timeout=1.0)
            values = pa.array([m.value() for m in msgs], pa.binary())
            n += len(values)
            for m in msgs:
                p = int(m.partition() or 0)
                if p in ends and (m.offset() or 0) + 1 >= ends[p]:
                    del ends[p]
        c.close()
    elif stage in ("af-client", "af-columnar"):
        fetch = stage.removeprefix("af-")
        source = KafkaSource(
            bootstrap,
            topics=[topic],
            format=Raw(column="value"),
            stopping_offsets="latest",
            fetch=fetch,
            client_options=config or {},
        )
        n = _read_all(source)  # the peers profile's reader loop: read_batch(65536, 0.05) round robin
    else:
        raise ValueError(stage)
    return stage_result(stage, n, n, t0, c0)


def consume_main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.kafka --consume-only``: every stage in its own process, interleaved."""
    import argparse
    import os
    import statistics
    import subprocess
    import sys

    parser = argparse.ArgumentParser(prog="python -m benchmarks.kafka --consume-only")
    parser.add_argument("--consume-only", action="store_true", required=True)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stages", default=",".join(CONSUME_STAGES))
    parser.add_argument(
        "--config", action="append", default=[], help="name=value: a librdkafka option of arrowflow's readers"
    )
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # one stage in this process (internal)
    args = parser.parse_args(argv)
    bootstrap = _consume_bootstrap()
    config = dict(kv.split("=", 1) for kv in args.config)
    topic = f"consume-only-{args.messages}-p{args.partitions}"
    if args.stage:
        print(json.dumps(consume_stage(args.stage, bootstrap, topic, args.partitions, config)))
        return 0
    _consume_topic(bootstrap, args.messages, args.partitions)
    base = [sys.executable, "-m", "benchmarks.kafka", "--consume-only", "--messages", str(args.messages)]
    base += ["--partitions", str(args.partitions)]
    base += [f"--config={kv}" for kv in args.config]
    results: dict[str, list[dict[str, Any]]] = {}
    for rnd in range(args.rounds):
        for stage in args.stages.split(","):
            out = subprocess.run([*base, "--stage", stage], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"round {rnd + 1} {stage}: failed: {out.stderr.strip()[-800:]}", flush=True)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if r["messages"] != args.messages:
                print(f"round {rnd + 1} {stage}: read {r['messages']} messages, expected {args.messages}")
                continue
            results.setdefault(stage, []).append(r)
            print(
                f"round {rnd + 1} {stage:12} {r['seconds']:7.2f} s {r['messages_per_second']:>11,.0f} msg/s "
                f"cpu {r['cpu_seconds']:6.2f} s rss {r['peak_rss_mb']:6.0f} MB "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    print("median over rounds:")
    for stage, rs in results.items():
        med = {
            k: statistics.median(r[k] for r in rs)
            for k in ("messages_per_second", "cpu_seconds", "peak_rss_mb")
        }
        print(
            f"  {stage:12} {med['messages_per_second']:>11,.0f} msg/s  cpu {med['cpu_seconds']:6.2f} s  "
            f"rss {med['peak_rss_mb']:6.0f} MB  ({len(rs)} rounds)"
        )
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(consume_main())
