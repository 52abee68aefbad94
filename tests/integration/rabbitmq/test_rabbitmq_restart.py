"""Server restart during a run: a test-owned RabbitMQ node (its own node name, ports
RABBITMQ_TEST_NODE_PORT (5673) and RABBITMQ_TEST_NODE_DIST_PORT (that + 20000), epmd on RABBITMQ_EPMD_PORT
(4369; started here and stopped after the test if none answers there), state in a temp dir; the suite's
broker is never touched) is stopped and started again while a pipeline RabbitMQSource -> RabbitMQSink
runs through it. Durable queues and persistent messages
survive; the source and the sink reconnect and the output holds every input row (at-least-once);
poison messages mixed into the input reach the dead-letter sink."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from arrowflow import Pipeline
from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.rabbitmq import RabbitMQSink, RabbitMQSource
from arrowflow.formats import Json
from arrowflow.ops.base import Operator
from arrowflow.writer import BatchingConfig

RMQ = Path("/usr/lib/rabbitmq/bin")
PORT = int(os.environ.get("RABBITMQ_TEST_NODE_PORT", "5673"))
DIST = int(os.environ.get("RABBITMQ_TEST_NODE_DIST_PORT", str(PORT + 20000)))
EPMD = int(os.environ.get("RABBITMQ_EPMD_PORT", "4369"))
SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])


class _Node:
    def __init__(self, state: Path) -> None:
        self.state = state
        (state / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{PORT}\nloopback_users = none\nlog.console = false\n"
        )
        (state / "enabled_plugins").write_text("[].\n")
        self.env = dict(os.environ)
        self.env.update(
            HOME=str(state),
            RABBITMQ_NODENAME=f"arrowflowtest{PORT}@localhost",
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(PORT),
            RABBITMQ_DIST_PORT=str(DIST),
            RABBITMQ_CONFIG_FILE=str(state / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(state / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(state / "mnesia"),
            RABBITMQ_LOG_BASE=str(state / "log"),
            RABBITMQ_PID_FILE=str(state / "beam.pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_EPMD_PORT=str(EPMD),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.state / "server.out", "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen([str(RMQ / "rabbitmq-server")], env=self.env, stdout=log, stderr=log)
        rc = subprocess.run(
            [str(RMQ / "rabbitmqctl"), "await_startup", "--timeout", "90"], env=self.env, capture_output=True
        ).returncode
        deadline = time.monotonic() + 90
        while rc != 0 and time.monotonic() < deadline:  # the node may not be registered with epmd yet
            time.sleep(1)
            rc = subprocess.run(
                [str(RMQ / "rabbitmqctl"), "await_startup", "--timeout", "90"],
                env=self.env,
                capture_output=True,
            ).returncode
        if rc != 0:
            pytest.fail(f"test RabbitMQ node did not start; log in {self.state}")

    def stop(self) -> None:
        subprocess.run(
            [str(RMQ / "rabbitmqctl"), "stop", str(self.state / "beam.pid")],
            env=self.env,
            capture_output=True,
        )
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Node]:
    if not (RMQ / "rabbitmq-server").exists():
        pytest.fail("rabbitmq-server is not installed (`bash tests/services/rabbitmq.sh start` installs it)")
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", PORT)) == 0:
            pytest.fail(f"port {PORT} is busy; set RABBITMQ_TEST_NODE_PORT")
    state = tmp_path_factory.mktemp("rmqnode")
    # Without an epmd on its port the server script would daemonize one that outlives the test.
    epmd = None
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", EPMD)) != 0:
            epmd = subprocess.Popen(["epmd", "-address", "127.0.0.1", "-port", str(EPMD)])
    n = _Node(state)
    try:
        n.start()
        yield n
        n.stop()
    finally:
        if epmd is not None:
            epmd.terminate()
            epmd.wait(10)
    shutil.rmtree(state, ignore_errors=True)


class _Slow(Operator):
    name = "slow"

    def __init__(self) -> None:
        self.rows = 0

    def process(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        self.rows += batch.num_rows
        time.sleep(0.03)
        return [batch]


def test_pipeline_survives_a_broker_restart(node: _Node, tmp_path: Path) -> None:
    import pika

    url = f"amqp://guest:guest@127.0.0.1:{PORT}/%2F"
    n = 3000
    ids = np.arange(n)
    data = pa.table({"id": pa.array(ids), "text": pa.array([f"t{i}" for i in ids])})
    with RabbitMQSink(url, routing_key="in", declare_queue="in", message_id_column="id") as sink:
        sink.write_table(data.slice(0, n // 2))
    poison = [b"{broken", b"not json", b'{"id": "x"']
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare("out", durable=True)
    for i, p in enumerate(poison):  # persistent, with message ids (the source deduplicates by them)
        ch.basic_publish("", "in", p, pika.BasicProperties(delivery_mode=2, message_id=f"poison-{i}"))
    conn.close()
    with RabbitMQSink(url, routing_key="in", declare_queue="in", message_id_column="id") as sink:
        sink.write_table(data.slice(n // 2))

    dead = MemorySink()
    source = RabbitMQSource(
        url,
        queue="in",
        format=Json(SCHEMA),
        prefetch=300,
        dedup="message_id",
        reconnect_backoff=(0.2, 1.0),
        error_policy=dead,
    )
    sink = RabbitMQSink(
        url,
        routing_key="out",
        batching=BatchingConfig(
            max_request_rows=200, max_attempts=None, max_retry_time=120.0, max_backoff=1.0
        ),
    )
    slow = _Slow()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            Pipeline(source).via(slow).to(sink).run(
                checkpoint_dir=tmp_path / "cp",
                checkpoint_interval=0.3,
                progress=False,
                max_batch_rows=100,
                stop_event=stop,
            )
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while slow.rows < 600 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slow.rows >= 600, "the pipeline did not get going"
    node.stop()
    rows_when_down = slow.rows
    time.sleep(1.0)
    node.start()
    # Let the pipeline reconnect and finish: the input queue drains to 0 messages, ready and unacked.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not errors:
        try:
            c = pika.BlockingConnection(pika.URLParameters(url))
            ch = c.channel()
            left = ch.queue_declare("in", passive=True).method
            out = ch.queue_declare("out", passive=True).method.message_count
            c.close()
        except pika.exceptions.AMQPError:
            time.sleep(0.5)
            continue
        if left.message_count == 0 and left.consumer_count == 1 and out >= n:
            break
        time.sleep(0.5)
    time.sleep(1.0)  # a last checkpoint acknowledges the tail
    stop.set()
    t.join(60)
    assert not errors, errors
    assert slow.rows > rows_when_down
    got = RabbitMQSource(url, queue="out", format=Json(SCHEMA), bounded=True, prefetch=0).read_all()
    got_ids = got.column("id").to_pylist()
    assert set(got_ids) == set(range(n)), f"{n - len(set(got_ids))} rows lost across the restart"
    c = pika.BlockingConnection(pika.URLParameters(url))
    assert c.channel().queue_declare("in", passive=True).method.message_count == 0
    c.close()
    # At-least-once across the restart: a poison message may reach the dead letter twice.
    assert set(dead.table().column("payload").to_pylist()) == set(poison)
