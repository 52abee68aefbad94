"""``KafkaSource(fetch="columnar")`` (the ``arrowflow._ext.kafka_fetch`` kernel) against the real
broker of tests/services/kafka.sh: every column equals what a plain confluent-kafka consumer reads,
positions, commits and restores behave as the client path's. The rest of the source's contract is
covered by running tests/integration/kafka with ``ARROWFLOW_KAFKA_FETCH=columnar``."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka_helpers import Broker, consume_all, produce

from arrowflow.connectors.kafka import KafkaSource
from arrowflow.connectors.kafka.columnar import librdkafka_path
from arrowflow.connectors.kafka.source import ColumnarReader

ALL_META = ["_key", "_topic", "_partition", "_offset", "_timestamp", "_headers"]


def _messages() -> list[dict[str, Any]]:
    """Values (tombstones and empty ones among them), keys, headers (none, empty values, null
    values, repeated names) and explicit timestamps, over two partitions."""
    out = []
    for i in range(120):
        out.append(
            {
                "value": None if i % 11 == 3 else b"" if i % 13 == 4 else b"value-%d" % i * (i % 5 + 1),
                "key": None if i % 7 == 0 else b"" if i % 9 == 0 else b"k%d" % i,
                "headers": None
                if i % 3 == 0
                else [("h", b"%d" % i), ("n", None), ("h", b""), ("é", b"\x00\xff")][: i % 4 + 1],
                "timestamp": 1_700_000_000_000 + i,
                "partition": i % 2,
            }
        )
    return out


def _produce(broker: Broker, topic: str, msgs: list[dict[str, Any]]) -> None:
    p = Producer({**broker.client, "linger.ms": 1})
    for m in msgs:
        kw: dict[str, Any] = {"timestamp": m["timestamp"], "partition": m["partition"]}
        if m["headers"] is not None:
            kw["headers"] = m["headers"]
        p.produce(topic, m["value"], m["key"], **kw)
    assert p.flush(60) == 0


def _rows(table: pa.Table) -> dict[tuple[int, int], tuple[Any, ...]]:
    ts = [None if t is None else int(t.timestamp() * 1000) for t in table.column("_timestamp").to_pylist()]
    return {
        (p, o): (v, k, h, t)
        for p, o, v, k, h, t in zip(
            table.column("_partition").to_pylist(),
            table.column("_offset").to_pylist(),
            table.column("value").to_pylist(),
            table.column("_key").to_pylist(),
            table.column("_headers").to_pylist(),
            ts,
            strict=True,
        )
    }


def test_columns_equal_a_plain_consumer(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic("col", partitions=2)
    msgs = _messages()
    _produce(broker, topic, msgs)
    truth = {
        (m.partition(), m.offset()): (m.value(), m.key(), m.headers(), m.timestamp()[1])
        for m in consume_all(broker, topic, 2)
    }
    assert len(truth) == len(msgs)
    src = KafkaSource(
        broker.bootstrap,
        topics=[topic],
        stopping_offsets="latest",
        metadata_columns=ALL_META,
        fetch="columnar",
    )
    got = src.read_all(max_rows=17)
    assert got.num_rows == len(msgs)
    assert _rows(got) == truth
    assert set(got.column("_topic").to_pylist()) == {topic}
    # Tombstones stay null, empty values stay empty, headerless messages have null headers.
    values = got.column("value").to_pylist()
    assert values.count(None) == sum(m["value"] is None for m in msgs) > 0
    assert values.count(b"") == sum(m["value"] == b"" for m in msgs) > 0
    assert got.column("_headers").null_count == sum(m["headers"] is None for m in msgs)
    client = KafkaSource(
        broker.bootstrap, topics=[topic], stopping_offsets="latest", metadata_columns=ALL_META, fetch="client"
    ).read_all(max_rows=17)
    assert client.sort_by([("_partition", "ascending"), ("_offset", "ascending")]).equals(
        got.sort_by([("_partition", "ascending"), ("_offset", "ascending")])
    )


def _read(reader: Any, rows: int, max_rows: int = 10) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(out) < rows:
        assert time.monotonic() < deadline, f"read {len(out)} of {rows}"
        b = reader.read_batch(min(max_rows, rows - len(out)), 0.5)
        if b is not None:
            out.extend(b.column("value").to_pylist())
    return out


def _drain(reader: Any, max_rows: int) -> list[pa.RecordBatch]:
    """Every batch of a bounded reader until it is finished."""
    out = []
    deadline = time.monotonic() + 30
    while not reader.finished:
        assert time.monotonic() < deadline, (out, reader.snapshot())
        b = reader.read_batch(max_rows, 0.5)
        if b is not None:
            out.append(b)
    return out


def test_positions_commits_and_a_restore(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic("colpos", partitions=1)
    produce(broker, topic, [(None, b"%d" % i) for i in range(50)], partition=0)
    group = f"g-{uuid.uuid4().hex}"
    src = KafkaSource(broker.bootstrap, partitions=[f"{topic}:0"], group_id=group, fetch="columnar")
    split = src.plan()[0]
    reader = src.open(split)
    assert isinstance(reader, ColumnarReader)
    first = _read(reader, 18, 7)
    assert reader.snapshot() == 18
    reader.commit(reader.snapshot())
    c = Consumer({**broker.client, "group.id": group})
    assert c.committed([TopicPartition(topic, 0)], timeout=20)[0].offset == 18
    c.close()
    reader.close()
    # The split reassigned to a new reader at the checkpoint's position: nothing lost or repeated.
    again = src.open(split, 18)
    rest = _read(again, 32)
    assert first + rest == [b"%d" % i for i in range(50)]
    assert again.snapshot() == 50
    assert again.lag() == 0
    again.close()
    # starting_offsets="committed" resumes at the group offset (resolved before the fetcher opens).
    committed = KafkaSource(
        broker.bootstrap,
        partitions=[f"{topic}:0"],
        group_id=group,
        starting_offsets="committed",
        stopping_offsets="latest",
        fetch="columnar",
    )
    assert committed.read_all().column("value").to_pylist() == [b"%d" % i for i in range(18, 50)]


def test_transaction_markers_advance_the_position(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic("coltxn", partitions=1)
    p = Producer({**broker.client, "transactional.id": f"tx-{uuid.uuid4().hex}"})
    p.init_transactions(30)
    for _ in range(2):
        p.begin_transaction()
        for i in range(5):
            p.produce(topic, b"%d" % i, partition=0)
        p.commit_transaction(30)
    src = KafkaSource(
        broker.bootstrap, partitions=[f"{topic}:0"], stopping_offsets="latest", fetch="columnar"
    )
    reader = src.open(src.plan()[0])
    got = [v for b in _drain(reader, 100) for v in b.column("value").to_pylist()]
    # 10 messages and 2 commit markers: the position ends past the last marker.
    assert len(got) == 10
    assert reader.snapshot() == 12
    reader.close()
    # A stop inside the second transaction: 8 messages asked for (stop - position), offsets 0-4, 6, 7
    # and 8 come back (the marker took offset 5), and offset 8 is not returned.
    stopped = KafkaSource(
        broker.bootstrap, partitions=[f"{topic}:0"], stopping_offsets={f"{topic}:0": 8}, fetch="columnar"
    )
    reader = stopped.open(stopped.plan()[0])
    batches = _drain(reader, 100)
    assert [o for b in batches for o in b.column("value").to_pylist()] == [
        b"%d" % i for i in (0, 1, 2, 3, 4, 0, 1)
    ]
    assert reader.snapshot() == 8
    reader.close()


def test_batches_bounded_in_bytes_keep_every_message(broker: Broker, new_topic: Callable[..., str]) -> None:
    topic = new_topic("colbytes", partitions=1)
    values = [b"%03d" % i + b"x" * 97 for i in range(60)]  # 100 bytes each
    produce(broker, topic, [(None, v) for v in values], partition=0)
    src = KafkaSource(
        broker.bootstrap,
        partitions=[f"{topic}:0"],
        stopping_offsets="latest",
        fetch="columnar",
        fetch_max_bytes=250,
    )
    reader = src.open(src.plan()[0])
    batches = _drain(reader, 50)
    reader.close()
    assert [v for b in batches for v in b.column("value").to_pylist()] == values
    # 2 x 100 bytes fit in 250; the rest waits, in order, for the next call.
    assert max(b.num_rows for b in batches) == 2


def test_statistics_and_client_errors_come_back_as_data(
    broker: Broker, new_topic: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    topic = new_topic("colstats", partitions=1)
    src = KafkaSource(broker.bootstrap, partitions=[f"{topic}:0"], fetch="columnar")
    reader = src.open(src.plan()[0])
    deadline = time.monotonic() + 30
    while src.metrics()["statistics"] == 0:
        assert time.monotonic() < deadline, "no statistics report"
        reader.read_batch(10, 0.2)
    reader.close()
    # A broker that is not there: librdkafka's error events are logged (it keeps retrying).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    down = KafkaSource(dead, partitions=[f"{topic}:0"], fetch="columnar")
    caplog.set_level(logging.WARNING, "arrowflow.kafka")
    reader = down.open(down.plan()[0], 0)
    deadline = time.monotonic() + 60
    while not any("librdkafka retries" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "no error event"
        assert reader.read_batch(10, 0.2) is None
    reader.close()


def test_kernel_fetcher_reassigned_reads_from_the_new_offset(
    broker: Broker, new_topic: Callable[..., str]
) -> None:
    from arrowflow._ext import kafka_fetch

    topic = new_topic("colassign", partitions=2)
    produce(broker, topic, [(b"a%d" % i, b"%d" % i) for i in range(20)], partition=0)
    produce(broker, topic, [(None, b"p1-%d" % i) for i in range(5)], partition=1)
    kafka_fetch.load(librdkafka_path())
    f = kafka_fetch.Fetcher(
        [("bootstrap.servers", broker.bootstrap), ("group.id", "x"), ("enable.auto.commit", "false")], topic
    )
    try:
        f.assign([(0, 0)])
        cols: dict[str, pa.Array] = {}
        deadline = time.monotonic() + 30
        while not cols or len(cols["offset"]) == 0:
            assert time.monotonic() < deadline
            cols, errors = f.read(5, 0.5, keys=True)
            assert errors == []
        assert cols["offset"].to_pylist() == [0, 1, 2, 3, 4]
        assert cols["key"].to_pylist() == [b"a%d" % i for i in range(5)]
        # Reassigned: partition 0 from offset 15 and partition 1 from 2.
        f.assign([(0, 15), (1, 2)])
        seen: list[tuple[int, int]] = []
        deadline = time.monotonic() + 30
        while len(seen) < 8:
            assert time.monotonic() < deadline, seen
            cols, errors = f.read(100, 0.5)
            assert errors == []
            seen.extend(zip(cols["partition"].to_pylist(), cols["offset"].to_pylist(), strict=True))
        assert sorted(seen) == [(0, o) for o in range(15, 20)] + [(1, o) for o in range(2, 5)]
    finally:
        f.close()
        f.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        f.read(1, 0.0)


@pytest.mark.parametrize("fetch", ["client", "columnar"])
def test_batches_hold_at_most_max_poll_records(
    broker: Broker, new_topic: Callable[..., str], fetch: str
) -> None:
    topic = new_topic(f"polls{fetch}", partitions=1)
    values = [b"%04d" % i for i in range(250)]
    produce(broker, topic, [(None, v) for v in values], partition=0)
    src = KafkaSource(
        broker.bootstrap,
        partitions=[f"{topic}:0"],
        stopping_offsets="latest",
        fetch=fetch,
        max_poll_records=100,
    )
    reader = src.open(src.plan()[0])
    batches = _drain(reader, 65_536)  # the pipeline asks for more; the source caps each read
    reader.close()
    assert [v for b in batches for v in b.column("value").to_pylist()] == values
    assert max(b.num_rows for b in batches) == 100
