"""Broker restart during a run, against a private Tansu (its own port and state dir, started and stopped
by this test through tests/services/kafka.sh, so the shared broker is untouched).

Tansu keeps nothing across a restart (topics, data, producer ids), so what is asserted is what can hold:
messages written while the broker is down are retried, not dropped, and arrive once it is back, as does
everything written after; the sink does not fail. Tansu forgets idempotent producer ids on restart
(librdkafka then times the messages out), so this test runs the sink with ``enable.idempotence=false``;
against a real Kafka the idempotent default survives restarts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.kafka import KafkaSink, KafkaSource
from arrowflow.formats import Json

SCRIPT = Path(__file__).resolve().parents[2] / "services" / "kafka.sh"


@pytest.fixture
def private_tansu(tmp_path: Path) -> Iterator[tuple[str, Callable[[str], None]]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, KAFKA_PORT=str(port), SERVICES_DIR=str(tmp_path / "svc"), PYTHON=sys.executable)

    def ctl(cmd: str) -> None:
        out = subprocess.run(["sh", str(SCRIPT), cmd], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"kafka.sh {cmd} failed: {out.stdout}{out.stderr}"

    ctl("start")
    try:
        yield f"127.0.0.1:{port}", ctl
    finally:
        ctl("stop")


def _ids(start: int, n: int) -> pa.RecordBatch:
    return pa.record_batch({"id": pa.array(np.arange(start, start + n, dtype=np.int64))})


def test_sink_retries_across_a_broker_restart(private_tansu: tuple[str, Callable[[str], None]]) -> None:
    bootstrap, ctl = private_tansu
    sink = KafkaSink(
        bootstrap,
        topic="restart",
        partitioner="round-robin",
        config={"batch.num.messages": 1, "enable.idempotence": False, "message.timeout.ms": 30000},
        flush_timeout=30,
    )
    sink.write(_ids(0, 100))
    sink.flush()
    ctl("stop")
    sink.write(_ids(100, 100))  # queued locally while the broker is down
    ctl("start")
    sink.write(_ids(200, 100))
    sink.flush()
    assert sink.metrics()["delivery_failures"] == 0
    sink.close()
    src = KafkaSource(
        bootstrap, topics=["restart"], format=Json(pa.schema([("id", pa.int64())])), stopping_offsets="latest"
    )
    ids = src.read_all().column("id").to_pylist()
    # Rows 0..99 were on the broker before it restarted (and lost with it); everything else arrives once.
    assert sorted(ids) == list(range(100, 300))
