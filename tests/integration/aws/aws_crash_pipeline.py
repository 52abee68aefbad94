"""A Kinesis pipeline run as its own process by the SIGKILL crash test (tests/integration/crash harness).

``produce``: DataGen (ids 0..rows-1, slowed down) -> KinesisSink (at-least-once), checkpointed.
``consume``: KinesisSource (TRIM_HORIZON, ``_shard_id`` + ``_sequence_number`` metadata) -> FileSink
(exactly-once, Parquet). The stream is complete before ``consume`` starts; the run stops itself
(graceful stop, final checkpoint) once every shard's last sequence number went through, counting
from the checkpoint it resumed from. Prints ``started`` once the pipeline runs, ``progress`` on every
batch (the harness kills after a chosen number of them) and ``done`` at the end.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.compute as pc
from crash_harness import DONE
from crash_helpers import Progress

from arrowflow import Pipeline
from arrowflow.connectors.aws import KinesisSink, KinesisSource
from arrowflow.connectors.datagen import DataGenSource, RandomString
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.filesystem import FileSink
from arrowflow.formats import Json
from arrowflow.pipeline.checkpoint import CheckpointStore

SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])
CREDS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class Announce(Progress):
    """Passes batches through, sleeping ``delay`` per batch so that a run lasts long enough to be killed.

    With ``last`` (shard id -> last sequence number of the stream) it also sets ``stop`` once every
    shard's last record went through (``seen`` starts from the resumed checkpoint's positions).
    """

    name = "announce"

    def __init__(
        self,
        delay: float,
        *,
        last: dict[str, int] | None = None,
        seen: dict[str, int] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(delay)
        self.last = last or {}
        self.seen = dict(seen or {})
        self.stop = stop
        self._check()

    def _check(self) -> None:
        if self.stop is not None and all(self.seen.get(s, -1) >= n for s, n in self.last.items()):
            self.stop.set()

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        super().process(batch)
        if self.stop is not None and batch.num_rows:
            for shard in pc.unique(batch.column("_shard_id")).to_pylist():
                rows = batch.filter(pc.equal(batch.column("_shard_id"), shard))
                top = max(int(s) for s in rows.column("_sequence_number").to_pylist())
                self.seen[shard] = max(self.seen.get(shard, -1), top)
            self._check()
        return [batch]


def last_sequence_numbers(endpoint: str, stream: str) -> dict[str, int]:
    """Every shard's last sequence number (the stream is complete when ``consume`` runs)."""
    client = boto3.client("kinesis", endpoint_url=endpoint, **CREDS)
    out: dict[str, int] = {}
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            r = client.get_records(ShardIterator=it, Limit=10000)
            if not r["Records"]:
                break
            out[shard["ShardId"]] = int(r["Records"][-1]["SequenceNumber"])
            it = r.get("NextShardIterator")
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["produce", "consume"])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    aws: dict[str, Any] = {**CREDS, "endpoint_url": args.endpoint}
    source: Any
    sink: Any
    stop = threading.Event()
    if args.mode == "produce":
        source = DataGenSource(
            fields={"id": Seq(), "text": RandomString(length=(5, 10))}, count=args.rows, batch_size=100
        )
        # The sink's default requests in flight: kinesalite keeps every record of concurrent
        # PutRecords into one shard (moto lost some, so this ran with one request at a time).
        sink = KinesisSink(stream_name=args.stream, partition_key_column="text", aws=aws, flush_interval=0.05)
        guarantee = "at-least-once"
        op = Announce(0.06)
    else:
        source = KinesisSource(
            stream_name=args.stream,
            aws=aws,
            format=Json(SCHEMA),
            metadata_columns=["_shard_id", "_sequence_number"],
            poll_interval=0.05,
            min_call_interval=0.05,
        )
        sink = FileSink(args.out, format="parquet")
        guarantee = "exactly-once"
        resumed = CheckpointStore(args.checkpoint_dir).load()
        seen = {}
        if resumed is not None:
            seen = {
                k: int(v["sequence_number"])
                for k, v in resumed.positions.items()
                if v and v.get("sequence_number")
            }
        op = Announce(0.04, last=last_sequence_numbers(args.endpoint, args.stream), seen=seen, stop=stop)
    Pipeline(source).via(op).to(sink).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=0.1,
        guarantee=guarantee,
        progress=False,
        max_batch_rows=50,
        queue_size=2,
        stop_event=stop,
    )
    print(DONE, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
