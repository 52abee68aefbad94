"""A broker -> broker pipeline run as its own process by the SIGKILL crash tests of Redis, MQTT and NATS.

``redis``: RedisStreamSource(stream) -> RedisSink(HSET <prefix>:<id> v <row JSON>), exactly-once (HSET
is idempotent). ``nats``: NatsJetStreamSource(durable) -> NatsJetStreamSink(msg ids from ``id``),
exactly-once. ``mqtt``: MqttSource(persistent session, acks on checkpoint) -> MqttSink(QoS 1),
at-least-once.

Rows are ``{"id": int, "text": str}``. The run stops gracefully (final checkpoint) once it has seen
the row with ``id == last``: every earlier row was either checkpointed by an earlier run or is
replayed before it (each source delivers in order). Prints ``started`` on the first batch (the
harness' readiness line), ``progress`` on every batch (the harness kills after a chosen number of
them) and ``done`` at the end.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from crash_harness import DONE
from crash_helpers import Progress

from arrowflow import Pipeline
from arrowflow.formats import Json
from arrowflow.writer import BatchingConfig

SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])


class StopAtLast(Progress):
    """Passes batches through slowly; sets ``stop`` once the row with id ``last`` went by."""

    name = "stop-at-last"

    def __init__(self, last: int, stop: threading.Event, delay: float, idle: float) -> None:
        super().__init__(delay)
        self.last = last
        self.stop = stop
        self.last_batch = time.monotonic()
        threading.Thread(target=self._watch, args=(idle,), daemon=True).start()

    def _watch(self, idle: float) -> None:
        # An earlier run may have checkpointed the last row just before it was killed: then nothing
        # arrives any more and the run ends after ``idle`` quiet seconds.
        while not self.stop.wait(0.2):
            if time.monotonic() - self.last_batch > idle:
                self.stop.set()

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        self.last_batch = time.monotonic()
        super().process(batch)
        if pc.any(pc.equal(batch.column("id"), self.last)).as_py():
            self.stop.set()
        return [batch]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("broker", choices=["redis", "nats", "mqtt"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--source", required=True, help="stream / NATS stream / MQTT topic")
    ap.add_argument("--target", required=True, help="hash prefix / NATS subject / MQTT topic")
    ap.add_argument("--client-id", default="arrowflow-crash")
    ap.add_argument("--last", type=int, required=True)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--batch-rows", type=int, default=50)
    args = ap.parse_args(argv)
    source: Any
    sink: Any
    guarantee = "exactly-once"
    batching = BatchingConfig(max_request_rows=500, max_in_flight=1, max_attempts=None, max_retry_time=60.0)
    if args.broker == "redis":
        from arrowflow.connectors.redis_ import RedisSink, RedisStreamSource

        source = RedisStreamSource(args.url, streams=[args.source], group="crash", format=Json(SCHEMA))
        sink = RedisSink(
            args.url,
            command="hset",
            key_column="id",
            key_prefix=args.target + ":",
            field_column="text",
            format=Json(columns=["id", "text"]),
            batching=batching,
        )
    elif args.broker == "nats":
        from arrowflow.connectors.nats_jetstream import NatsJetStreamSink, NatsJetStreamSource

        source = NatsJetStreamSource(args.url, stream=args.source, durable="crash", format=Json(SCHEMA))
        sink = NatsJetStreamSink(args.url, subject=args.target, msg_id_column="id", batching=batching)
    else:
        from arrowflow.connectors.mqtt_broker import MqttSink, MqttSource

        host, port = args.url.rsplit(":", 1)
        source = MqttSource(
            host, int(port), topics=[args.source], client_id=args.client_id, format=Json(SCHEMA)
        )
        sink = MqttSink(host, int(port), topic=args.target, qos=1, batching=batching)
        guarantee = "at-least-once"
    stop = threading.Event()
    Pipeline(source).via(StopAtLast(args.last, stop, args.delay, args.idle)).to(sink).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=0.2,
        guarantee=guarantee,
        progress=False,
        max_batch_rows=args.batch_rows,
        queue_size=2,
        stop_event=stop,
    )
    print(DONE, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
