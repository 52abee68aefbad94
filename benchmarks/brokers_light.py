"""Workloads ``redis-sink``, ``redis-stream-source``, ``nats-sink``, ``nats-source``, ``mqtt-sink`` and
``mqtt-source`` against the servers on 127.0.0.1 (Redis ``$REDIS_PORT`` 6379, nats-server ``$NATS_PORT``
4222 with JetStream, Mosquitto ``$MQTT_PORT`` 1883; see tests/services). A workload whose server does
not answer raises in setup and is reported as an error.

Rows: the 8-column table, capped at 200k rows (5k with ``--quick``) so the brokers' memory stays small.
The naive baselines are "the same client, per message": ``to_pylist()`` + ``json.dumps(row)`` + one
client call per row, on a subset. Where the client batches, the idiomatic baseline is its batched use
with the source's own options (the workload's ratio is quoted against it).

* ``redis-sink``: ``RedisSink(command="set", key_column="id")`` (RESP built with pyarrow compute, one
  pipelined buffer per request) vs ``redis.set(key, json.dumps(row))`` per row (one round trip each),
  and vs a redis-py ``pipeline()`` fed per row. Target: >= 3x the per-message baseline.
* ``redis-stream-source``: ``RedisStreamSource`` (XREADGROUP 10k per call + ``Json.decode``) vs
  ``xreadgroup(count=10_000)`` + ``json.loads`` per entry + ``RecordBatch.from_pylist`` per reply (the
  idiomatic baseline, the whole stream), and vs ``xreadgroup(count=1)`` per message (naive, a subset).
  No method acknowledges (the source only does on checkpoints, which this workload has none of).
* ``nats-sink``: ``NatsJetStreamSink`` (``publish_async`` per request, one wait for all PubAcks) vs
  ``orjson.dumps`` + ``js.publish_async`` per row with a ``Nats-Msg-Id`` header (the sink's
  deduplication) and one ``publish_async_completed()`` (the idiomatic baseline, every row), and vs
  ``await js.publish(subject, json.dumps(row))`` per row (naive, a subset). Every method's subject
  is read back (a pull consumer) and compared with the rows written.
* ``nats-source``: ``NatsJetStreamSource`` (pull requests of 10k on its own socket, frames turned into
  Arrow columns by the ``nats_frames`` kernel, + ``Json.decode``; acks up to the batch's last message
  after each batch, as checkpoints would) vs ``fetch(batch=10_000)`` on a durable pull
  consumer with the source's consumer options (``AckPolicy.ALL``, ``ack_wait``, ``max_ack_pending``)
  + ``json.loads`` per message + ``from_pylist`` + one ``ack`` of the last message per fetch (the
  idiomatic baseline, every message), and vs ``fetch(1)`` + ``json.loads`` + ``ack`` per message
  (naive, a subset).

Source methods are checked: the rows of their first call (decoded, read back as a table) equal the
table written into the stream.
* ``mqtt-sink``: ``MqttSink`` (QoS 1, MQTT 5, its own connection: PUBLISH packets by the
  ``mqtt_frames`` kernel, as many in flight as the broker's Receive Maximum, 20 for Mosquitto) vs the
  idiomatic baseline: paho (MQTT 5, its default in-flight window, 20: the same) ``publish`` of every
  row (``orjson.dumps``) at QoS 1 without waiting, then ``wait_for_publish`` on every message (all
  PUBACKs; on the oldest once 50,000 are outstanding, since MQTT packet ids are 16-bit); and vs ``publish`` +
  ``wait_for_publish`` per row (naive, a subset). Every method publishes to its own topic; the check
  subscribes to it before the warm-up call (QoS 0, a reader in its own process:
  ``benchmarks/_mqtt_reader.py``) and compares what arrived with the rows.
* ``mqtt-source``: MQTT 5 persistent sessions, each subscribed at QoS 1 and holding 900 queued
  messages (Mosquitto keeps at most 1000 per offline session); a timed call connects with one unused
  session and reads all of them. ``MqttSource`` (manual acks on commit, ``Json.decode``) vs paho's
  ``on_message`` + ``json.loads`` with paho's automatic PUBACK, then ``from_pylist``. Both receive
  through paho's network loop, one Python callback per message.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .checks import json_table, same_rows
from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table
from .servers import MQTT, NATS_URL, REDIS_URL

#: The rows of each source method's last call, for its output check.
_Seen = dict[str, pa.Table]


def _rows(config: RunConfig) -> int:
    return min(config.rows, 5_000 if config.quick else 200_000)


def _pylist_json(table: pa.Table) -> list[bytes]:
    return [json.dumps(r, default=str).encode() for r in table.to_pylist()]


# -- Redis ---------------------------------------------------------------------------------------


def setup_redis_sink(config: RunConfig) -> Prepared:
    import redis

    from arrowflow.connectors.redis_ import RedisSink

    n = _rows(config)
    table = make_table(n, config.seed)
    batches = table.to_batches(max_chunksize=65_536)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()

    def cleanup() -> None:
        keys = list(client.scan_iter(match=prefix + "*", count=10_000))
        for start in range(0, len(keys), 10_000):
            client.delete(*keys[start : start + 10_000])

    atexit.register(cleanup)
    sink = RedisSink(REDIS_URL, command="set", key_column="id", key_prefix=prefix + ":af:")
    py_n = config.subset(2_000 if config.quick else 20_000)
    py_table = table.slice(0, py_n)

    def run_sink() -> int:
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_per_message() -> int:
        for row in py_table.to_pylist():
            client.set(f"{prefix}:pm:{row['id']}", json.dumps(row, default=str))
        return py_n

    def run_pipeline() -> int:
        pipe = client.pipeline(transaction=False)
        for i, row in enumerate(py_table.to_pylist()):
            pipe.set(f"{prefix}:pp:{row['id']}", json.dumps(row, default=str))
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        return py_n

    return Prepared(
        methods={
            "arrowflow RedisSink (SET, pipelined RESP)": Method(run=run_sink),
            "to_pylist + json.dumps + redis.set per row": Method(
                run=run_per_message, note=f"on {py_n:,} rows", target=Target(min_speedup=3)
            ),
            "to_pylist + json.dumps + redis-py pipeline": Method(run=run_pipeline, note=f"on {py_n:,} rows"),
        },
        bytes_per_row=table.nbytes / n,
    )


def setup_redis_source(config: RunConfig) -> Prepared:
    import redis

    from arrowflow.connectors.redis_ import RedisSink, RedisStreamSource
    from arrowflow.formats import Json

    n = _rows(config)
    table = make_table(n, config.seed)
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    atexit.register(lambda: client.delete(stream))
    with RedisSink(REDIS_URL, command="xadd", key=stream) as sink:
        sink.write_table(table)
    schema = table.schema
    py_n = config.subset(2_000 if config.quick else 20_000)
    rounds = {"k": 0}
    seen: _Seen = {}

    def run_source() -> int:
        rounds["k"] += 1
        src = RedisStreamSource(REDIS_URL, streams=[stream], group=f"af{rounds['k']}", format=Json(schema))
        reader = src.open(src.plan()[0])
        got, out = 0, []
        while got < n:
            b = reader.read_batch(10_000, 1.0)
            if b is not None:
                got += b.num_rows
                out.append(b)
        reader.close()
        seen["af"] = pa.Table.from_batches(out)
        return got

    def run_batched() -> int:
        rounds["k"] += 1
        group = f"xb{rounds['k']}"
        client.xgroup_create(stream, group, id="0")
        got, out = 0, []
        while got < n:
            reply: Any = client.xreadgroup(group, "c", {stream: ">"}, count=10_000, block=1000)
            if not reply:
                continue
            entries = reply[0][1]
            out.append(pa.RecordBatch.from_pylist([json.loads(e[1][b"data"]) for e in entries]))
            got += len(entries)
        seen["batched"] = pa.Table.from_batches(out)
        return got

    def run_per_message() -> int:
        rounds["k"] += 1
        group = f"pm{rounds['k']}"
        client.xgroup_create(stream, group, id="0")
        rows = []
        for _ in range(py_n):
            reply: Any = client.xreadgroup(group, "c", {stream: ">"}, count=1)
            rows.append(json.loads(reply[0][1][0][1][b"data"]))
        seen["per_message"] = pa.Table.from_batches([pa.RecordBatch.from_pylist(rows)])
        return py_n

    def check(key: str, expected: pa.Table) -> Callable[[], str]:
        return lambda: same_rows(seen.pop(key), expected, f"{stream} read by {key}")

    return Prepared(
        methods={
            "arrowflow RedisStreamSource": Method(run=run_source, check=check("af", table)),
            "xreadgroup(count=10_000) + json.loads + from_pylist": Method(
                run=run_batched,
                note="whole stream, 10k entries per call",
                target=Target(min_speedup=1),
                check=check("batched", table),
            ),
            "xreadgroup per message + json.loads + from_pylist": Method(
                run=run_per_message,
                note=f"naive; on {py_n:,} msgs",
                check=check("per_message", table.slice(0, py_n)),
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


# -- NATS ----------------------------------------------------------------------------------------


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(600)


def _nats_stream(loop: _Loop, max_msgs: int) -> tuple[Any, Any, str]:
    import nats
    from nats.js.api import StreamConfig

    name = f"BENCH{uuid.uuid4().hex[:8]}"

    async def setup() -> tuple[Any, Any]:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream(timeout=30)  # API calls on a loaded machine
        await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], max_msgs=max_msgs))
        return nc, js

    nc, js = loop.run(setup())
    atexit.register(lambda: loop.run(js.delete_stream(name)))
    return nc, js, name


def _nats_read(loop: _Loop, js: Any, stream: str, subject: str, schema: pa.Schema) -> pa.Table:
    """Every message on ``subject`` of ``stream`` (a throw-away pull consumer), JSON rows as a table."""
    from nats.js.api import AckPolicy, ConsumerConfig

    async def go() -> list[bytes]:
        # No acks (and so no max_ack_pending cap): this consumer only reads.
        sub = await js.pull_subscribe(
            subject,
            durable=f"check{uuid.uuid4().hex[:8]}",
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE),
        )
        data: list[bytes] = []
        while True:
            try:
                msgs = await sub.fetch(batch=10_000, timeout=2.0)
            except (TimeoutError, asyncio.TimeoutError):  # nats-py raises both kinds
                break
            data += [m.data for m in msgs]
        await sub.unsubscribe()
        return data

    return json_table(loop.run(go()), schema)


def setup_nats_sink(config: RunConfig) -> Prepared:
    import orjson

    from arrowflow.connectors.nats_jetstream import NatsJetStreamSink

    n = _rows(config)
    table = make_table(n, config.seed)
    batches = table.to_batches(max_chunksize=65_536)
    loop = _Loop()
    _, js, name = _nats_stream(loop, 3 * n)
    sink = NatsJetStreamSink(NATS_URL, subject=f"{name}.af")
    py_n = config.subset(1_000 if config.quick else 10_000)
    py_table = table.slice(0, py_n)
    calls = {"k": 0}

    def run_sink() -> int:
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_async() -> int:
        calls["k"] += 1
        prefix = f"{name}-{calls['k']}"

        async def go() -> None:
            dumps, row_no = orjson.dumps, 0
            for b in table.to_batches(max_chunksize=10_000):
                for row in b.to_pylist():
                    # The sink's options: a Nats-Msg-Id per message (server-side deduplication).
                    msg_id = {"Nats-Msg-Id": f"{prefix}-{row_no}"}
                    await js.publish_async(f"{name}.pa", dumps(row), headers=msg_id)
                    row_no += 1
            await js.publish_async_completed()

        loop.run(go())
        return n

    def run_per_message() -> int:
        async def go() -> None:
            for row in py_table.to_pylist():
                await js.publish(f"{name}.pm", json.dumps(row, default=str).encode())

        loop.run(go())
        return py_n

    def landed(subject: str, expected: pa.Table) -> Callable[[], str]:
        return lambda: same_rows(_nats_read(loop, js, name, subject, table.schema), expected, subject)

    return Prepared(
        methods={
            "arrowflow NatsJetStreamSink": Method(run=run_sink, check=landed(f"{name}.af", table)),
            "orjson + js.publish_async, wait for all PubAcks": Method(
                run=run_async,
                note="Nats-Msg-Id per message, as the sink; every row",
                target=Target(min_speedup=1),
                check=landed(f"{name}.pa", table),
            ),
            "to_pylist + json.dumps + js.publish per row": Method(
                run=run_per_message,
                note=f"naive: one PubAck round trip per row; on {py_n:,} rows",
                check=landed(f"{name}.pm", py_table),
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


def setup_nats_source(config: RunConfig) -> Prepared:
    from arrowflow.connectors.nats_jetstream import NatsJetStreamSink, NatsJetStreamSource
    from arrowflow.formats import Json

    n = _rows(config)
    table = make_table(n, config.seed)
    loop = _Loop()
    _, js, name = _nats_stream(loop, 2 * n)
    with NatsJetStreamSink(NATS_URL, subject=f"{name}.in") as sink:
        sink.write_table(table)
    schema = table.schema
    py_n = config.subset(1_000 if config.quick else 10_000)
    rounds = {"k": 0}
    seen: _Seen = {}
    options = NatsJetStreamSource(NATS_URL, stream=name, durable="unused")

    def run_source() -> int:
        rounds["k"] += 1
        src = NatsJetStreamSource(NATS_URL, stream=name, durable=f"af{rounds['k']}", format=Json(schema))
        reader = src.open(src.plan()[0])
        got, out = 0, []
        while got < n:
            b = reader.read_batch(10_000, 1.0)
            if b is not None:
                got += b.num_rows
                out.append(b)
            # Acknowledge as a pipeline's checkpoints would: without acks the consumer stops
            # delivering at max_ack_pending (100k) until ack_wait expires.
            reader.commit(reader.snapshot())
        reader.close()
        seen["af"] = pa.Table.from_batches(out)
        return got

    def run_batched() -> int:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        rounds["k"] += 1
        durable = f"fb{rounds['k']}"

        async def go() -> list[pa.RecordBatch]:
            # The source's consumer options: AckAll, its ack_wait and max_ack_pending.
            await js.add_consumer(
                name,
                ConsumerConfig(
                    durable_name=durable,
                    ack_policy=AckPolicy.ALL,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=options.ack_wait,
                    max_ack_pending=options.max_ack_pending,
                ),
            )
            sub = await js.pull_subscribe_bind(durable=durable, stream=name)
            got, out = 0, []
            while got < n:
                try:
                    msgs = await sub.fetch(batch=10_000, timeout=1.0)
                except (TimeoutError, asyncio.TimeoutError):  # nats-py raises both kinds
                    continue
                out.append(pa.RecordBatch.from_pylist([json.loads(m.data) for m in msgs]))
                await msgs[-1].ack()  # AckAll: acknowledges the whole fetch
                got += len(msgs)
            await sub.unsubscribe()
            return out

        seen["batched"] = pa.Table.from_batches(loop.run(go()))
        return seen["batched"].num_rows

    def run_per_message() -> int:
        rounds["k"] += 1

        async def go() -> None:
            sub = await js.pull_subscribe(f"{name}.in", durable=f"pm{rounds['k']}", stream=name)
            rows = []
            for _ in range(py_n):
                msg = (await sub.fetch(1, timeout=5))[0]
                rows.append(json.loads(msg.data))
                await msg.ack()
            seen["per_message"] = pa.Table.from_batches([pa.RecordBatch.from_pylist(rows)])

        loop.run(go())
        return py_n

    def check(key: str, expected: pa.Table) -> Callable[[], str]:
        return lambda: same_rows(seen.pop(key), expected, f"{name} read by {key}")

    return Prepared(
        methods={
            "arrowflow NatsJetStreamSource": Method(run=run_source, check=check("af", table)),
            "fetch(batch=10_000) + json.loads + ack last per fetch": Method(
                run=run_batched,
                note="the source's consumer options (AckAll); every message",
                target=Target(min_speedup=1),
                check=check("batched", table),
            ),
            "fetch(1) + json.loads + ack per message": Method(
                run=run_per_message,
                note=f"naive; on {py_n:,} msgs",
                check=check("per_message", table.slice(0, py_n)),
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


# -- MQTT ----------------------------------------------------------------------------------------


class _MqttCollector:
    """A subscriber to one topic, for a check: ``benchmarks/_mqtt_reader.py`` in its own process
    (see its docstring for why not paho here), started before the warm-up call."""

    def __init__(self, topic: str, count: int) -> None:
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        self.topic = topic
        fd, self.out = tempfile.mkstemp(prefix="af-mqtt-check-")
        os.close(fd)
        atexit.register(lambda: os.path.exists(self.out) and os.remove(self.out))
        reader = Path(__file__).with_name("_mqtt_reader.py")
        cmd = [sys.executable, str(reader), MQTT[0], str(MQTT[1]), topic, str(count), self.out]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"mqtt: the check reader could not subscribe to {topic}")

    def check(self, expected: pa.Table) -> str:
        """Wait for the reader (it stops at the expected count, or 30 s after the last message) and
        compare what it received with ``expected``'s rows."""
        self.proc.wait(600)
        with open(self.out, "rb") as f:
            payloads = f.read().splitlines()
        return same_rows(json_table(payloads, expected.schema), expected, self.topic)


