"""Failover in the three-broker cluster of tests/services/kafka-cluster.sh (replication factor 3,
``min.insync.replicas=2``): the broker leading a partition is SIGKILLed while one pipeline produces
into the topic (``acks=all``, the sink's default) and another reads it (read_committed). For
exactly-once the killed broker is also the coordinator of the sink's transactions.

At-least-once: nothing is lost, and the idempotent producer's retries to the new leader are not
duplicated. Exactly-once (one transaction per checkpoint): every id is committed exactly once. The
killed node is started again on its data after the test, so the next test finds three brokers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import Cluster, datagen, disrupt_mid_run

from arrowflow import Pipeline
from arrowflow.connectors.kafka import kafka_sink
from arrowflow.errors import ConnectorError

ROWS = 3000


@pytest.fixture
def whole_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster; after the test, every node it killed is started again on its data."""
    yield cluster
    cluster.start_missing()


@pytest.mark.timeout(900)  # a broker restart or failover on a loaded machine
@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_partition_leader_killed_mid_run(whole_cluster: Cluster, guarantee: str, tmp_path: Path) -> None:
    cluster = whole_cluster
    broker = cluster.broker
    topic = broker.create_topic(broker.topic(f"failover-{guarantee}"), 3, replication=3)
    prefix = f"failover-{topic}"
    if guarantee == "exactly-once":
        # A transactional id whose transaction coordinator also coordinates the group of its commit
        # markers: the node killed below then holds a partition, the transactions and the markers.
        cluster.elect_preferred_leaders()
        for n in range(100):
            prefix = f"failover-{topic}-{n}"
            tid, markers = f"{prefix}-0", f"{prefix}-0.arrowflow-commits"
            if cluster.coordinator("__transaction_state", tid) == cluster.coordinator(
                "__consumer_offsets", markers
            ):
                break
        else:
            raise AssertionError(
                "no transactional id whose two coordinators are on one node: leaders "
                f"{sorted(cluster.leaders('__transaction_state').items())} and "
                f"{sorted(cluster.leaders('__consumer_offsets').items())}"
            )
    restarts: list[str] = []

    def write() -> Any:
        """The writing pipeline, restarted from its checkpoint (as a supervisor would) when the
        transactional sink gave up a producer stuck in librdkafka (see TransactionalKafkaSink)."""
        while True:
            sink = kafka_sink(
                broker.bootstrap,
                topic=topic,
                partitioner="round-robin",
                guarantee=guarantee,
                transactional_id_prefix=prefix,
                flush_timeout=30,  # a leader election must not fail a checkpoint's flush
            )
            try:
                return (
                    Pipeline(datagen(ROWS))
                    .to(sink)
                    .run(
                        progress=False,
                        guarantee=guarantee,
                        checkpoint_dir=tmp_path / "cp",
                        checkpoint_interval=0.5,
                    )
                )
            except ConnectorError as exc:
                if "did not return within its timeout" not in str(exc) or len(restarts) >= 2:
                    raise
                restarts.append(str(exc))

    killed: dict[str, int] = {}

    def kill_leader() -> None:
        # Exactly-once: the node coordinating the sink's transactions and markers, which also leads a
        # partition of the topic (each broker leads one of the three); at-least-once: partition 0's.
        leaders = cluster.leaders(topic)
        node = leaders[0]
        if guarantee == "exactly-once":
            node = cluster.coordinator("__transaction_state", f"{prefix}-0")
        assert node in leaders.values(), (node, leaders)
        killed.update(node=node, partition=min(p for p, n in leaders.items() if n == node))
        cluster.kill(node)
        cluster.leader(topic, killed["partition"], avoid=node)  # waits for a new leader

    disrupt_mid_run(broker, topic, write, kill_leader, ROWS)
    # The run ended without the killed node: another leads its partition.
    assert not cluster.alive(killed["node"]) and killed["node"] not in cluster.leaders(topic).values()
    if guarantee == "at-least-once":
        assert not restarts
