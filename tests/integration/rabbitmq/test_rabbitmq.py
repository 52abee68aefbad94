"""RabbitMQ against the real broker on 127.0.0.1:5672: acks on commit, redelivery after a lost channel,
message-id deduplication across a restart (exactly-once), poison payloads and unroutable rows to the
dead-letter sink, and a SIGKILLed pipeline process (exactly-once into a two-phase file sink)."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.rabbitmq import RabbitMQSink, RabbitMQSource
from arrowflow.errors import ConfigurationError, SerializationError
from arrowflow.formats import Json
from arrowflow.writer import BatchingConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream

PIPELINE = Path(__file__).resolve().parent / "rabbit_pipeline.py"
SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])


def _table(lo: int, hi: int) -> pa.Table:
    ids = np.arange(lo, hi)
    return pa.table({"id": pa.array(ids), "text": pa.array([f"t{i}" for i in ids])})


def _channel(url: str):  # type: ignore[no-untyped-def]
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    return conn, conn.channel()


@pytest.fixture
def queue(rabbitmq_url: str) -> Iterator[str]:
    name = f"it-{uuid.uuid4().hex[:10]}"
    conn, ch = _channel(rabbitmq_url)
    ch.queue_declare(name, durable=True)
    conn.close()
    yield name
    conn, ch = _channel(rabbitmq_url)
    ch.queue_delete(name)
    conn.close()


def _depth(url: str, queue: str) -> int:
    conn, ch = _channel(url)
    try:
        return int(ch.queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def _read(reader, want: int, deadline_s: float = 30.0) -> pa.Table:  # type: ignore[no-untyped-def]
    import time

    out, n = [], 0
    deadline = time.monotonic() + deadline_s
    while n < want and time.monotonic() < deadline:
        b = reader.read_batch(64, 0.3)
        if b is not None and b.num_rows:
            out.append(b)
            n += b.num_rows
    return pa.Table.from_batches(out, schema=out[0].schema) if out else SCHEMA.empty_table()


def test_acks_only_on_commit_rest_is_redelivered(rabbitmq_url: str, queue: str) -> None:
    with RabbitMQSink(rabbitmq_url, routing_key=queue) as sink:
        sink.write_table(_table(0, 300))
    src = RabbitMQSource(rabbitmq_url, queue=queue, format=Json(SCHEMA), prefetch=1000)
    reader = src.open(src.plan()[0])
    first = _read(reader, 100)
    snap = json.loads(json.dumps(reader.snapshot()))
    rest = _read(reader, 300 - first.num_rows)
    assert first.num_rows + rest.num_rows == 300
    reader.commit(snap)  # acknowledges exactly the first batches
    reader.close()
    assert _depth(rabbitmq_url, queue) == 300 - first.num_rows
    again = RabbitMQSource(rabbitmq_url, queue=queue, format=Json(SCHEMA), metadata_columns=["_redelivered"])
    reader = again.open(again.plan()[0], snap)
    t = _read(reader, 300 - first.num_rows)
    assert sorted(t.column("id").to_pylist()) == sorted(rest.column("id").to_pylist())
    assert all(t.column("_redelivered").to_pylist())
    # A snapshot of the dead channel acknowledges nothing on the new one.
    reader.commit(snap)
    assert _depth(rabbitmq_url, queue) == 0  # all unacked: ready count is 0, but ...
    reader.close()
    assert _depth(rabbitmq_url, queue) == 300 - first.num_rows  # ... they come back on close


def test_dedup_skips_redeliveries_of_a_checkpoint_that_was_not_acked(rabbitmq_url: str, queue: str) -> None:
    """The crash window of Flink's RMQSource: checkpoint durable, acks never sent."""
    with RabbitMQSink(rabbitmq_url, routing_key=queue, message_id_column="id") as sink:
        sink.write_table(_table(0, 200))
    src = RabbitMQSource(rabbitmq_url, queue=queue, format=Json(SCHEMA), dedup="message_id")
    reader = src.open(src.plan()[0])
    got = _read(reader, 200)
    snap = json.loads(json.dumps(reader.snapshot()))
    assert sorted(snap["ids"]) == sorted(str(i) for i in range(200))
    reader.close()  # "crash": no ack
    assert _depth(rabbitmq_url, queue) == 200
    with RabbitMQSink(rabbitmq_url, routing_key=queue, message_id_column="id") as sink:
        sink.write_table(_table(200, 250))
    reader = src.open(src.plan()[0], snap)
    more = _read(reader, 50)
    extra = _read(reader, 1, deadline_s=1.5)
    assert sorted(more.column("id").to_pylist()) == list(range(200, 250))
    assert extra.num_rows == 0, "a redelivered message was emitted twice"
    reader.commit(reader.snapshot())
    assert reader.snapshot()["ids"]  # ids since the last commit are kept until acknowledged
    reader.close()
    assert _depth(rabbitmq_url, queue) == 0
    assert got.num_rows == 200