def setup_mqtt_sink(config: RunConfig) -> Prepared:
    import orjson

    from arrowflow.connectors.mqtt_broker import MqttSink

    n = _rows(config)
    table = make_table(n, config.seed)
    batches = table.to_batches(max_chunksize=65_536)
    topic = f"bench/{uuid.uuid4().hex[:8]}"
    py_n = config.subset(1_000 if config.quick else 10_000)
    py_table = table.slice(0, py_n)
    collectors = {k: _MqttCollector(f"{topic}/{k}", c) for k, c in (("af", n), ("all", n), ("pm", py_n))}
    sink = MqttSink(*MQTT, topic=topic + "/af", qos=1)
    # paho's default window, which is also Mosquitto's Receive Maximum, the sink's window (paho's
    # O(window) scan per PUBACK makes larger windows slower: 2000 cost it ~40% more CPU per message).
    window = 20
    client = _mqtt_client(f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(window)
    client.connect(*MQTT)
    client.loop_start()
    time.sleep(0.2)

    def run_sink() -> int:
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_publish_all() -> int:
        # MQTT packet ids are 16-bit: paho refuses a publish (ERR_QUEUE_SIZE) whose id is still
        # queued, so at most ~65k messages can be outstanding: wait for the oldest beyond 50k.
        dumps, publish, infos = orjson.dumps, client.publish, collections.deque()

        def settle(keep: int) -> None:
            while len(infos) > keep:
                info = infos.popleft()
                info.wait_for_publish(60)
                if not info.is_published():
                    raise RuntimeError("mqtt: a message was not acknowledged")

        for b in table.to_batches(max_chunksize=10_000):
            infos.extend(publish(topic + "/all", dumps(row), qos=1) for row in b.to_pylist())
            settle(50_000)
        settle(0)
        return n

    def run_per_message() -> int:
        for row in py_table.to_pylist():
            client.publish(topic + "/pm", json.dumps(row, default=str), qos=1).wait_for_publish(10)
        return py_n

    def teardown() -> None:
        sink.close()
        client.disconnect()
        client.loop_stop()

    return Prepared(
        methods={
            "arrowflow MqttSink (QoS 1)": Method(run=run_sink, check=lambda: collectors["af"].check(table)),
            _MQTT_ALL: Method(
                run=run_publish_all,
                note=f"paho, {window} in flight (its default) as the sink",
                target=Target(min_speedup=1),
                check=lambda: collectors["all"].check(table),
            ),
            "to_pylist + json.dumps + publish/wait per row": Method(
                run=run_per_message,
                note=f"naive; on {py_n:,} rows",
                check=lambda: collectors["pm"].check(py_table),
            ),
        },
        bytes_per_row=table.nbytes / n,
        teardown=teardown,
    )


_MQTT_ALL = "orjson + publish all (QoS 1), wait for PUBACKs (<= 50k outstanding)"


#: Mosquitto queues at most 1000 messages per offline session (its default max_queued_messages).
_MQTT_SESSION_MSGS = 900


def _mqtt_client(client_id: str) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    return mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )


