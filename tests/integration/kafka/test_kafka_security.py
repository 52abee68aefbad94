"""The sink, the transactional sink and the source over the broker's own SSL listener (server
certificate signed by the CA kafka.sh made) and its SASL_PLAINTEXT listener with SCRAM-SHA-256 and
SCRAM-SHA-512 (a user created with the broker's StorageTool). Credentials and TLS options are plain
librdkafka options in ``config``; a wrong password and an untrusted CA are refused with an error, not
a hang."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from kafka_helpers import Broker, json_ids

from arrowflow.connectors.kafka import KafkaSource, kafka_sink
from arrowflow.errors import ConnectorError
from arrowflow.formats import Json

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def _rows(n: int, start: int = 0) -> pa.RecordBatch:
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.record_batch({"id": ids, "name": pa.array([f"n{i}" for i in ids.tolist()])})


@pytest.fixture(params=["ssl", "scram-sha-256", "scram-sha-512"])
def secured(request: pytest.FixtureRequest) -> Broker:
    if request.param == "ssl":
        return request.getfixturevalue("ssl_broker")  # type: ignore[no-any-return]
    sasl: Broker = request.getfixturevalue("sasl_broker")
    return Broker(sasl.name, sasl.bootstrap, {**sasl.security, "sasl.mechanism": request.param.upper()})


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_sink_and_source_round_trip(secured: Broker, guarantee: str) -> None:
    topic = secured.create_topic(secured.topic(f"sec-{guarantee}"), 4)
    sink = kafka_sink(
        secured.bootstrap,
        topic=topic,
        guarantee=guarantee,
        key_columns=["name"],
        format=Json(columns=["id", "name"]),
        client_options=secured.security,
        flush_timeout=30,
    )
    sink.write(_rows(200))
    sink.close()
    source = KafkaSource(
        secured.bootstrap,
        topics=[topic],
        format=Json(SCHEMA),
        stopping_offsets="latest",
        client_options=secured.security,
    )
    assert sorted(source.read_all().column("id").to_pylist()) == list(range(200))
    assert json_ids(secured, topic) == dict.fromkeys(range(200), 1)


def _refused(bootstrap: str, config: dict[str, Any], cause: str) -> None:
    """Every client fails with a ConnectorError that names ``cause`` and is not retryable, within its
    timeouts: the sink (partition metadata), the transactional sink (init_transactions) and the
    source (planning)."""
    for guarantee in ("at-least-once", "exactly-once"):
        sink = kafka_sink(
            bootstrap,
            topic="refused",
            guarantee=guarantee,
            client_options=config,
            flush_timeout=3,
            metadata_timeout=3,
        )
        with pytest.raises(ConnectorError, match=cause) as refused:
            sink.write(_rows(5))  # needs the partition count (or the transaction) first
        assert not refused.value.retryable
        sink.close()  # nothing was queued
    with pytest.raises(ConnectorError, match=cause) as refused:
        KafkaSource(bootstrap, topics=["refused"], client_options=config, metadata_timeout=3).plan()
    assert not refused.value.retryable


def test_wrong_password_is_refused(sasl_broker: Broker) -> None:
    _refused(
        sasl_broker.bootstrap,
        {**sasl_broker.security, "sasl.password": "not-the-password"},
        "SASL authentication error: Authentication failed",
    )


def test_unknown_user_is_refused(sasl_broker: Broker) -> None:
    _refused(
        sasl_broker.bootstrap,
        {**sasl_broker.security, "sasl.username": "somebody-else"},
        "SASL authentication error: Authentication failed",
    )


def test_untrusted_ca_is_refused(ssl_broker: Broker, tmp_path: Path) -> None:
    _refused(
        ssl_broker.bootstrap,
        {**ssl_broker.security, "ssl.ca.location": str(_other_ca(tmp_path))},
        "SSL handshake failed: .*certificate verify failed",
    )


def _other_ca(directory: Path) -> Path:
    """A self-signed CA certificate (PEM) that did not sign the broker's certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some-other-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / "other-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path
