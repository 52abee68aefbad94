"""TLS pass-through: the sink and source with ``security.protocol=SSL`` and ``ssl.ca.location``.

A private Tansu (started through tests/services/kafka.sh on its own port) advertises the port of a
TLS-terminating proxy (``tls_proxy.py``, a labelled test helper), so every client connection, including
the ones librdkafka opens after reading metadata, goes through TLS with certificate verification.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from tls_proxy import TlsProxy, make_certificates

from arrowflow.connectors.kafka import KafkaSink, KafkaSource
from arrowflow.errors import ConnectorError
from arrowflow.formats import Json

SCRIPT = Path(__file__).resolve().parents[2] / "services" / "kafka.sh"
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Path], TlsProxy]]:
    tmp = tmp_path_factory.mktemp("kafka-tls")
    certs = make_certificates(tmp / "certs")
    proxy_port, broker_port = _free_port(), _free_port()
    env = dict(
        os.environ,
        KAFKA_PORT=str(broker_port),
        KAFKA_ADVERTISED_PORT=str(proxy_port),
        SERVICES_DIR=str(tmp / "svc"),
        PYTHON=sys.executable,
    )

    def ctl(cmd: str) -> None:
        out = subprocess.run(["sh", str(SCRIPT), cmd], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"kafka.sh {cmd} failed: {out.stdout}{out.stderr}"

    ctl("start")
    proxy = TlsProxy(proxy_port, broker_port, certs["cert"], certs["key"])
    try:
        yield f"127.0.0.1:{proxy_port}", certs, proxy
    finally:
        proxy.close()
        ctl("stop")


def _rows(n: int, start: int = 0) -> pa.RecordBatch:
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.record_batch({"id": ids, "name": pa.array([f"n{i}" for i in ids.tolist()])})


def _tls(certs: dict[str, Path]) -> dict[str, Any]:
    return {"security.protocol": "SSL", "ssl.ca.location": str(certs["ca"])}


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_round_trip_over_tls(tls_broker: tuple[str, dict[str, Path], TlsProxy], guarantee: str) -> None:
    bootstrap, certs, proxy = tls_broker
    topic = f"tls-{guarantee}"
    before = proxy.connections
    sink = KafkaSink(
        bootstrap,
        topic=topic,
        guarantee=guarantee,
        format=Json(columns=["id", "name"]),
        # Tansu's ListOffsets counts record batches (see kafka_helpers): one record per batch.
        config={**_tls(certs), "batch.num.messages": 1},
        flush_timeout=20,
    )
    sink.write(_rows(200))
    sink.close()
    source = KafkaSource(
        bootstrap,
        topics=[topic],
        format=Json(SCHEMA),
        stopping_offsets="latest",
        config=_tls(certs),
    )
    table = source.read_all()
    assert sorted(table.column("id").to_pylist()) == list(range(200))
    assert proxy.connections > before  # the clients really went through the TLS listener


def test_untrusted_certificate_fails_instead_of_hanging(
    tls_broker: tuple[str, dict[str, Path], TlsProxy], tmp_path: Path
) -> None:
    bootstrap, _, proxy = tls_broker
    other = make_certificates(tmp_path / "other", common_name="some-other-ca")
    failures = proxy.handshake_failures
    sink = KafkaSink(
        bootstrap,
        topic="tls-untrusted",
        config={"security.protocol": "SSL", "ssl.ca.location": str(other["ca"])},
        flush_timeout=3,
        metadata_timeout=3,
    )
    with pytest.raises(ConnectorError, match=r"metadata|partitions"):
        sink.write(_rows(5))  # needs the partition count first: no broker is reachable over TLS
    assert proxy.handshake_failures > failures  # refused at the handshake, not somewhere else
    sink.close()  # nothing was queued