def _mqtt_session(client_id: str, topic: str | None, *, keep: bool) -> None:
    """Create (``keep``: persistent, subscribed to ``topic`` at QoS 1) or remove a broker session."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = _mqtt_client(client_id)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600 if keep else 0
    subscribed = threading.Event()
    client.on_subscribe = lambda *a, **k: subscribed.set()
    client.connect(*MQTT, clean_start=not keep, properties=props)
    client.loop_start()
    if keep and topic is not None:
        client.subscribe(topic, qos=1)
        subscribed.wait(10)
    client.disconnect()
    client.loop_stop()


def setup_mqtt_source(config: RunConfig) -> Prepared:
    """Persistent sessions (one per timed call) subscribed at QoS 1, each holding the same queued
    messages; a call connects with its session and reads them all."""
    from arrowflow.connectors.mqtt_broker import MqttSink, MqttSource
    from arrowflow.formats import Json

    n = min(_MQTT_SESSION_MSGS, config.rows)
    table = make_table(n, config.seed)
    topic = f"bench/{uuid.uuid4().hex[:8]}"
    calls = 4 * (config.rounds + 1)
    sessions = {k: [f"bench-{k}-{uuid.uuid4().hex[:8]}" for _ in range(calls)] for k in "ap"}
    for cid in sessions["a"] + sessions["p"]:
        _mqtt_session(cid, topic, keep=True)
    with MqttSink(*MQTT, topic=topic, qos=1) as sink:
        sink.write_table(table)
    used: list[str] = []

    def remove_sessions() -> None:
        for c in used + sessions["a"] + sessions["p"]:
            _mqtt_session(c, None, keep=False)

    atexit.register(remove_sessions)
    schema = table.schema

    def run_source() -> int:
        cid = sessions["a"].pop()
        used.append(cid)
        src = MqttSource(*MQTT, topics=[topic], client_id=cid, format=Json(schema), session_expiry=600)
        reader = src.open(src.plan()[0])
        got = 0
        deadline = time.monotonic() + 60
        while got < n and time.monotonic() < deadline:
            b = reader.read_batch(10_000, 0.5)
            if b is not None:
                got += b.num_rows
                reader.commit(reader.snapshot())
        reader.close()
        return got

    def run_per_message() -> int:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        cid = sessions["p"].pop()
        used.append(cid)
        rows: list[Any] = []
        finished = threading.Event()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            rows.append(json.loads(msg.payload))
            if len(rows) >= n:
                finished.set()

        client = _mqtt_client(cid)
        client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        client.connect(*MQTT, clean_start=False, properties=props)
        client.loop_start()
        finished.wait(60)
        client.disconnect()
        client.loop_stop()
        pa.RecordBatch.from_pylist(rows)
        return len(rows)

    return Prepared(
        methods={
            "arrowflow MqttSource (acks on commit)": Method(run=run_source, note=f"{n} queued msgs/session"),
            "paho on_message + json.loads + auto-ack per message": Method(
                run=run_per_message, note=f"{n} queued msgs/session"
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


for _name, _desc, _setup, _ref, _idiomatic in (
    (
        "redis-sink",
        "8-column table -> Redis SET per row (JSON values)",
        setup_redis_sink,
        "arrowflow RedisSink (SET, pipelined RESP)",
        ("to_pylist + json.dumps + redis-py pipeline",),
    ),
    (
        "redis-stream-source",
        "Redis stream of JSON entries -> batches (consumer group)",
        setup_redis_source,
        "arrowflow RedisStreamSource",
        ("xreadgroup(count=10_000) + json.loads + from_pylist",),
    ),
    (
        "nats-sink",
        "8-column table -> JetStream messages (JSON)",
        setup_nats_sink,
        "arrowflow NatsJetStreamSink",
        ("orjson + js.publish_async, wait for all PubAcks",),
    ),
    (
        "nats-source",
        "JetStream messages (JSON) -> batches (durable pull consumer)",
        setup_nats_source,
        "arrowflow NatsJetStreamSource",
        ("fetch(batch=10_000) + json.loads + ack last per fetch",),
    ),
    (
        "mqtt-sink",
        "8-column table -> MQTT QoS 1 messages (JSON)",
        setup_mqtt_sink,
        "arrowflow MqttSink (QoS 1)",
        (_MQTT_ALL,),
    ),
    (
        "mqtt-source",
        "MQTT QoS 1 messages (JSON) queued in persistent sessions -> batches",
        setup_mqtt_source,
        "arrowflow MqttSource (acks on commit)",
        ("paho on_message + json.loads + auto-ack per message",),
    ),
):
    register(Workload(name=_name, description=_desc, setup=_setup, reference=_ref, idiomatic=_idiomatic))
