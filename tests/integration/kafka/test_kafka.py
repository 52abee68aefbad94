"""KafkaSource / KafkaSink against the Apache Kafka broker of tests/services/kafka.sh (PLAINTEXT).

Transactions, fencing and read_committed are in test_kafka_txn.py; SSL and SASL in
test_kafka_security.py; crashes, restarts and failover in test_kafka_e2e.py, test_kafka_restart.py and
test_kafka_cluster.py."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka_helpers import Broker, consume_all, produce, wait_partitions

from arrowflow import Pipeline
from arrowflow.connectors.kafka import KafkaSink, KafkaSource, TransactionalKafkaSink, murmur2_partitions
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ArrowflowError, ConfigurationError, SerializationError
from arrowflow.formats import Json, Raw

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])


def table(n: int, start: int = 0) -> pa.Table:
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "name": pa.array([f"name-{i}" for i in ids.tolist()]),
            "score": ids.astype(np.float64) / 4,
        }
    )


def read_bounded(broker: Broker, topic: str, **kw: object) -> pa.Table:
    kw.setdefault("format", Json(SCHEMA))
    src = KafkaSource(broker.bootstrap, topics=[topic], stopping_offsets="latest", **kw)  # type: ignore[arg-type]
    return src.read_all(max_rows=64)


def test_importing_arrowflow_does_not_import_confluent_kafka() -> None:
    code = (
        "import sys, arrowflow, arrowflow.connectors.kafka as k; "
        "assert 'confluent_kafka' not in sys.modules, 'imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_roundtrip_with_keys_and_metadata(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    data = table(300)
    keyed = data.append_column("k", pa.array([f"key-{i}" for i in range(300)]))
    with KafkaSink(broker.bootstrap, topic=topic, key_columns=["k"]) as sink:
        sink.write_table(keyed)
    n = wait_partitions(broker, topic)
    got = read_bounded(
        broker, topic, metadata_columns=["_key", "_topic", "_partition", "_offset", "_timestamp", "_headers"]
    ).sort_by("id")
    assert got.select(["id", "name", "score"]).equals(data)
    assert got.column("_key").to_pylist() == [f"key-{i}".encode() for i in range(300)]
    assert set(got.column("_topic").to_pylist()) == {topic}
    # The sink's partitions are Kafka's default partitioner over the key bytes.
    expected = murmur2_partitions(pa.array([f"key-{i}" for i in range(300)]), n)
    assert got.column("_partition").to_numpy().tolist() == expected.tolist()
    # Offsets are dense per partition, starting at 0.
    for p in range(n):
        offs = sorted(
            o for o, q in zip(got.column("_offset").to_pylist(), expected.tolist(), strict=True) if q == p
        )
        assert offs == list(range(len(offs)))
    assert got.column("_timestamp").null_count == 0
    assert got.schema.field("_headers").type == pa.map_(pa.string(), pa.binary())


def test_partitions_equal_java_and_librdkafka_murmur2(broker: Broker, new_topic: Callable[..., str]) -> None:
    # Golden vectors of the Java client's default partitioner (1000 partitions).
    golden = murmur2_partitions(pa.array([b"", b"123456789", b"a", b"abc"], pa.binary()), 1000)
    assert golden.tolist() == [681, 566, 524, 107]
    topic_a, topic_b = new_topic("rd"), new_topic("af")
    keys = [f"user-{i}".encode() for i in range(200)]
    produce(broker, topic_a, [(k, b"x") for k in keys], partitioner="murmur2_random")
    with KafkaSink(broker.bootstrap, topic=topic_b, key_columns=["k"], format=Raw(column="v")) as sink:
        sink.write(pa.record_batch({"k": pa.array(keys, pa.binary()), "v": pa.array([b"x"] * 200)}))
    n = wait_partitions(broker, topic_a)
    by_rd = {m.key(): m.partition() for m in consume_all(broker, topic_a, n)}
    by_af = {m.key(): m.partition() for m in consume_all(broker, topic_b, n)}
    assert len(by_rd) == len(by_af) == 200
    assert by_rd == by_af
    assert len(set(by_af.values())) == n


def test_bounded_reads_stop_exactly(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    produce(broker, topic, [(None, b"%d" % i) for i in range(40)], partition=0)
    produce(broker, topic, [(None, b"%d" % i) for i in range(40, 60)], partition=1)
    explicit = KafkaSource(
        broker.bootstrap,
        partitions=[f"{topic}:0", f"{topic}:1"],
        starting_offsets={f"{topic}:0": 5},
        stopping_offsets={f"{topic}:0": 17, f"{topic}:1": 3},
        metadata_columns=["_partition", "_offset"],
    )
    got = explicit.read_all(max_rows=4)
    rows = sorted(zip(got.column("_partition").to_pylist(), got.column("_offset").to_pylist(), strict=True))
    assert rows == [(0, o) for o in range(5, 17)] + [(1, o) for o in range(3)]
    # latest-at-start: messages produced after planning are not read.
    latest = KafkaSource(broker.bootstrap, partitions=[f"{topic}:0"], stopping_offsets="latest")
    splits = latest.plan()
    produce(broker, topic, [(None, b"late")] * 5, partition=0)
    reader = latest.open(splits[0])
    values: list[bytes] = []
    deadline = time.monotonic() + 20
    while not reader.finished:
        assert time.monotonic() < deadline
        batch = reader.read_batch(7, 0.5)
        if batch is not None:
            values.extend(batch.column("value").to_pylist())
    assert values == [b"%d" % i for i in range(40)]
    assert reader.snapshot() == 40
    assert reader.read_batch(10, 0.1) is None
    reader.close()


def test_consumer_group_resume_from_committed(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    produce(broker, topic, [(None, b"%d" % i) for i in range(30)], partition=2)
    group = f"g-{topic}"
    src = KafkaSource(
        broker.bootstrap, partitions=[f"{topic}:2"], group_id=group, starting_offsets="committed"
    )
    reader = src.open(src.plan()[0])
    first: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(first) < 12:
        assert time.monotonic() < deadline
        b = reader.read_batch(12 - len(first), 0.5)
        if b is not None:
            first.extend(b.column("value").to_pylist())
    assert reader.snapshot() == 12
    reader.commit(reader.snapshot())
    reader.close()
    again = KafkaSource(
        broker.bootstrap,
        partitions=[f"{topic}:2"],
        group_id=group,
        starting_offsets="committed",
        stopping_offsets="latest",
    )
    rest = again.read_all().column("value").to_pylist()
    assert first + rest == [b"%d" % i for i in range(30)]
    # A group without a committed offset starts at offset_reset.
    fresh = KafkaSource(
        broker.bootstrap,
        partitions=[f"{topic}:2"],
        group_id=group + "-new",
        starting_offsets="committed",
        offset_reset="latest",
        stopping_offsets="latest",
    )
    assert fresh.read_all().num_rows == 0


def test_pattern_subscription_and_discovery(broker: Broker, new_topic: Callable[..., str]) -> None:
    prefix = new_topic("pat")
    a, b, other = f"{prefix}-a", f"{prefix}-b", f"x{prefix}-c"
    for t in (a, b, other):
        new_topic(name=t)  # auto-created on the test brokers; created with 4 partitions on a real Kafka
        produce(broker, t, [(None, t.encode())] * 3, partition=0)
        wait_partitions(broker, t)
    src = KafkaSource(
        broker.bootstrap, pattern=f"{prefix}-.*", stopping_offsets="latest", format=Raw(type=pa.string())
    )
    assert sorted(src.read_all().column("value").to_pylist()) == sorted([a] * 3 + [b] * 3)
    unbounded = KafkaSource(broker.bootstrap, pattern=f"{prefix}-.*", discovery_interval=0.5)
    assert unbounded.discovery_interval == 0.5
    known = unbounded.plan()
    assert {s.split_id.rsplit(":", 1)[0] for s in known} == {a, b}
    assert unbounded.discover(known) == []
    c = new_topic(name=f"{prefix}-new")
    produce(broker, c, [(None, b"new")], partition=0)
    wait_partitions(broker, c)
    found = unbounded.discover(known)
    assert {s.split_id.rsplit(":", 1)[0] for s in found} == {c}
    reader = unbounded.open(next(s for s in found if s.split_id == f"{c}:0"))
    got: list[bytes] = []
    deadline = time.monotonic() + 20
    while not got:
        assert time.monotonic() < deadline
        batch = reader.read_batch(10, 0.5)
        if batch is not None:
            got = batch.column("value").to_pylist()
    assert got == [b"new"]  # discovered partitions start at the earliest offset
    assert reader.lag() in (0, None)
    reader.close()


def test_bad_payloads_follow_the_error_policy(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    good = [b'{"id": %d, "name": "n", "score": 1.5}' % i for i in range(10)]
    msgs = [*good[:4], b"not json", *good[4:8], b'{"id": "x"', *good[8:]]
    produce(broker, topic, [(None, m) for m in msgs], partition=1)
    with pytest.raises(SerializationError):
        read_bounded(broker, topic)
    skip = KafkaSource(
        broker.bootstrap, topics=[topic], stopping_offsets="latest", format=Json(SCHEMA), error_policy="skip"
    )
    assert sorted(skip.read_all(max_rows=5).column("id").to_pylist()) == list(range(10))
    assert skip.error_policy.skipped == 2
    dead = MemorySink()
    dl = KafkaSource(
        broker.bootstrap, topics=[topic], stopping_offsets="latest", format=Json(SCHEMA), error_policy=dead
    )
    assert dl.read_all().num_rows == 10
    letters = dead.table().sort_by("offset")
    assert letters.schema.names == ["payload", "topic", "partition", "offset", "error"]
    assert letters.column("payload").to_pylist() == [b"not json", b'{"id": "x"']
    assert letters.column("offset").to_pylist() == [4, 9]
    assert letters.column("partition").to_pylist() == [1, 1]
    assert set(letters.column("topic").to_pylist()) == {topic}
    assert all(letters.column("error").to_pylist())


def test_sink_topic_column_headers_timestamps_tombstones(
    broker: Broker, new_topic: Callable[..., str]
) -> None:
    t1, t2 = new_topic("c1"), new_topic("c2")
    batch = pa.record_batch(
        {
            "topic": pa.array([t1, t2, t1, t2]),
            "key": pa.array([b"a", b"b", None, b"d"], pa.binary()),
            "value": pa.array([b"1", None, b"3", b"4"], pa.binary()),
            "h": pa.array(
                [[("x", b"1")], None, [("y", b"2"), ("y", b"3")], []], pa.map_(pa.string(), pa.binary())
            ),
            "ts": pa.array(
                [1_700_000_000_000, 1_700_000_001_000, None, 1_700_000_003_000], pa.timestamp("ms")
            ),
        }
    )
    with KafkaSink(
        broker.bootstrap,
        topic_column="topic",
        key_columns="key",
        format=Raw(column="value"),
        headers_column="h",
        timestamp_column="ts",
    ) as sink:
        sink.write(batch)
        assert sink.metrics()["messages"] == 4
    got1 = consume_all(broker, t1, wait_partitions(broker, t1))
    got2 = consume_all(broker, t2, wait_partitions(broker, t2))
    one = sorted(((m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in got1), key=lambda r: r[1])
    assert one[0] == (b"a", b"1", [("x", b"1")], 1_700_000_000_000)
    assert one[1][:3] == (None, b"3", [("y", b"2"), ("y", b"3")])
    assert one[1][3] > 1_700_000_003_000  # null timestamp: the producer's clock
    two = {m.key(): m for m in got2}
    assert two[b"b"].value() is None  # a tombstone
    assert two[b"d"].value() == b"4" and two[b"d"].timestamp()[1] == 1_700_000_003_000


def test_backpressure_never_drops(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic("bp")
    data = table(3000)
    sink = KafkaSink(
        broker.bootstrap,
        topic=topic,
        partitioner="round-robin",
        client_options={"queue.buffering.max.messages": 50, "linger.ms": 1},
    )
    for b in data.to_batches(max_chunksize=1000):
        sink.write(b)
    sink.close()
    assert sink.metrics()["queue_full"] > 0
    assert sink.metrics()["messages"] == 3000
    got = read_bounded(broker, topic)
    assert sorted(got.column("id").to_pylist()) == list(range(3000))


def test_refused_messages_go_to_the_error_policy(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic("big")
    batch = pa.record_batch({"v": pa.array([b"ok", b"x" * 5000, b"ok2"], pa.binary())})
    dead = MemorySink()
    with KafkaSink(
        broker.bootstrap,
        topic=topic,
        format=Raw(column="v"),
        client_options={"message.max.bytes": 2000},
        error_policy=dead,
    ) as sink:
        sink.write(batch)
    assert dead.table().num_rows == 1
    assert (
        "too large" in dead.table().column("error")[0].as_py().lower()
        or "size" in dead.table().column("error")[0].as_py().lower()
    )
    fail = KafkaSink(
        broker.bootstrap, topic=topic, format=Raw(column="v"), client_options={"message.max.bytes": 2000}
    )
    with pytest.raises(ArrowflowError):
        fail.write(batch)
    fail.close()
    got = read_bounded(broker, topic, format=Raw(column="v"))
    assert sorted(got.column("v").to_pylist()) == [b"ok", b"ok", b"ok2", b"ok2"]


def test_messages_the_broker_refuses_go_to_the_error_policy(broker: Broker) -> None:
    """The topic's ``max.message.bytes`` is enforced by the broker, per record batch: librdkafka
    reports every message of a refused batch as failed (the oversized one and the ones batched with
    it). Each row ends up exactly once, in the topic or in the dead letter; none is lost."""
    topic = broker.create_topic(broker.topic("refused"), 1, config={"max.message.bytes": "2000"})
    values = [b"ok", b"x" * 5000, b"ok2", b"after"]
    dead = MemorySink()
    with KafkaSink(broker.bootstrap, topic=topic, format=Raw(column="v"), error_policy=dead) as sink:
        sink.write(pa.record_batch({"v": pa.array(values[:3], pa.binary())}))
        sink.write(pa.record_batch({"v": pa.array(values[3:], pa.binary())}))
    letters = dead.table()
    refused = letters.column("value").to_pylist()
    assert b"x" * 5000 in refused
    assert all("MSG_SIZE_TOO_LARGE" in e for e in letters.column("error").to_pylist())
    delivered = [m.value() for m in consume_all(broker, topic)]
    assert sorted(refused + delivered) == sorted(values)
    assert sink.metrics()["delivery_failures"] == len(refused)
    assert sink.metrics()["messages"] == len(delivered)


def test_partitions_added_to_a_topic_are_discovered_and_used(broker: Broker) -> None:
    """CreatePartitions on a live topic: a running pipeline's unbounded source discovers the new
    partitions (``discovery_interval``) and reads them from their first offset; the sink's murmur2
    partitioner spreads keys over the new count once its cached count is older than librdkafka's
    ``topic.metadata.refresh.interval.ms`` (as the Java client does after ``metadata.max.age.ms``)."""
    from confluent_kafka.admin import AdminClient, NewPartitions

    topic = broker.create_topic(broker.topic("grow"), 2)
    schema = pa.schema([("id", pa.int64()), ("k", pa.string())])

    def rows(start: int, n: int) -> pa.RecordBatch:
        ids = np.arange(start, start + n, dtype=np.int64)
        return pa.record_batch({"id": ids, "k": pa.array([f"key-{i}" for i in ids.tolist()])})

    sink = KafkaSink(
        broker.bootstrap,
        topic=topic,
        key_columns=["k"],
        format=Json(columns=["id", "k"]),
        client_options={"topic.metadata.refresh.interval.ms": 200},
    )
    sink.write(rows(0, 100))
    sink.flush()
    out = MemorySink()
    source = KafkaSource(
        broker.bootstrap,
        topics=[topic],
        format=Json(schema),
        metadata_columns=["_partition"],
        discovery_interval=0.5,
    )
    pipeline = Pipeline(source).to(out)
    results: list[Any] = []
    runner = threading.Thread(
        target=lambda: results.append(pipeline.run(progress=False, checkpoint_interval=0.2))
    )
    runner.start()
    try:
        deadline = time.monotonic() + 90

        def wait_rows(n: int) -> None:
            while out.num_rows < n:
                assert time.monotonic() < deadline and runner.is_alive(), f"read {out.num_rows} of {n}"
                time.sleep(0.05)

        wait_rows(100)
        admin = AdminClient(broker.client)
        admin.create_partitions([NewPartitions(topic, 4)])[topic].result(30)
        assert wait_partitions(broker, topic) == 4
        # Write until a message lands on a new partition: the sink's cached count expired.
        written = 100
        probe = Consumer({**broker.client, "group.id": "probe"})

        def new_partitions_written() -> bool:
            try:
                return any(
                    probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (2, 3)
                )
            except KafkaException:  # the new partitions' leadership is still being set up
                return False

        while not new_partitions_written():
            assert time.monotonic() < deadline, "the sink never wrote to the new partitions"
            sink.write(rows(written, 10))
            sink.flush()
            written += 10
            time.sleep(0.1)
        probe.close()
        sink.write(rows(written, 200))  # all of these with murmur2 over 4 partitions
        sink.close()
        total = written + 200
        wait_rows(total)
    finally:
        pipeline.stop()
        runner.join(60)
    assert results and results[0].rows == total
    got = out.table()
    assert sorted(got.column("id").to_pylist()) == list(range(total))  # each row once
    parts = dict(zip(got.column("id").to_pylist(), got.column("_partition").to_pylist(), strict=True))
    keys = pa.array([f"key-{i}" for i in range(total)])
    before = murmur2_partitions(keys, 2).tolist()
    after = murmur2_partitions(keys, 4).tolist()
    assert all(parts[i] == before[i] for i in range(100))
    assert all(parts[i] == after[i] for i in range(written, total))
    assert {parts[i] for i in range(written, total)} >= {2, 3}  # the new partitions were written and read


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"transaction\.timeout\.ms"):
        TransactionalKafkaSink("h:1", topic="t", transaction_timeout_ms=10_000, checkpoint_interval=30)
    with pytest.raises(ConfigurationError, match="topics"):
        KafkaSource("h:1", topics=["a"], pattern="b.*")
    with pytest.raises(ConfigurationError, match="group_id"):
        KafkaSource("h:1", topics=["a"], starting_offsets="committed")
    with pytest.raises(ConfigurationError, match=r"enable\.auto\.commit"):
        KafkaSource("h:1", topics=["a"], client_options={"enable.auto.commit": True})
    with pytest.raises(ConfigurationError, match="partitioner"):
        KafkaSink("h:1", topic="t", partitioner="sticky")
    with pytest.raises(ConfigurationError, match=r"topic\.metadata\.refresh\.interval\.ms"):
        KafkaSink("h:1", topic="t", client_options={"topic.metadata.refresh.interval.ms": "soon"})


def test_write_after_close_raises(broker: Broker) -> None:
    sink = KafkaSink(broker.bootstrap, topic="closed")
    sink.close()
    with pytest.raises(ArrowflowError):
        sink.write(table(1).to_batches()[0])


def test_lag_and_unbounded_read(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic("lag")
    produce(broker, topic, [(None, b"v")] * 10, partition=3)
    src = KafkaSource(broker.bootstrap, partitions=[f"{topic}:3"])
    assert not src.bounded
    reader = src.open(src.plan()[0])
    got = 0
    deadline = time.monotonic() + 20
    while got < 4:
        assert time.monotonic() < deadline
        b = reader.read_batch(4 - got, 0.5)
        got += b.num_rows if b is not None else 0
    assert reader.lag() == 6
    rest = 0
    while rest < 6:
        assert time.monotonic() < deadline
        b = reader.read_batch(100, 0.5)
        rest += b.num_rows if b is not None else 0
    assert rest == 6
    assert reader.read_batch(100, 0.2) is None  # an unbounded read waits for more, never finishes
    assert reader.snapshot() == 10 and not reader.finished
    assert reader.lag() == 0
    reader.close()


def _timestamped(broker: Broker, topic: str, partition: int, stamps: list[int]) -> None:
    p = Producer({**broker.client, "linger.ms": 1})
    for i, ts in enumerate(stamps):
        p.produce(topic, b"%d" % i, None, partition, timestamp=ts)
    assert p.flush(30) == 0


def test_timestamp_start_and_stop(broker: Broker, new_topic: Callable[..., str]) -> None:
    """``offsets_for_times`` (ListOffsets by timestamp) on the broker: the read is the exact slice of
    offsets whose timestamps fall in ``[start, stop)``, per partition, and a bound past the last record
    resolves to the end of the partition."""
    topic = new_topic("ts", partitions=2)
    t0 = 1_700_000_000_000
    _timestamped(broker, topic, 0, [t0 + 1000 * i for i in range(10)])
    _timestamped(broker, topic, 1, [t0 + 500 + 2000 * i for i in range(5)])  # t0+500, +2500, ... +8500

    def read(start: int, stop: int | None) -> list[tuple[int, int]]:
        src = KafkaSource(
            broker.bootstrap,
            topics=[topic],
            starting_offsets="timestamp",
            starting_timestamp_ms=start,
            stopping_offsets="timestamp" if stop is not None else "latest",
            stopping_timestamp_ms=stop,
            metadata_columns=["_partition", "_offset"],
        )
        got = src.read_all()
        return sorted(
            zip(got.column("_partition").to_pylist(), got.column("_offset").to_pylist(), strict=True)
        )

    # [t0+4000, t0+7500): partition 0 offsets 4..7 (t0+4000 .. t0+7000); partition 1 offsets 2, 3
    # (t0+4500, t0+6500).
    assert read(t0 + 4000, t0 + 7500) == [(0, 4), (0, 5), (0, 6), (0, 7), (1, 2), (1, 3)]
    # A start between two records starts at the next one; a stop past the last record reads to the end.
    assert read(t0 + 8001, t0 + 60_000) == [(0, 9), (1, 4)]
    # A start past every record reads nothing; a stop equal to a record's timestamp excludes it.
    assert read(t0 + 60_000, None) == []
    assert read(t0, t0 + 2500) == [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_key_format_partition_column_and_function(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic("kf")
    batch = pa.record_batch(
        {
            "k1": pa.array([1, 2, 3, 4], pa.int64()),
            "v": pa.array(["a", "b", "c", "d"]),
            "p": pa.array([3, 2, 1, 0], pa.int32()),
        }
    )
    with KafkaSink(broker.bootstrap, topic=topic, key_columns=["k1"], partition_column="p") as sink:
        sink.write(batch)
    src = KafkaSource(
        broker.bootstrap,
        topics=[topic],
        stopping_offsets="latest",
        format=Json(pa.schema([("v", pa.string())])),
        key_format=Json(pa.schema([("k1", pa.int64())])),
        metadata_columns=["_partition", "_key"],
    )
    got = src.read_all().sort_by("k1")
    assert got.column("k1").to_pylist() == [1, 2, 3, 4]
    assert got.column("v").to_pylist() == ["a", "b", "c", "d"]
    assert got.column("_partition").to_pylist() == [3, 2, 1, 0]  # the partition column, not murmur2
    assert got.column("_key").to_pylist()[0] == b'{"k1":1}'

    topic2 = new_topic("fn")

    def by_parity(b: pa.RecordBatch, n: int) -> np.ndarray:
        assert n == 4
        return (b.column("k1").to_numpy() % 2).astype(np.int32)

    with KafkaSink(broker.bootstrap, topic=topic2, partitioner=by_parity) as sink:
        sink.write(batch)
    got2 = KafkaSource(
        broker.bootstrap,
        topics=[topic2],
        stopping_offsets="latest",
        format=Json(pa.schema([("k1", pa.int64())])),
        metadata_columns=["_partition"],
    ).read_all()
    assert {(r["k1"], r["_partition"]) for r in got2.to_pylist()} == {(1, 1), (2, 0), (3, 1), (4, 0)}


def test_large_batch_is_produced_in_order_with_failures_routed(
    broker: Broker, new_topic: Callable[..., str]
) -> None:
    """A batch larger than the sink's encode chunk (pipelined encode/produce) keeps per-partition
    order, and encode failures in later chunks still reach the policy with their rows."""
    topic = new_topic("big")
    n = 40_000
    ids = np.arange(n, dtype=np.int64)
    score = ids.astype(np.float64)
    score[[5, 20_000, 39_999]] = np.nan  # Json(nan="error") fails these rows
    batch = pa.record_batch({"id": ids, "name": pa.array(["x"] * n), "score": score})
    dead = MemorySink()
    with KafkaSink(broker.bootstrap, topic=topic, partitioner="round-robin", error_policy=dead) as sink:
        sink.write(batch)
    assert dead.table().column("id").to_pylist() == [5, 20_000, 39_999]
    got = KafkaSource(
        broker.bootstrap,
        topics=[topic],
        stopping_offsets="latest",
        format=Json(pa.schema([("id", pa.int64())])),
        metadata_columns=["_partition"],
    ).read_all(max_rows=10_000)
    assert got.num_rows == n - 3
    for p in range(4):
        part = got.filter(pa.compute.equal(got.column("_partition"), p)).column("id").to_numpy()
        assert (np.diff(part) > 0).all()
