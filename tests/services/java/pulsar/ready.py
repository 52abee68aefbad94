"""Readiness probe of tests/services/pulsar.sh: the broker is ready when its admin REST API answers a
health check and a message produced to a fresh topic comes back to a consumer. Exits 0 when ready,
1 on timeout or when the broker process (--pid) died. Prints one line per failed attempt."""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
import uuid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (exited, not reaped) is dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _admin_ok(admin: str) -> bool:
    with urllib.request.urlopen(f"{admin}/admin/v2/brokers/health", timeout=10) as r:
        return r.status == 200 and r.read().strip() == b"ok"


def _round_trip(url: str) -> bool:
    import pulsar

    topic = f"persistent://public/default/ready-{uuid.uuid4().hex[:8]}"
    client = pulsar.Client(
        url, operation_timeout_seconds=15, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error)
    )
    try:
        consumer = client.subscribe(topic, "ready", initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(topic)
        body = uuid.uuid4().bytes
        producer.send(body)
        msg = consumer.receive(timeout_millis=15000)
        consumer.acknowledge(msg)
        return msg.data() == body
    finally:
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--admin", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _alive(args.pid):
            print("broker process exited", flush=True)
            return 1
        try:
            if _admin_ok(args.admin) and _round_trip(args.url):
                print("ready", flush=True)
                return 0
            print("not ready: unexpected answer", flush=True)
        except Exception as exc:  # not up yet: connection refused, timeouts, 5xx
            print(f"not ready: {type(exc).__name__}: {exc}", flush=True)
        time.sleep(1)
    print(f"not ready within {args.timeout} s", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