def test_dedup_needs_ids_poison_and_missing_ids_go_to_dead_letter(rabbitmq_url: str, queue: str) -> None:
    import pika

    conn, ch = _channel(rabbitmq_url)
    ch.basic_publish("", queue, b'{"id": 1, "text": "a"}', pika.BasicProperties(message_id="m1"))
    ch.basic_publish("", queue, b"not json", pika.BasicProperties(message_id="m2"))
    ch.basic_publish("", queue, b'{"id": 3, "text": "c"}')  # no message id
    ch.basic_publish("", queue, b'{"id": 4, "text": "d"}', pika.BasicProperties(message_id="m4"))
    conn.close()
    dlq = MemorySink()
    src = RabbitMQSource(
        rabbitmq_url, queue=queue, format=Json(SCHEMA), dedup="message_id", bounded=True, error_policy=dlq
    )
    t = src.read_all()
    assert t.column("id").to_pylist() == [1, 4]
    dead = dlq.table()
    assert dead.num_rows == 2
    assert set(dead.column("payload").to_pylist()) == {b"not json", b'{"id": 3, "text": "c"}'}
    errors = " ".join(dead.column("error").to_pylist())
    assert "message_id" in errors
    with pytest.raises(SerializationError):
        RabbitMQSource(rabbitmq_url, queue=queue, format=Json(SCHEMA), bounded=True).read_all()


def test_unroutable_rows_go_to_the_dead_letter_sink(rabbitmq_url: str, queue: str) -> None:
    conn, ch = _channel(rabbitmq_url)
    ch.queue_bind(queue, "amq.direct", routing_key=queue)
    conn.close()
    t = _table(0, 100).append_column("rk", pa.array([queue if i % 4 else "nowhere" for i in range(100)]))
    dlq = MemorySink()
    with RabbitMQSink(
        rabbitmq_url,
        exchange="amq.direct",
        routing_key_column="rk",
        header_columns=["text"],
        error_policy=dlq,
        batching=BatchingConfig(max_request_rows=30),
    ) as sink:
        sink.write_table(t)
    dead = dlq.table()
    assert sorted(dead.column("id").to_pylist()) == list(range(0, 100, 4))
    assert all("NO_ROUTE" in e for e in dead.column("error").to_pylist())
    got = RabbitMQSource(
        rabbitmq_url, queue=queue, format=Json(SCHEMA), bounded=True, metadata_columns=["_routing_key"]
    ).read_all()
    assert sorted(got.column("id").to_pylist()) == [i for i in range(100) if i % 4]
    assert set(got.column("_routing_key").to_pylist()) == {queue}
    # persistent delivery + headers from a column
    conn, ch = _channel(rabbitmq_url)
    _method, props, body = ch.basic_get(queue, auto_ack=False)
    assert props.delivery_mode == 2
    assert props.headers["text"] == json.loads(body)["text"]
    assert props.content_type == "application/json"
    conn.close()


def test_missing_exchange_is_fatal_for_its_rows(rabbitmq_url: str) -> None:
    dlq = MemorySink()
    with RabbitMQSink(
        rabbitmq_url, exchange=f"nope-{uuid.uuid4().hex[:6]}", routing_key="x", error_policy=dlq
    ) as s:
        s.write_table(_table(0, 10))
        s.flush()
        assert s.metrics()["retries"] == 0
    assert dlq.num_rows == 10
    assert "NOT_FOUND" in dlq.table().column("error")[0].as_py()


def test_config_errors(rabbitmq_url: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        RabbitMQSink(rabbitmq_url)
    assert e.value.option == "routing_key"
    with pytest.raises(ConfigurationError) as e:
        RabbitMQSource(rabbitmq_url, queue="q", dedup="id")
    assert e.value.option == "dedup"
    with pytest.raises(ConfigurationError) as e:
        RabbitMQSource("http://x", queue="q")
    assert e.value.option == "url"
    with pytest.raises(ConfigurationError) as e:
        RabbitMQSource(rabbitmq_url, queue="q", connect_options={"no_such_option": 1})
    assert e.value.option == "no_such_option"


def test_pipeline_exactly_once_across_sigkill(rabbitmq_url: str, queue: str, tmp_path: Path) -> None:
    n = 3000  # 60 batches of 50
    with RabbitMQSink(rabbitmq_url, routing_key=queue, message_id_column="id") as sink:
        sink.write_table(_table(0, n))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(PIPELINE),
        "--url",
        rabbitmq_url,
        "--queue",
        queue,
        "--out",
        str(out),
        "--last",
        str(n - 1),
        "--checkpoint-dir",
        str(tmp_path / "cp"),
    ]

    def verify(report: CrashReport) -> None:
        assert DONE in report.final_stdout.splitlines()
        ids = ds.dataset(str(out), format="parquet").to_table().column("id").to_pylist()
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates"
        assert set(ids) == set(range(n)), f"{n - len(set(ids))} rows lost"
        assert _depth(rabbitmq_url, queue) == 0

    crash_mid_stream(cmd, verify=verify, kills=3, kill_after=(2, 15), seed=5)
