"""Readiness probe of tests/services/kafka.sh and kafka-cluster.sh: exits 0 once a real round trip works.

Through every listener given (PLAINTEXT, and SSL / SASL_SCRAM when their bootstraps are passed): the
cluster shows ``--brokers`` brokers, a probe topic with that replication factor exists, one message
produced with ``acks=all`` is consumed back. Retries until ``--timeout`` seconds, then exits 1 with
the last error. Run with the Python that has confluent-kafka (the scripts install it).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "__arrowflow_ready"


def round_trip(conf: dict[str, Any], brokers: int) -> None:
    """One produce/consume round trip over ``conf``; raises on any failure."""
    admin = AdminClient(conf)
    md = admin.list_topics(timeout=10)
    if len(md.brokers) < brokers:
        raise RuntimeError(f"{len(md.brokers)} of {brokers} brokers registered")
    if TOPIC not in md.topics:
        fut = admin.create_topics([NewTopic(TOPIC, 1, brokers)], operation_timeout=20)[TOPIC]
        try:
            fut.result(30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    body = uuid.uuid4().hex.encode()
    delivered: list[Any] = []
    p = Producer({**conf, "acks": "all", "message.timeout.ms": 15000})
    p.produce(TOPIC, body, partition=0, on_delivery=lambda err, msg: delivered.append((err, msg)))
    if p.flush(20) != 0 or not delivered or delivered[0][0] is not None:
        raise RuntimeError(f"produce failed: {delivered[0][0] if delivered else 'no delivery report'}")
    offset = delivered[0][1].offset()
    c = Consumer({**conf, "group.id": f"ready-{body.decode()}", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(TOPIC, 0, offset)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error() is not None:
                raise RuntimeError(f"consume failed: {m.error()}")
            if m.value() == body:
                return
        raise RuntimeError("the produced message was not consumed back")
    finally:
        c.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True, help="PLAINTEXT bootstrap.servers")
    ap.add_argument("--brokers", type=int, default=1)
    ap.add_argument("--ssl", help="SSL bootstrap.servers (with --ca)")
    ap.add_argument("--ca", help="CA certificate (PEM) of the SSL listener")
    ap.add_argument("--sasl", help="SASL_PLAINTEXT bootstrap.servers (SCRAM-SHA-512, --user/--password)")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args()
    base = {"log_level": 0, "socket.connection.setup.timeout.ms": 5000}
    listeners = [("PLAINTEXT", {**base, "bootstrap.servers": args.bootstrap})]
    if args.ssl:
        ssl = {"security.protocol": "SSL", "ssl.ca.location": args.ca}
        listeners.append(("SSL", {**base, "bootstrap.servers": args.ssl, **ssl}))
    if args.sasl:
        sasl = {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": args.user,
            "sasl.password": args.password,
        }
        listeners.append(("SASL_PLAINTEXT", {**base, "bootstrap.servers": args.sasl, **sasl}))
    deadline = time.monotonic() + args.timeout
    for name, conf in listeners:
        while True:
            try:
                round_trip(conf, args.brokers)
                break
            except Exception as exc:  # not ready yet: retry until the deadline
                if time.monotonic() > deadline:
                    print(f"ready.py: no round trip over {name} within {args.timeout:.0f} s: {exc}")
                    return 1
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
