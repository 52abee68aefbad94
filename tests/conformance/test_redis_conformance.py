"""The conformance suite over RedisStreamSource and RedisSink against the real Redis on 127.0.0.1:6379
(``tests/services/redis.sh``). Keys carry a uuid so parallel runs never collide; each test deletes them."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.redis_ import RedisSink, RedisStreamSource
from arrowflow.formats import Json
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

PORT = int(os.environ.get("REDIS_PORT", "6379"))
URL = f"redis://127.0.0.1:{PORT}/0"


def _client() -> Any:
    import redis

    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
    except OSError:
        pytest.fail(
            f"redis is not answering on 127.0.0.1:{PORT}; start it with `sh tests/services/up.sh redis`"
        )
    return redis.Redis.from_url(URL)


class _Keys:
    def new_key(self, what: str) -> str:
        key = f"conf-{what}-{uuid.uuid4().hex[:10]}"
        client = _client()
        self.add_cleanup(lambda: client.delete(*client.keys(key + "*")) if client.keys(key + "*") else None)  # type: ignore[attr-defined]
        return key


class TestRedisStreamSource(_Keys, SourceConformance):
    """A stream read through a consumer group; reopening replays the PEL after the snapshot."""

    num_rows = 600

    def make_source(self, data: pa.Table) -> Source:
        stream = self.__dict__.get("_stream")
        if stream is None:
            stream = self.new_key("stream")
            with RedisSink(URL, command="xadd", key=stream, batching=None) as sink:
                sink.write_table(data)
            self._stream = stream
        return RedisStreamSource(URL, streams=[stream], group="g", format=Json(data.schema))


class TestRedisStreamSourceTwoStreams(TestRedisStreamSource):
    """Two streams (two splits), with metadata columns."""

    def make_source(self, data: pa.Table) -> Source:
        streams = self.__dict__.get("_streams")
        if streams is None:
            streams = [self.new_key("s1"), self.new_key("s2")]
            half = data.num_rows // 2
            for key, part in ((streams[0], data.slice(0, half)), (streams[1], data.slice(half))):
                with RedisSink(URL, command="xadd", key=key) as sink:
                    sink.write_table(part)
            self._streams = streams
        return RedisStreamSource(
            URL, streams=streams, group="g", format=Json(data.schema), metadata_columns=["_stream", "_id"]
        )


class TestRedisSinkXadd(_Keys, SinkConformance):
    num_rows = 500

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.key = self.new_key("xadd")
        return RedisSink(URL, command="xadd", key=self.key, error_policy=error_policy)

    def read_back(self) -> pa.Table:
        schema = make_table(1).schema
        entries = _client().xrange(self.key)
        fmt = Json(schema)
        payloads = pa.array([fields[b"data"] for _, fields in entries], pa.binary())
        return pa.Table.from_batches([fmt.decode(payloads).batch], schema=schema)

    def bad_batch(self) -> pa.RecordBatch:
        # NaN cannot be written as JSON: every row fails to encode.
        batch = make_table(5).to_batches()[0]
        return batch.set_column(batch.schema.get_field_index("value"), "value", pa.array(np.full(5, np.nan)))


class TestRedisSinkHset(TestRedisSinkXadd):
    """HSET <prefix><id> <name> <json of the row>: one hash per row, read back by SCAN."""

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.key = self.new_key("hset")
        return RedisSink(
            URL,
            command="hset",
            key_column="id",
            key_prefix=self.key + ":",
            field_column="name",
            format=Json(columns=["id", "value", "name", "flag", "count", "ts"]),
            error_policy=error_policy,
        )

    def read_back(self) -> pa.Table:
        client = _client()
        keys = sorted(client.scan_iter(match=self.key + ":*", count=1000))
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(k)
        payloads = [v for h in pipe.execute() for v in h.values()]
        schema = make_table(1).schema
        return pa.Table.from_batches(
            [Json(schema).decode(pa.array(payloads, pa.binary())).batch], schema=schema
        )

    def bad_batch(self) -> pa.RecordBatch:
        # Null keys cannot be sent.
        batch = make_table(5).to_batches()[0]
        return batch.set_column(0, "id", pa.nulls(5, pa.int64()))
