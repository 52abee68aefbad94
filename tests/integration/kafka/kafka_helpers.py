"""Helpers for the Kafka tests: produce with plain confluent-kafka, read back with a plain consumer.

Every helper takes the client options of a :class:`Broker` (its bootstrap plus, for the SSL and SASL
listeners, the security options), so the same helpers check what arrowflow wrote over any listener.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True)
class Broker:
    """How to reach a real Kafka listener: ``bootstrap`` plus the client options it needs."""

    name: str
    bootstrap: str
    #: Security options (``security.protocol``, ``ssl.*``, ``sasl.*``) every client of it needs.
    security: dict[str, Any] = field(default_factory=dict)

    @property
    def client(self) -> dict[str, Any]:
        """librdkafka options of a plain client of this listener."""
        return {"bootstrap.servers": self.bootstrap, "log_level": 3, **self.security}

    def topic(self, prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    def create_topic(
        self, name: str, partitions: int = 4, replication: int = 1, config: dict[str, str] | None = None
    ) -> str:
        """Create ``name`` (AdminClient.create_topics) and wait until its metadata shows it."""
        admin = AdminClient(self.client)
        fut = admin.create_topics([NewTopic(name, partitions, replication, config=config or {})])[name]
        fut.result(60)
        assert wait_partitions(self, name) == partitions
        return name


SCRIPTS = Path(__file__).resolve().parents[2] / "services"

#: The SCRAM user kafka.sh creates (tests/services/_kafka.sh).
SCRAM_USER = "arrowflow"
SCRAM_PASSWORD = "arrowflow-secret"


def services_dir() -> Path:
    """Where the service scripts keep their state (the scripts' own default)."""
    default = Path(os.environ.get("TMPDIR", "/tmp")) / "arrow-services"
    return Path(os.environ.get("SERVICES_DIR", str(default)))


def run_script(script: str, command: str, *args: str, timeout: float = 600) -> str:
    """Run ``tests/services/<script>.sh command args`` (same env, so the same ports); its output."""
    env = dict(os.environ, PYTHON=sys.executable)
    out = subprocess.run(
        ["sh", str(SCRIPTS / f"{script}.sh"), command, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, f"{script}.sh {command} failed:\n{out.stdout}{out.stderr}"
    return out.stdout


@dataclass
class KafkaService:
    """The broker of kafka.sh, for tests that restart it."""

    broker: Broker

    def _own(self) -> None:
        pid_file = services_dir() / "kafka" / "pid"
        if not pid_file.is_file():
            pytest.fail(
                f"the broker on {self.broker.bootstrap} was not started by tests/services/kafka.sh (no "
                f"{pid_file}): this test restarts it, so it needs the script's broker",
                pytrace=False,
            )

    def restart(self) -> None:
        """A broker restart on the same data (SIGTERM, a clean shutdown, then start): kafka.sh restart."""
        self._own()
        run_script("kafka", "restart")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, a clean shutdown: kafka.sh stop); :meth:`resume` starts it again."""
        self._own()
        run_script("kafka", "stop")

    def resume(self) -> None:
        """Start the stopped broker again on its data (kafka.sh resume); returns once it answers."""
        run_script("kafka", "resume")


@dataclass
class Cluster:
    """The three-broker cluster of kafka-cluster.sh (node ids 1..3) and the pid files of its nodes."""

    broker: Broker

    def node_pid(self, node: int) -> int:
        return int((services_dir() / "kafka-cluster" / f"node-{node}" / "pid").read_text())

    def leader(self, topic: str, partition: int = 0, *, avoid: int | None = None) -> int:
        """The node id leading ``topic``/``partition`` now; waits until there is one (other than
        ``avoid``: a node just killed stays leader until the controller fences it)."""
        admin = AdminClient(self.broker.client)
        deadline = time.monotonic() + 60
        while True:
            tmd = admin.list_topics(topic, timeout=10).topics.get(topic)
            if tmd is not None and tmd.error is None and partition in tmd.partitions:
                leader = tmd.partitions[partition].leader
                if leader >= 0 and leader != avoid:
                    return int(leader)
            assert time.monotonic() < deadline, f"{topic}:{partition} has no leader (other than {avoid})"
            time.sleep(0.2)

    def leaders(self, topic: str) -> dict[int, int]:
        """``{partition: leader node}`` of ``topic`` now."""
        tmd = AdminClient(self.broker.client).list_topics(topic, timeout=10).topics[topic]
        return {p: int(m.leader) for p, m in tmd.partitions.items()}

    def elect_preferred_leaders(
        self, topics: tuple[str, ...] = ("__transaction_state", "__consumer_offsets")
    ) -> None:
        """Give every partition back to its preferred replica and wait until ``topics`` are led by
        theirs. A node an earlier test killed and restarted leads nothing until the brokers' own
        rebalance minutes later (and cannot lead before it is back in sync), which can leave the
        internal topics' leaders on disjoint nodes."""
        from confluent_kafka import ElectionType, KafkaException

        for topic in topics:
            self._internal_leaders(topic)
        admin = AdminClient(self.broker.client)
        deadline = time.monotonic() + 180
        while True:
            try:
                admin.elect_leaders(ElectionType.PREFERRED, None).result(timeout=60)
            except KafkaException:
                pass  # ELECTION_NOT_NEEDED, or a preferred replica not yet back in sync: try again
            metadata = admin.list_topics(timeout=10).topics
            off = [
                (t, p, m.leader, m.replicas[0])
                for t in topics
                for p, m in metadata[t].partitions.items()
                if m.leader != m.replicas[0]
            ]
            if not off:
                return
            assert time.monotonic() < deadline, f"partitions not led by their preferred replica: {off[:10]}"
            time.sleep(1)

    def coordinator(self, internal_topic: str, key: str) -> int:
        """The node coordinating ``key``: the leader of its partition of ``internal_topic``
        (``__transaction_state`` for a transactional id, ``__consumer_offsets`` for a group), which
        is Java's ``abs(key.hashCode()) % partitions``."""
        h = 0
        for unit in key.encode("utf-16-be").hex(" ", 2).split():
            h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
        state = self._internal_leaders(internal_topic)
        return state[(h & 0x7FFFFFFF) % len(state)]

    def _internal_leaders(self, internal_topic: str) -> dict[int, int]:
        """Leaders of an internal topic, which the broker creates on first use: use it once first
        (a transactional producer's init, a group's offset fetch) on a fresh cluster."""
        if internal_topic not in AdminClient(self.broker.client).list_topics(timeout=10).topics:
            if internal_topic == "__transaction_state":
                Producer({**self.broker.client, "transactional.id": "arrowflow-probe"}).init_transactions(60)
            else:
                probe = Consumer({**self.broker.client, "group.id": "arrowflow-probe"})
                probe.committed([TopicPartition("arrowflow-probe", 0)], timeout=60)
                probe.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                leaders = self.leaders(internal_topic)
                if leaders and min(leaders.values()) >= 0:
                    return leaders
            except KeyError:
                pass
            assert time.monotonic() < deadline, f"{internal_topic} has no leaders"
            time.sleep(0.2)

    def alive(self, node: int) -> bool:
        pid = self.node_pid(node)
        return Path(f"/proc/{pid}").exists() and not _zombie(pid)

    def kill(self, node: int) -> None:
        """SIGKILL node ``node`` (a broker crash: no clean shutdown)."""
        os.kill(self.node_pid(node), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.alive(node):
            assert time.monotonic() < deadline, f"node {node} did not die"
            time.sleep(0.05)

    def start_missing(self) -> None:
        """Start every node that is not running, on its data (kafka-cluster.sh start)."""
        run_script("kafka-cluster", "start")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def datagen(rows: int) -> Any:
    """DataGen of ids ``0..rows-1`` at 150 rows/s (replayable: a restart resumes from its checkpoint)."""
    from arrowflow.connectors.datagen import DataGenSource
    from arrowflow.connectors.datagen import Sequence as Seq

    return DataGenSource(fields={"id": Seq()}, count=rows, batch_size=50, rows_per_second=150)


def disrupt_mid_run(
    broker: Broker, topic: str, write: Callable[[], Any], disrupt: Callable[[], None], rows: int
) -> Any:
    """Run ``write()`` (a writing pipeline of ``datagen(rows)`` into ``topic``, to its end; returns its
    RunResult) and a reading pipeline (KafkaSource over ``topic``, partition discovery every second ->
    MemorySink) at once; when a quarter of the rows were read, both still running, call ``disrupt()``.
    Then: neither failed, the reader read every id exactly once, and a read_committed reader of the
    topic finds every id exactly once. Returns what ``write()`` returned."""
    from arrowflow import Pipeline
    from arrowflow.connectors.kafka import KafkaSource
    from arrowflow.connectors.memory import MemorySink
    from arrowflow.formats import Json

    written: list[Any] = []
    writer = run_in_thread(write, written)
    out = MemorySink()
    reader_source = KafkaSource(
        broker.bootstrap, topics=[topic], format=Json(pa.schema([("id", pa.int64())])), discovery_interval=1.0
    )
    read: list[Any] = []
    reading = Pipeline(reader_source).to(out)
    reader = run_in_thread(lambda: reading.run(progress=False, checkpoint_interval=1.0), read)
    deadline = time.monotonic() + 120
    while out.num_rows < rows // 4:
        assert time.monotonic() < deadline and not read and not written, (out.num_rows, read, written)
        time.sleep(0.1)
    assert writer.is_alive() and reader.is_alive() and out.num_rows < rows  # mid-run on both sides
    disrupt()
    writer.join(240)
    assert not writer.is_alive(), "the writing pipeline did not finish"
    wait_read(reading, reader, out, rows)
    assert not isinstance(written[0], BaseException), written[0]
    assert not isinstance(read[0], BaseException), read[0]
    assert Counter(out.table().column("id").to_pylist()) == Counter(range(rows))  # the reader: each once
    assert json_ids(broker, topic) == Counter(range(rows))  # on the broker: nothing lost, nothing twice
    return written[0]


def run_in_thread(run: Callable[[], Any], results: list[Any]) -> threading.Thread:
    """``run()`` in a daemon thread; its result, or the exception it raised, goes to ``results``."""

    def target() -> None:
        try:
            results.append(run())
        except BaseException as exc:  # reported by the test, not lost in the thread
            results.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def wait_read(pipeline: Any, thread: threading.Thread, out: Any, rows: int, idle: float = 60.0) -> None:
    """Wait until ``out`` (the MemorySink of an unbounded reading ``pipeline`` run by ``thread``) holds
    ``rows`` rows, or nothing more arrived for ``idle`` seconds (rows were lost: the caller's checks
    then say which); then stop the pipeline."""
    seen, since = -1, time.monotonic()
    while out.num_rows < rows and thread.is_alive():
        if out.num_rows != seen:
            seen, since = out.num_rows, time.monotonic()
        elif time.monotonic() - since > idle:
            break
        time.sleep(0.2)
    pipeline.stop()
    thread.join(60)
    assert not thread.is_alive(), "the reading pipeline did not stop"


#: Consumer options of the helpers: a plain assigned reader, no partition-EOF events.
CONSUMER = {"enable.partition.eof": False, "enable.auto.commit": False}


def produce(
    broker: Broker, topic: str, messages: list[tuple[bytes | None, bytes | None]], **conf: Any
) -> None:
    """Produce ``(key, value)`` pairs (default partitioner unless ``partition`` in conf) and flush."""
    partition = conf.pop("partition", None)
    p = Producer({**broker.client, "linger.ms": 1, **conf})
    for key, value in messages:
        while True:
            try:
                if partition is None:
                    p.produce(topic, value, key)
                else:
                    p.produce(topic, value, key, partition)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0


def wait_partitions(broker: Broker, topic: str, timeout: float = 30.0) -> int:
    """The partition count of ``topic`` once its metadata shows it (fails after ``timeout``)."""
    admin = AdminClient(broker.client)
    deadline = time.monotonic() + timeout
    while True:
        tmd = admin.list_topics(topic, timeout=10).topics.get(topic)
        if tmd is not None and tmd.error is None and tmd.partitions:
            return len(tmd.partitions)
        assert time.monotonic() < deadline, f"topic {topic} has no partitions"
        time.sleep(0.1)


def end_offset(consumer: Any, tp: Any, timeout: float = 60.0) -> int:
    """The end offset of ``tp`` (high watermark, or last stable offset under read_committed). A
    retriable error (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE: a broker that was just restarted
    by a test has not elected every partition's leader yet) is asked again until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=20)[1])
        except KafkaException as exc:
            if not exc.args[0].retriable() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def consume_all(
    broker: Broker, topic: str, partitions: int | None = None, *, isolation: str = "read_committed"
) -> list[Any]:
    """Every message in ``topic`` up to the end offsets at call time (the last stable offsets under
    ``read_committed``, the high watermarks under ``read_uncommitted``), as message objects."""
    partitions = wait_partitions(broker, topic) if partitions is None else partitions
    c = Consumer(
        {**broker.client, "group.id": f"reader-{uuid.uuid4().hex}", "isolation.level": isolation, **CONSUMER}
    )
    try:
        ends = {p: end_offset(c, TopicPartition(topic, p)) for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: list[Any] = []
        deadline = time.monotonic() + 60
        pos = dict.fromkeys(range(partitions), 0)
        while any(pos[p] < ends[p] for p in ends):
            assert time.monotonic() < deadline, f"read {len(out)} messages, positions {pos}, ends {ends}"
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                out.append(m)
            for tp in c.position([TopicPartition(topic, p) for p in range(partitions)]):
                if tp.offset >= 0:
                    pos[tp.partition] = tp.offset
        return out
    finally:
        c.close()


def json_ids(broker: Broker, topic: str, *, isolation: str = "read_committed") -> Counter[int]:
    """How often each ``id`` of the JSON messages in ``topic`` is there (as a read_committed reader
    sees them, unless ``isolation`` says otherwise)."""
    return Counter(json.loads(m.value())["id"] for m in consume_all(broker, topic, isolation=isolation))
